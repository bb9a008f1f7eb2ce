//! muster: gang admission and fair-share queues for Kubernetes.
//!
//! Layers, from the inside out (each with its own error type):
//! - [`core`]: the pure capacity-packing model and decisions (no kube, no tokio, no clock).
//! - [`sim`]: the offline simulator driving the core over a workload trace.

pub mod api;
pub mod cli;
pub mod core;
pub mod extender;
pub mod index;
pub mod sim;
