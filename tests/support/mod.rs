//! Test fixtures on real components: a Kubernetes control plane (etcd, kube-apiserver, kube-scheduler built
//! from the Kubernetes Go modules by `tests/controlplane/build.sh`) and a real Spark client (PyPI pyspark,
//! installed by `tests/controlplane/spark-setup.sh`). Use from an integration test with `mod support;`.
//!
//! What a test gets:
//! - [`ControlPlane`]: etcd + kube-apiserver on free loopback ports in a fresh temporary directory, a
//!   [`kube::Client`] and kubeconfig files (admin, and any user declared on the builder), optional kube-schedulers
//!   with a caller-given configuration, AlwaysAllow or RBAC authorization, Node and Namespace helpers.
//! - [`set_pod_phase`]: plays the kubelet nobody runs. [`wait_for_pod`] and friends: polling with a deadline that
//!   fails with what was seen.
//! - [`MusterServe`] / [`MusterEnv`] (`muster.rs`): `muster serve` with its CRDs and a kube-scheduler calling it
//!   as extender, a `/state` reader, PodGroup/Queue/gang-pod builders, and [`PodHistory`], a watch that records
//!   every binding of a test's pods.
//! - Faults (`muster.rs`, `controlplane.rs`): [`MusterServe::kill9`] and [`MusterServe::restart`] on the same
//!   address, standby replicas under leader election, [`ReadyProxy`] (a Service routing only to ready replicas),
//!   [`ControlPlane::restart_apiserver`] (etcd kept), and [`TerminatingPodKubelet`], which finishes the deletion
//!   of evicted pods that no kubelet would ever stop.
//! - [`SparkSubmit`]: spark-submit in client mode (executor pods as in production), in cluster mode (the driver
//!   pod), and "inside" an existing driver pod (executors owned by it).
//!
//! Every process is stopped when its fixture drops, a failing test included (then the tail of each process's
//! log is printed first), and is killed by the kernel if the test process dies (PR_SET_PDEATHSIG).
//!
//! # One control plane per test, at most 4 at once
//!
//! Measured on the 2-core, 24 GB development machine (Kubernetes v1.35.4, etcd v3.6.16, warm caches):
//!
//! | what                                                  | time            | resident memory        |
//! |-------------------------------------------------------|-----------------|------------------------|
//! | etcd + kube-apiserver until /readyz                   | 1.7 - 2.1 s     | 39 MB + 250-260 MB     |
//! | kube-scheduler until /readyz (informers synced)       | 0.2 s           | 63 MB                  |
//! | start to a pod bound by the stock scheduler           | 2.6 s           | 358 MiB in all         |
//! | 2 / 4 of those started concurrently (wall clock)      | 2.7 s / 3.8 s   | 701 MiB / 1434 MiB     |
//! | teardown (SIGTERM, 1 s grace, SIGKILL)                | 1.0 - 1.2 s     |                        |
//!
//! A shared control plane with a namespace per test would save about 2.6 s and 360 MB per test, but Nodes are
//! cluster-scoped: every scheduler sees every test's nodes, so a scheduling test's outcome would depend on what
//! other tests run beside it, and muster's controller watches the whole cluster. Starting is mostly waiting
//! (4 concurrent starts cost 1.2 s more wall clock than one), so a control plane per test is cheap enough and
//! keeps tests independent. It also keeps the fixture simple: a `kube::Client` belongs to the tokio runtime that
//! created it, and each `#[tokio::test]` has its own runtime.
//!
//! A process-wide semaphore admits at most 4 control planes at once (see `controlplane.rs`). With cargo's
//! default of one test thread per core it never binds on this machine; it caps memory (about 1.5 GB, plus
//! about 300 MB per Spark driver) and CPU contention when someone raises `--test-threads`: on 2 cores, more
//! concurrent control planes would slow each other towards the tests' timeouts.

// Each test binary compiles this module and uses only part of it (and of the re-exports below).
#![allow(dead_code, unused_imports)]

pub mod autoscaling;
pub mod controlplane;
pub mod gates;
pub mod muster;
pub mod objects;
pub mod ops_tools;
mod process;
pub mod spark;
pub mod spark_operator;
mod tools;
pub mod wait;

pub use self::muster::{
    E2E_TIMEOUT, ExtenderMode, GangState, HOLD, HttpConnection, LeaderElectionConfig, Listeners, MUSTER_SCHEDULER,
    MusterConfig, MusterEnv, MusterServe, MusterState, PodHistory, ReadyProxy, ServeOptions, TerminatingPodKubelet,
    TestPki, Transition, URL_PREFIX, assert_never_bound, assert_no_node_overcommitted, create_nodes_concurrently,
    fetch_state, gang_pod, holds_capacity, install_crds, install_crds_from, member_template, muster_pod,
    muster_scheduler_config, muster_scheduler_config_for_url, pod_group, pod_request, prebound_pod, quantity, queue,
    start_muster_scheduler, start_muster_scheduler_at, state_quantity, toleration, wait_all_bound_within,
    with_node_selector,
};
pub use controlplane::{
    ADMIN_USER, Authorization, ControlPlane, ControlPlaneBuilder, SCHEDULER_USER, STOCK_SCHEDULER_CONFIG,
};
pub use objects::{
    PodPhase, TestNode, UNUSED_IMAGE, bound_node, pod_condition, set_pod_phase, test_pod, try_set_pod_phase,
};
pub use spark::{SparkApp, SparkSubmit, SubmittedDriver};
pub use wait::{DEFAULT_TIMEOUT, describe_pod, wait_for_pod, wait_for_pods, wait_until};
