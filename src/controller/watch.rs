//! Watches of the kinds muster models, as a stream of [`Input`]s into the admission task (their only consumer).
//!
//! A watch that fails is retried with kube's default backoff; each failure is counted
//! (`muster_watch_restarts_total`) and reported to [`Health`](crate::plan::Health), so `/readyz` drops while a
//! watch stays broken. A re-list after a gap arrives as `Init .. InitDone` and replaces what the task knew of the
//! kind (objects deleted during the gap are deleted then).

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::warn;

use super::admission::Input;
use crate::api::{PodGroup, Queue};
use crate::metrics::Metrics;
use crate::plan::Plans;

/// One watch event of one kind.
#[derive(Debug)]
pub enum WatchEvent<K> {
    /// A (re-)list starts: the objects up to `InitDone` are the complete set.
    Init,
    Apply(Arc<K>),
    Delete(Arc<K>),
    InitDone,
}

impl<K> WatchEvent<K> {
    fn from_kube(event: Event<K>) -> WatchEvent<K> {
        match event {
            Event::Init => WatchEvent::Init,
            Event::InitApply(o) | Event::Apply(o) => WatchEvent::Apply(Arc::new(o)),
            Event::Delete(o) => WatchEvent::Delete(Arc::new(o)),
            Event::InitDone => WatchEvent::InitDone,
        }
    }
}

/// The kinds, in the order their first lists are most useful (nodes and queues before what lands on them).
pub const KINDS: [&str; 5] = ["nodes", "queues", "priorityclasses", "podgroups", "pods"];

/// Runs one kind's watch until the admission task stops listening.
async fn watch_kind<K>(
    api: Api<K>,
    kind: &'static str,
    wrap: fn(WatchEvent<K>) -> Input,
    inputs: mpsc::Sender<Input>,
    plans: Arc<Plans>,
    metrics: Arc<Metrics>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                plans.health.watch_ok(kind);
                if inputs.send(wrap(WatchEvent::from_kube(event))).await.is_err() {
                    return; // the admission task is gone; the supervisor ends the process
                }
            }
            Err(e) => {
                warn!(kind, error = %e, "watch failed; retrying with backoff");
                plans.health.watch_failed(kind);
                metrics.watch_restarts.with_label_values(&[kind]).inc();
            }
        }
    }
}

/// Spawns a watch per kind into `tasks`; all feed `inputs`.
pub fn spawn_all(
    tasks: &mut tokio::task::JoinSet<&'static str>,
    client: &Client,
    inputs: &mpsc::Sender<Input>,
    plans: &Arc<Plans>,
    metrics: &Arc<Metrics>,
) {
    macro_rules! spawn {
        ($kind:expr, $api:expr, $wrap:expr) => {{
            let (api, inputs, plans, metrics) = ($api, inputs.clone(), plans.clone(), metrics.clone());
            tasks.spawn(async move {
                watch_kind(api, $kind, $wrap, inputs, plans, metrics).await;
                $kind
            });
        }};
    }
    spawn!("nodes", Api::<Node>::all(client.clone()), Input::Node);
    spawn!("queues", Api::<Queue>::all(client.clone()), Input::Queue);
    spawn!("priorityclasses", Api::<PriorityClass>::all(client.clone()), Input::PriorityClass);
    spawn!("podgroups", Api::<PodGroup>::all(client.clone()), Input::PodGroup);
    spawn!("pods", Api::<Pod>::all(client.clone()), Input::Pod);
}
