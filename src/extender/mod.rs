//! The serving layer: kube-scheduler's extender verbs (wire format and handlers), `/state`'s access control,
//! and the listeners they are served on (TLS, connection bounds).

pub mod access;
#[cfg(test)]
mod handler_fuzz;
pub mod listen;
pub mod server;
pub mod tls;
pub mod wire;
