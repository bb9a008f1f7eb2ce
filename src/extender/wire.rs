//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go structs carry no JSON tags, so their keys are the Go field names: muster writes them in PascalCase, and
//! reads them in any letter case, as Go's `encoding/json` does (`NodeNames`, `nodeNames`, `NODENAMES` ...). Go
//! writes nil pointers, slices and maps as `null`, so `null` reads as "absent" everywhere. Unknown keys are
//! ignored and a repeated key replaces the earlier value. Inside `Pod` and `Nodes` the ordinary camelCase
//! Kubernetes object JSON applies.
//!
//! A filter request can carry 5,000 node names (or 5,000 full Node objects) and its answer as many names and
//! reasons, so decoding goes straight from the body bytes into these types through hand-written visitors (no
//! detour through `serde_json::Value`), and node names are borrowed from the body instead of allocated one by one
//! ([`NodeNames`], [`FailedNodes`]); an answer can borrow them again from the request.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use k8s_openapi::List;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest request body muster accepts: 5,000 full Node objects with images and conditions stay well below.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The highest score an extender may give a node (`MaxExtenderPriority`); the lowest is 0.
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// A list of nodes as kube-scheduler sends it when the extender is not `nodeCacheCapable`.
pub type NodeList = List<Node>;

/// The answer to a prioritize call: a bare JSON array of scores.
pub type HostPriorityList = Vec<HostPriority>;

/// A request or response body that could not be decoded; the message says what was wrong, for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("empty request body: expected a JSON {message}")]
    Empty { message: &'static str },
    #[error("malformed {message}: {detail}")]
    Malformed { message: &'static str, detail: String },
}

/// A type that travels on the extender wire, with the Go name used in error messages. `'de` is the lifetime of
/// the body it may borrow from.
pub trait WireMessage<'de>: Deserialize<'de> {
    const NAME: &'static str;
}

impl WireMessage<'_> for HostPriorityList {
    const NAME: &'static str = "HostPriorityList";
}

/// Decodes one wire message from a request (or response) body of at most [`MAX_BODY_BYTES`].
pub fn decode<'de, T: WireMessage<'de>>(body: &'de [u8]) -> Result<T, WireError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WireError::TooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WireError::Empty { message: T::NAME });
    }
    serde_json::from_slice(body).map_err(|e| WireError::Malformed { message: T::NAME, detail: e.to_string() })
}

/// Node names, borrowed from the body they were decoded from when they contain no JSON escapes (real node names
/// never do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NodeNames<'a>(pub Vec<Cow<'a, str>>);

impl<'a> Deref for NodeNames<'a> {
    type Target = [Cow<'a, str>];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a, S: Into<Cow<'a, str>>> FromIterator<S> for NodeNames<'a> {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        NodeNames(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for NodeNames<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for NamesVisitor<'a> {
            type Value = NodeNames<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of node names")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeNames<'a>, A::Error> {
                let mut names = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(CowStr(name)) = seq.next_element()? {
                    names.push(name);
                }
                Ok(NodeNames(names))
            }
        }

        deserializer.deserialize_seq(NamesVisitor(PhantomData))
    }
}

/// Nodes that failed a filter, each with the reason, in insertion order. Written as a JSON object (Go's
/// `FailedNodesMap`); a list rather than a map because an answer may name thousands of nodes and needs no
/// lookups. Names and reasons borrow where they can: one reason shared by every node costs no copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedNodes<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> FailedNodes<'a> {
    /// Records that `node` failed because of `reason`. Callers name each node once.
    pub fn push(&mut self, node: impl Into<Cow<'a, str>>, reason: impl Into<Cow<'a, str>>) {
        self.0.push((node.into(), reason.into()));
    }

    /// The reason recorded for `node` (a linear scan).
    pub fn reason(&self, node: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == node).map(|(_, reason)| reason.as_ref())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for FailedNodes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (node, reason) in &self.0 {
            map.serialize_entry(node, reason)?;
        }
        map.end()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FailedNodes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FailedVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FailedVisitor<'a> {
            type Value = FailedNodes<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of node name to reason")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FailedNodes<'a>, A::Error> {
                let mut failed = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((CowStr(node), CowStr(reason))) = map.next_entry()? {
                    failed.push((node, reason));
                }
                Ok(FailedNodes(failed))
            }
        }

        deserializer.deserialize_map(FailedVisitor(PhantomData))
    }
}

/// A string borrowed from the body when it has no escapes, copied otherwise. (serde's own `Cow<str>` always
/// copies.)
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = CowStr<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(s.to_string())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }

        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

/// Whether a JSON key names the Go field `go_name`, as `encoding/json` matches keys: case-insensitively under
/// Unicode simple case folding. Go field names are ASCII, and the only non-ASCII characters that fold onto ASCII
/// letters are the long s (`ſ`, folding to `s`) and the Kelvin sign (`K`, folding to `k`).
fn go_key_matches(key: &str, go_name: &str) -> bool {
    let fold = |c: char| match c {
        'ſ' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    };
    key.chars().map(fold).eq(go_name.chars().map(|c| c.to_ascii_uppercase()))
}

/// Reads the value of field `go_name`, prefixing any error with the field's name. `null` reads as `None`.
fn field_value<'de, A, T>(map: &mut A, go_name: &str) -> Result<Option<T>, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    map.next_value().map_err(|e| de::Error::custom(format_args!("{go_name}: {}", without_position(&e.to_string()))))
}

/// `message` without serde_json's trailing " at line L column C": the error wrapping it gets the position again.
fn without_position(message: &str) -> &str {
    let Some(at) = message.rfind(" at line ") else { return message };
    let tail = &message[at + " at line ".len()..];
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tail.split_once(" column ") {
        Some((line, column)) if is_number(line) && is_number(column) => &message[..at],
        _ => message,
    }
}

/// What a field becomes once the whole object was read: `required` fields must have been present and not
/// `null`; `default` fields fall back to their type's default (`None`, empty, zero).
macro_rules! finish_field {
    (required, $value:expr, $go:literal) => {
        $value.ok_or_else(|| de::Error::custom(concat!("field `", $go, "` is missing or null")))?
    };
    (default, $value:expr, $go:literal) => {
        $value.unwrap_or_default()
    };
}

/// Declares a wire struct (optionally with the lifetime of the body it borrows from): serialised with its Go
/// field names, deserialised with Go's key matching.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $(
                $(#[$field_meta:meta])*
                $field:ident : $ty:ty = $go:literal, $mode:ident;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        pub struct $name $(<$lt>)? {
            $(
                $(#[$field_meta])*
                #[serde(rename = $go)]
                pub $field: $ty,
            )*
        }

        impl<'de $(, $lt)?> WireMessage<'de> for $name $(<$lt>)? where $('de: $lt)? {
            const NAME: &'static str = stringify!($name);
        }

        impl<'de $(, $lt)?> Deserialize<'de> for $name $(<$lt>)? where $('de: $lt)? {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[allow(non_camel_case_types)]
                enum Field {
                    $($field,)*
                    Unknown,
                }

                struct KeyVisitor;

                impl Visitor<'_> for KeyVisitor {
                    type Value = Field;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }

                    fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
                        $(
                            if go_key_matches(key, $go) {
                                return Ok(Field::$field);
                            }
                        )*
                        Ok(Field::Unknown)
                    }
                }

                impl<'de> Deserialize<'de> for Field {
                    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                        deserializer.deserialize_identifier(KeyVisitor)
                    }
                }

                struct ObjectVisitor<T>(PhantomData<T>);

                impl<'de $(, $lt)?> Visitor<'de> for ObjectVisitor<$name $(<$lt>)?> where $('de: $lt)? {
                    type Value = $name $(<$lt>)?;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                        $(let mut $field: Option<$ty> = None;)*
                        while let Some(key) = map.next_key::<Field>()? {
                            match key {
                                $(Field::$field => $field = field_value(&mut map, $go)?,)*
                                Field::Unknown => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok($name { $($field: finish_field!($mode, $field, $go),)* })
                    }
                }

                deserializer.deserialize_map(ObjectVisitor(PhantomData))
            }
        }
    };
}

wire_struct! {
    /// The body of a filter or prioritize call: the pod and the candidate nodes, as full objects (`Nodes`) or,
    /// when the extender is `nodeCacheCapable`, as names (`NodeNames`); the other one is `null`.
    pub struct ExtenderArgs<'a> {
        /// The pod being scheduled.
        pod: Pod = "Pod", required;
        /// The candidate nodes, when the extender is not `nodeCacheCapable`.
        nodes: Option<NodeList> = "Nodes", default;
        /// The candidate node names, when the extender is `nodeCacheCapable`.
        node_names: Option<NodeNames<'a>> = "NodeNames", default;
    }
}

wire_struct! {
    /// The answer to a filter call. A nodeCacheCapable extender answers with `NodeNames`, each one of the names
    /// it was sent.
    pub struct ExtenderFilterResult<'a> {
        /// The nodes that passed, when the request carried `Nodes`.
        nodes: Option<NodeList> = "Nodes", default;
        /// The names of the nodes that passed, when the request carried `NodeNames`.
        node_names: Option<NodeNames<'a>> = "NodeNames", default;
        /// Nodes that failed, with reasons; kube-scheduler may preempt on these.
        failed_nodes: FailedNodes<'a> = "FailedNodes", default;
        /// Nodes that failed where preemption cannot help, with reasons; kube-scheduler will not preempt there.
        failed_and_unresolvable_nodes: FailedNodes<'a> = "FailedAndUnresolvableNodes", default;
        /// Non-empty when the whole call failed.
        error: String = "Error", default;
    }
}

wire_struct! {
    /// One node's score in a prioritize answer (0..=[`MAX_EXTENDER_PRIORITY`]).
    pub struct HostPriority {
        host: String = "Host", default;
        score: i64 = "Score", default;
    }
}

wire_struct! {
    /// The body of a bind call: bind this pod to this node.
    pub struct ExtenderBindingArgs {
        pod_name: String = "PodName", default;
        pod_namespace: String = "PodNamespace", default;
        pod_uid: String = "PodUID", default;
        node: String = "Node", default;
    }
}

wire_struct! {
    /// The answer to a bind call; an empty `Error` means the binding was made.
    pub struct ExtenderBindingResult {
        error: String = "Error", default;
    }
}

wire_struct! {
    /// The body of a preempt call: kube-scheduler's proposed victims per node, as full pods or (when the extender
    /// is `nodeCacheCapable`) as UIDs.
    pub struct ExtenderPreemptionArgs {
        /// The pod that preempts.
        pod: Pod = "Pod", required;
        node_name_to_victims: BTreeMap<String, Victims> = "NodeNameToVictims", default;
        node_name_to_meta_victims: BTreeMap<String, MetaVictims> = "NodeNameToMetaVictims", default;
    }
}

wire_struct! {
    /// The answer to a preempt call: the nodes (a subset of those proposed) and victims the extender accepts.
    pub struct ExtenderPreemptionResult {
        node_name_to_meta_victims: BTreeMap<String, MetaVictims> = "NodeNameToMetaVictims", default;
    }
}

wire_struct! {
    /// The pods to evict on one node, as full objects.
    pub struct Victims {
        pods: Vec<Pod> = "Pods", default;
        num_pdb_violations: i64 = "NumPDBViolations", default;
    }
}

wire_struct! {
    /// The pods to evict on one node, by UID.
    pub struct MetaVictims {
        pods: Vec<MetaPod> = "Pods", default;
        num_pdb_violations: i64 = "NumPDBViolations", default;
    }
}

wire_struct! {
    /// A pod named by its UID.
    pub struct MetaPod {
        uid: String = "UID", default;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_like_go() {
        for key in ["NodeNames", "nodeNames", "nodenames", "NODENAMES", "NodeNameſ"] {
            assert!(go_key_matches(key, "NodeNames"), "{key}");
        }
        assert!(go_key_matches("\u{212A}ey", "Key"), "the Kelvin sign folds to k");
        for key in ["NodeName", "Node_Names", "NodeNamesX", "", "NödeNames"] {
            assert!(!go_key_matches(key, "NodeNames"), "{key}");
        }
    }

    #[test]
    fn positions_are_stripped_only_when_present() {
        assert_eq!(without_position("invalid type: null at line 1 column 20"), "invalid type: null");
        assert_eq!(without_position("expected at line of sight"), "expected at line of sight");
        assert_eq!(without_position("plain"), "plain");
    }
}
