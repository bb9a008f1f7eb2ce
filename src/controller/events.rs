//! muster's Event recorder (`events.k8s.io/v1`).
//!
//! An Event repeated within [`SERIES_WINDOW`] (same object, type, reason, action *and note*) advances the series
//! of the first one (`series.count`, `series.lastObservedTime`) instead of creating another. kube-rs's recorder
//! leaves the note out of that comparison: a repeat with a new note only bumps the count and keeps the first
//! note. muster records a gang's wait once per change of its reason or of its message, so a new
//! message must be readable as the newest Event (`kubectl events`, `muster explain`), not hidden behind the first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::api::errors;

/// How long after its last occurrence an Event is still advanced rather than recorded anew (kube-rs's window).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// One Event to record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Occurrence {
    pub warning: bool,
    /// Machine-readable, UpperCamelCase (a reason code).
    pub reason: String,
    /// What muster did or decided (`api::names::EVENT_ACTIONS`).
    pub action: String,
    /// For people; at most 1 kB is kept.
    pub note: String,
}

/// What makes two occurrences one Event: the occurrence and the object it regards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    occurrence: Occurrence,
    /// apiVersion, kind, namespace, name and uid of the object.
    regarding: [Option<String>; 5],
}

#[derive(Debug, Clone)]
struct Recorded {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// Records Events as `controller` (the Event's reportingController and reportingInstance).
pub struct EventRecorder {
    client: Client,
    controller: String,
    recent: Mutex<HashMap<SeriesKey, Recorded>>,
}

/// Largest note kept (the API server refuses notes over 1 kB).
const MAX_NOTE_CHARS: usize = 1000;

impl EventRecorder {
    pub fn new(client: Client, controller: &str) -> EventRecorder {
        EventRecorder { client, controller: controller.to_owned(), recent: Mutex::new(HashMap::new()) }
    }

    /// Records `occurrence` of `regarding`: advances the series of the same Event recorded within
    /// [`SERIES_WINDOW`], else (or if that Event is gone: the API server expires Events) creates one.
    pub async fn publish(&self, occurrence: &Occurrence, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let mut occurrence = occurrence.clone();
        occurrence.note = occurrence.note.chars().take(MAX_NOTE_CHARS).collect();
        let key = SeriesKey {
            occurrence,
            regarding: [
                regarding.api_version.clone(),
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ],
        };
        let previous = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            recent.retain(|_, r| now.duration_since(r.last) < SERIES_WINDOW);
            recent.get(&key).cloned()
        };
        let now = Timestamp::now();
        let recorded = match previous {
            Some(r) => {
                let count = r.count + 1;
                let series = EventSeries { count, last_observed_time: MicroTime(now) };
                let patch = serde_json::json!({ "series": series });
                let api = Api::<Event>::namespaced(self.client.clone(), &r.namespace);
                match api.patch(&r.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => Recorded { count, last: Instant::now(), ..r },
                    Err(e) if errors::is_not_found(&e) => self.create(&key.occurrence, regarding, now).await?,
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&key.occurrence, regarding, now).await?,
        };
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).insert(key, recorded);
        Ok(())
    }

    async fn create(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Recorded, kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let subject = regarding.name.as_deref().unwrap_or(&self.controller);
        let event = Event {
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(format!("{subject}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if occurrence.warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(occurrence.reason.clone()),
            action: Some(occurrence.action.clone()),
            note: Some(occurrence.note.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.controller.clone()),
            ..Event::default()
        };
        let created =
            Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        Ok(Recorded { namespace, name: created.metadata.name.unwrap_or_default(), count: 1, last: Instant::now() })
    }
}
