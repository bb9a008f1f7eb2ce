//! muster: gang admission and fair-share queues for Kubernetes.
//!
//! Layers, from the inside out (each with its own error type):
//! - [`core`]: the pure capacity-packing model and decisions (no kube, no tokio, no clock).
//! - [`api`]: the CRDs (Queue, PodGroup) and well-known names.
//! - [`index`]: Kubernetes objects into the core (no API server needed to test it).
//! - [`controller`]: watches, admission loop, the only writer to the cluster.
//! - [`extender`]: kube-scheduler's extender verbs over HTTP (wire format and server).
//! - [`sim`]: the offline simulator driving the core over a workload trace.

pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod extender;
pub mod index;
pub mod metrics;
pub mod serve;
pub mod sim;
