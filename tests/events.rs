//! muster's Event recorder against the real kube-apiserver: a repeat advances the series of the same Event, a
//! changed note is a new Event that `muster explain` reads as the newest (the reason a gang of one waits), and a
//! series whose Event is gone starts again.

mod support;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use muster::api::names::EVENT_ACTION_ADMISSION;
use muster::controller::events::{EventRecorder, Occurrence};
use muster::explain::{Target, read_explanation};
use support::muster::create_pod;
use support::{ControlPlane, install_crds, muster_pod};

const NAMESPACE: &str = "events";

fn waiting(note: &str) -> Occurrence {
    Occurrence {
        warning: true,
        reason: "NotEnoughResources".into(),
        action: EVENT_ACTION_ADMISSION.into(),
        note: note.into(),
    }
}

/// muster's Events on the pod, oldest first, as (note, series count).
async fn recorded(api: &Api<Event>) -> Vec<(String, i32)> {
    let mut events = api.list(&ListParams::default()).await.expect("list Events").items;
    events.retain(|e| e.reporting_controller.as_deref() == Some("muster"));
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events.iter().map(|e| (e.note.clone().unwrap_or_default(), e.series.as_ref().map_or(1, |s| s.count))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_note_is_a_new_event_and_explain_reads_the_newest() {
    let control_plane = ControlPlane::start().await;
    control_plane.create_namespace(NAMESPACE).await;
    let client = control_plane.client();
    install_crds(&client).await;
    let pod = create_pod(&client, NAMESPACE, &muster_pod("solo", "3", "1Gi")).await;
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(NAMESPACE.into()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE);
    let recorder = EventRecorder::new(client.clone(), "muster");
    let first = "needs cpu=3; the largest free on a node is cpu=2";
    let second = "needs cpu=3; the largest free on a node is cpu=1";

    // The same occurrence twice: one Event, its series at 2.
    recorder.publish(&waiting(first), &regarding).await.expect("record");
    recorder.publish(&waiting(first), &regarding).await.expect("record again");
    assert_eq!(recorded(&events).await, vec![(first.to_owned(), 2)]);

    // The same reason with a new note: a second Event, and explain tells the new note.
    recorder.publish(&waiting(second), &regarding).await.expect("record the new note");
    assert_eq!(recorded(&events).await, vec![(first.to_owned(), 2), (second.to_owned(), 1)]);
    let explained =
        read_explanation(&client, NAMESPACE, "solo", Target::Pod, "muster", "default").await.expect("explain the pod");
    assert_eq!(explained.reason.as_deref(), Some("NotEnoughResources"), "{explained:?}");
    assert_eq!(explained.message.as_deref(), Some(second), "explain shows the newest note: {explained:?}");

    // The Event of a series is gone (expired, or deleted by someone): the next repeat records it anew.
    let names: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|e| e.note.as_deref() == Some(second))
        .filter_map(|e| e.metadata.name)
        .collect();
    assert_eq!(names.len(), 1);
    events.delete(&names[0], &DeleteParams::default()).await.expect("delete the Event");
    recorder.publish(&waiting(second), &regarding).await.expect("record after the deletion");
    assert_eq!(recorded(&events).await, vec![(first.to_owned(), 2), (second.to_owned(), 1)]);
}
