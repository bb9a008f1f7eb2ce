//! muster: gang admission and fair-share queues for Kubernetes.
//!
//! Layers, from the inside out (each with its own error type):
//! - [`core`]: the pure capacity-packing model and decisions (no kube, no tokio, no clock).
//! - [`api`]: the CRDs (Queue, PodGroup) and well-known names.
//! - [`index`]: Kubernetes objects into the core (no API server needed to test it).
//! - [`controller`]: watches into the admission task (the one owner of the model), the actuator (the only
//!   writer to the cluster), leader election.
//! - [`plan`]: what the admission task publishes for the extender (pod to node, reasons, `/state`).
//! - [`extender`]: kube-scheduler's extender verbs over HTTP (wire format and server), reading only [`plan`].
//! - [`sim`]: the offline simulator driving the core over a workload trace.
//! - [`webhook`]: the mutating admission webhook that gates muster's new pods, with the certificate it manages.

pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod duration;
pub mod explain;
pub mod extender;
pub mod index;
pub mod metrics;
pub mod plan;
pub mod serve;
pub mod sim;
pub mod webhook;
