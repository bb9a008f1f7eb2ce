//! The API server's answers that muster treats as outcomes rather than failures.

/// The HTTP status of an error the API server returned; `None` when there was no answer (connection, timeout).
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// 404: the object is gone (or never was).
pub fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// 409: the object exists already, or a precondition (UID, resourceVersion) no longer holds.
pub fn is_conflict(e: &kube::Error) -> bool {
    status_code(e) == Some(409)
}

/// Worth retrying: no answer, 429 (throttled) or a 5xx. Any other error is final.
pub fn is_transient(e: &kube::Error) -> bool {
    matches!(status_code(e), None | Some(429) | Some(500..))
}
