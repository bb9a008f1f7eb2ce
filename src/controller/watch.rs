//! Watches of the kinds muster models, as a stream of [`Input`]s into the admission task (their only consumer).
//!
//! A watch that fails is retried with a short backoff ([`WatchBackoff`]); each failure is counted
//! (`muster_watch_restarts_total`) and reported to [`Health`](crate::plan::Health), so `/readyz` drops while a
//! watch stays broken. A re-list after a gap arrives as `Init .. InitDone` and replaces what the task knew of the
//! kind (objects deleted during the gap are deleted then).

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::admission::Input;
use crate::api::{PodGroup, Queue, volcano};
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

/// The wait before retrying a failed watch: 250 ms, doubling up to 5 s; back to 250 ms once the watch has gone
/// 30 s without failing.
///
/// Not kube's default (800 ms doubling to 30 s, reset after 2 minutes without errors): during an API server
/// outage every failed reconnect doubles the wait, and a restarted API server answers the first resumed watch
/// with 410 Gone, so the re-list that follows would wait up to 30 s more. muster answers no extender call while
/// a watch is broken, so that wait would be an outage of gang scheduling; one list per kind every 5 s while the
/// API server is down costs it nothing.
#[derive(Debug, Clone, Copy)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

const WATCH_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest wait between attempts; [`crate::plan`] counts a watch as recovered when it has not failed for a
/// few multiples of this.
pub const WATCH_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const WATCH_BACKOFF_RESET: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for WatchBackoff {
    fn default() -> WatchBackoff {
        WatchBackoff { next: WATCH_BACKOFF_MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        Some(wait)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = WatchBackoff::default();
    }
}

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
    let backoff = ResetTimerBackoff::new(WatchBackoff::default(), WATCH_BACKOFF_RESET);
    let mut stream = watcher::watcher(api, watcher::Config::default()).backoff(backoff).boxed();
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

/// How often muster looks again for Volcano's CRDs while they are not installed.
const VOLCANO_DISCOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the API server serves `resource` (its CRD is installed).
async fn served(client: &Client, resource: &ApiResource) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&resource.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource.plural)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Watches one of Volcano's kinds once its CRD is installed (looked for every [`VOLCANO_DISCOVERY_INTERVAL`]
/// until then; its absence is no error and does not affect readiness). Objects are converted to muster's types;
/// one that cannot be is skipped with a log line.
async fn watch_volcano<K>(
    client: Client,
    (kind, resource): (&'static str, ApiResource),
    convert: fn(&DynamicObject) -> Result<K, String>,
    wrap: fn(WatchEvent<K>) -> Input,
    (inputs, plans, metrics): (mpsc::Sender<Input>, Arc<Plans>, Arc<Metrics>),
) where
    K: Send + Sync + 'static,
{
    let converted = |object: DynamicObject| match convert(&object) {
        Ok(k) => Some(Arc::new(k)),
        Err(problem) => {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
            warn!(kind, %namespace, %name, %problem, "skipped a Volcano object muster cannot read");
            None
        }
    };
    loop {
        // Until the CRD is installed.
        loop {
            match served(&client, &resource).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    warn!(kind, error = %e, "cannot tell whether Volcano's CRDs are installed; looking again later")
                }
            }
            if inputs.is_closed() {
                return;
            }
            tokio::time::sleep(VOLCANO_DISCOVERY_INTERVAL).await;
        }
        info!(kind, api_version = %resource.api_version, "Volcano's kind is installed: watching it");
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let backoff = ResetTimerBackoff::new(WatchBackoff::default(), WATCH_BACKOFF_RESET);
        let mut stream = watcher::watcher(api, watcher::Config::default()).backoff(backoff).boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    if matches!(served(&client, &resource).await, Ok(false)) {
                        // The CRD was removed: not a broken watch. What muster knew of the kind goes with an
                        // empty re-list, and it looks for the CRD again.
                        warn!(kind, "Volcano's kind is no longer installed; forgetting its objects");
                        plans.health.watch_ok(kind);
                        for event in [WatchEvent::Init, WatchEvent::InitDone] {
                            if inputs.send(wrap(event)).await.is_err() {
                                return;
                            }
                        }
                        break;
                    }
                    warn!(kind, error = %e, "watch failed; retrying with backoff");
                    plans.health.watch_failed(kind);
                    metrics.watch_restarts.with_label_values(&[kind]).inc();
                    continue;
                }
            };
            plans.health.watch_ok(kind);
            let event = match event {
                Event::Init => Some(WatchEvent::Init),
                Event::InitDone => Some(WatchEvent::InitDone),
                Event::InitApply(o) | Event::Apply(o) => converted(o).map(WatchEvent::Apply),
                Event::Delete(o) => converted(o).map(WatchEvent::Delete),
            };
            if let Some(event) = event
                && inputs.send(wrap(event)).await.is_err()
            {
                return;
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
    for (kind, resource, volcano) in [
        ("volcano-queues", volcano::queue_resource(), VolcanoKind::Queue),
        ("volcano-podgroups", volcano::podgroup_resource(), VolcanoKind::PodGroup),
    ] {
        let client = client.clone();
        let sink = (inputs.clone(), plans.clone(), metrics.clone());
        tasks.spawn(async move {
            match volcano {
                VolcanoKind::Queue => {
                    let convert = volcano::queue_from;
                    watch_volcano(client, (kind, resource), convert, Input::VolcanoQueue, sink).await
                }
                VolcanoKind::PodGroup => {
                    let convert = volcano::podgroup_from;
                    watch_volcano(client, (kind, resource), convert, Input::VolcanoPodGroup, sink).await
                }
            }
            kind
        });
    }
}

enum VolcanoKind {
    Queue,
    PodGroup,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_starts_over_when_reset() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u64> = backoff.by_ref().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(WATCH_BACKOFF_MIN));
    }
}
