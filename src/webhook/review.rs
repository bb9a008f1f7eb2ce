//! The `admission.k8s.io/v1` AdmissionReview, as much of it as the webhook reads and writes, and the one decision
//! it makes: whether a new pod gets muster's scheduling gate. Pure: no I/O, tested by feeding reviews in.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::names::ADMISSION_GATE;

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// What the API server sends. Fields the webhook does not read are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: String,
    kind: String,
    /// Decoded once the version is known to be v1.
    request: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    #[serde(default)]
    kind: Option<GroupVersionKind>,
    operation: String,
    /// Absent on DELETE; the new object on CREATE.
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

/// What the webhook answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: Response,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// The JSON patch; base64 on the wire, which `ByteString` serialises to.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<ByteString>,
}

/// A review that cannot be answered: the API server sent something else, or someone else did.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("not JSON of an AdmissionReview: {0}")]
    Json(String),
    #[error("expected apiVersion {API_VERSION} and kind {KIND}, got {api_version:?} and {kind:?}")]
    Version { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request is not an AdmissionRequest: {0}")]
    Request(String),
    #[error("request.object is not a Pod: {0}")]
    NotAPod(String),
}

/// The answer to one review: the response body and whether it gates the pod.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub gated: bool,
}

/// Answers an AdmissionReview: always allowed; with a JSON patch adding [`ADMISSION_GATE`] when the request creates
/// a pod that [`gate_patch`] says needs it.
pub fn answer(body: &[u8], scheduler_name: &str) -> Result<Answer, ReviewError> {
    let review: ReviewIn = serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(ReviewError::Version { api_version: review.api_version, kind: review.kind });
    }
    let request = review.request.filter(|r| !r.is_null()).ok_or(ReviewError::NoRequest)?;
    let request: Request = serde_json::from_value(request).map_err(|e| ReviewError::Request(e.to_string()))?;
    // Gates can only be set when a pod is created (the API server refuses adding one later). The configuration
    // asks for pod CREATEs only; anything else that arrives is let through untouched.
    let is_pod = request.kind.as_ref().is_none_or(|k| k.group.is_empty() && k.kind == "Pod");
    let patch = match (request.operation.as_str(), request.object) {
        ("CREATE", Some(object)) if is_pod => {
            let pod: Pod = serde_json::from_value(object).map_err(|e| ReviewError::NotAPod(e.to_string()))?;
            gate_patch(&pod, scheduler_name)
        }
        _ => None,
    };
    let gated = patch.is_some();
    let response = Response {
        uid: request.uid,
        allowed: true,
        patch_type: patch.is_some().then_some("JSONPatch"),
        patch: patch.map(|ops| ByteString(Value::Array(ops).to_string().into_bytes())),
    };
    let out = ReviewOut { api_version: API_VERSION, kind: KIND, response };
    let body = serde_json::to_vec(&out).map_err(|e| ReviewError::Json(e.to_string()))?;
    Ok(Answer { body, gated })
}

/// The JSON patch operations that add [`ADMISSION_GATE`] to `pod`, or `None` when it needs none: a pod of another
/// scheduler, a pod already bound (`spec.nodeName` set: kube-scheduler never sees it, and the API server refuses
/// gates on it), or one that carries the gate already.
pub fn gate_patch(pod: &Pod, scheduler_name: &str) -> Option<Vec<Value>> {
    let spec = pod.spec.as_ref()?;
    if spec.scheduler_name.as_deref() != Some(scheduler_name)
        || spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
    {
        return None;
    }
    let gate = json!({"name": ADMISSION_GATE});
    match &spec.scheduling_gates {
        Some(gates) if gates.iter().any(|g| g.name == ADMISSION_GATE) => None,
        // Appending keeps the gates others set (all of them must go before the pod is scheduled).
        Some(_) => Some(vec![json!({"op": "add", "path": "/spec/schedulingGates/-", "value": gate})]),
        None => Some(vec![json!({"op": "add", "path": "/spec/schedulingGates", "value": [gate]})]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn review(operation: &str, object: Value) -> Vec<u8> {
        json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": operation, "namespace": "ns", "object": object, "oldObject": null,
                "userInfo": {"username": "admin"}, "dryRun": false,
            },
        })
        .to_string()
        .into_bytes()
    }

    /// The response of an answer, its patch decoded from base64.
    fn response(answer: &Answer) -> (Value, Option<Value>) {
        let out: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
        assert_eq!((out["apiVersion"].as_str(), out["kind"].as_str()), (Some(API_VERSION), Some(KIND)));
        let response = out["response"].clone();
        let patch = response.get("patch").map(|p| {
            let bytes: ByteString = serde_json::from_value(p.clone()).expect("the patch is base64");
            serde_json::from_slice(&bytes.0).expect("the patch is JSON")
        });
        (response, patch)
    }

    fn containers() -> Value {
        json!([{"name": "c", "image": "busybox"}])
    }

    #[test]
    fn a_new_pod_of_musters_scheduler_gets_the_gate() {
        let answer =
            answer(&review("CREATE", pod(json!({"schedulerName": "muster", "containers": containers()}))), "muster")
                .expect("answered");
        assert!(answer.gated);
        let (response, patch) = response(&answer);
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        assert_eq!(
            patch,
            Some(json!([{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": "muster.dev/admission"}]}]))
        );
    }

    #[test]
    fn the_gate_is_appended_to_gates_others_set() {
        let spec = json!({"schedulerName": "muster", "containers": containers(), "schedulingGates": [{"name": "x/y"}]});
        let (_, patch) = response(&answer(&review("CREATE", pod(spec)), "muster").expect("answered"));
        assert_eq!(
            patch,
            Some(json!([{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": "muster.dev/admission"}}]))
        );
    }

    #[test]
    fn other_pods_pass_untouched() {
        let cases = [
            ("another scheduler", "CREATE", json!({"schedulerName": "default-scheduler", "containers": containers()})),
            (
                "already bound",
                "CREATE",
                json!({"schedulerName": "muster", "nodeName": "n1", "containers": containers()}),
            ),
            (
                "already gated",
                "CREATE",
                json!({"schedulerName": "muster", "containers": containers(),
                       "schedulingGates": [{"name": "muster.dev/admission"}]}),
            ),
            ("an update", "UPDATE", json!({"schedulerName": "muster", "containers": containers()})),
        ];
        for (what, operation, spec) in cases {
            let answer = answer(&review(operation, pod(spec)), "muster").expect("answered");
            let (response, patch) = response(&answer);
            assert!(!answer.gated, "{what}");
            assert_eq!(response["allowed"], true, "{what}");
            assert_eq!((patch, response.get("patchType")), (None, None), "{what}");
        }
        // The scheduler name is the configured one.
        let spec = json!({"schedulerName": "muster", "containers": containers()});
        assert!(!answer(&review("CREATE", pod(spec)), "gangs").expect("answered").gated);
        // A DELETE carries no object.
        let mut delete: Value = serde_json::from_slice(&review("DELETE", Value::Null)).expect("JSON");
        delete["request"].as_object_mut().expect("an object").remove("object");
        assert!(!answer(delete.to_string().as_bytes(), "muster").expect("answered").gated);
        // Another kind, should a configuration send one.
        let mut other: Value = serde_json::from_slice(&review("CREATE", json!({"spec": {}}))).expect("JSON");
        other["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        assert!(!answer(other.to_string().as_bytes(), "muster").expect("answered").gated);
    }

    #[test]
    fn malformed_reviews_are_refused_with_the_reason() {
        let no_request = json!({"apiVersion": API_VERSION, "kind": KIND}).to_string();
        let wrong_version = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND, "request": {}}).to_string();
        let no_uid = json!({"apiVersion": API_VERSION, "kind": KIND, "request": {"operation": "CREATE"}}).to_string();
        let not_a_pod = review("CREATE", json!({"spec": {"containers": "many"}}));
        let cases: [(&[u8], &str); 6] = [
            (b"", "not JSON"),
            (b"{\"apiVersion\":", "not JSON"),
            (no_request.as_bytes(), "no request"),
            (wrong_version.as_bytes(), "admission.k8s.io/v1beta1"),
            (no_uid.as_bytes(), "not an AdmissionRequest: missing field `uid`"),
            (&not_a_pod, "not a Pod"),
        ];
        for (body, expected) in cases {
            let refused = answer(body, "muster").expect_err("refused").to_string();
            assert!(refused.contains(expected), "{expected:?} not in {refused:?}");
        }
    }
}
