//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go structs carry no JSON tags, so their keys are the Go field names: muster writes them in PascalCase, and
//! reads them in any letter case, as Go's `encoding/json` does (`NodeNames`, `nodeNames`, `NODENAMES` ...).
//! kube-scheduler itself sends exactly the Go names; matching the way Go does costs nothing measurable (a request
//! has three keys) and takes hand-written requests as the Go types would. Go writes nil pointers, slices and maps
//! as `null`, so `null` reads as "absent" everywhere. Unknown keys are ignored. A key given twice (in any letter
//! case) is refused as a duplicate field, where Go keeps the last value: Go's encoder never writes one twice.
//! Inside `Pod` and `Nodes` the ordinary camelCase Kubernetes object JSON applies.
//!
//! The structs derive their serde code; a small adapter applies Go's key matching and `null`s to it. Read them
//! with [`decode`] or through the `Deserialize` trait: the inherent `deserialize` function that
//! `#[serde(remote = "Self")]` leaves on each struct is the plain derived one.
//!
//! A filter request can carry 5,000 node names (or 5,000 full Node objects) and its answer as many names and
//! reasons, so decoding goes straight from the body bytes into these types (no detour through
//! `serde_json::Value`), and node names are borrowed from the body instead of allocated one by one
//! ([`NodeNames`], [`FailedNodes`]), which halves the time to decode 5,000 names (benches/wire.rs); an answer can
//! borrow them again from the request.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::de::value::{BorrowedStrDeserializer, StrDeserializer, UnitDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest request body muster accepts: 5,000 full Node objects with images and conditions stay well below.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The most node names (or Node objects) one request may carry: above the largest clusters Kubernetes runs
/// (65,000 nodes). It bounds what decoding a hostile list of tiny names allocates (24 bytes a name).
pub const MAX_NODES_PER_REQUEST: usize = 100_000;

/// The highest score an extender may give a node (`MaxExtenderPriority`); the lowest is 0.
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// A list of nodes as kube-scheduler sends it when the extender is not `nodeCacheCapable`: a v1 `NodeList`, of
/// which only `items` is read (and written back in an answer). Its length is bounded like a list of names
/// ([`decode_with_node_limit`]): a list of empty objects costs 3 bytes of body per Node but a kilobyte of memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    #[serde(default, deserialize_with = "bounded_nodes")]
    pub items: Vec<Node>,
}

fn bounded_nodes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Node>, D::Error> {
    bounded_list(deserializer, node_limit(), "nodes in one request")
}

std::thread_local! {
    /// The node limit of the decoding running on this thread ([`decode_with_node_limit`]).
    static NODE_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_NODES_PER_REQUEST) };
}

/// How many node names or Node objects the decoding on this thread accepts in one list.
fn node_limit() -> usize {
    NODE_LIMIT.with(|limit| limit.get())
}

/// [`decode`] accepting at most `max_nodes` names or Node objects in a list (never more than
/// [`MAX_NODES_PER_REQUEST`]). The server passes a multiple of the nodes it knows: kube-scheduler never sends
/// more nodes than the cluster has, and a request that does is refused before it allocates.
pub fn decode_with_node_limit<'de, T: WireMessage<'de>>(body: &'de [u8], max_nodes: usize) -> Result<T, WireError> {
    // A thread-local rather than a seed threaded through the derived code: decoding is synchronous, so the
    // value is set and restored around it on the same thread.
    let previous = NODE_LIMIT.with(|limit| limit.replace(max_nodes.min(MAX_NODES_PER_REQUEST)));
    let decoded = decode(body);
    NODE_LIMIT.with(|limit| limit.set(previous));
    decoded
}

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
                let limit = node_limit();
                let mut names = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(limit));
                while let Some(CowStr(name)) = seq.next_element()? {
                    if names.len() == limit {
                        return Err(de::Error::custom(format_args!("more than {limit} node names in one request")));
                    }
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

/// For fields Go leaves at their zero value when the key is `null` (and, with `#[serde(default)]`, missing).
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The wire structs derive their serde code with `#[serde(remote = "Self")]`, which turns it into inherent
/// functions; their `Deserialize` impls run that code through [`GoObject`], so that every wire struct, however
/// deeply nested, reads Go's way. Serialisation is the derived one as it is.
macro_rules! go_wire_impls {
    ($($name:ident $(<$lt:lifetime>)?),* $(,)?) => {$(
        impl $(<$lt>)? Serialize for $name $(<$lt>)? {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $name::serialize(self, serializer)
            }
        }

        impl<'de $(: $lt, $lt)?> Deserialize<'de> for $name $(<$lt>)? {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $name::deserialize(GoObject(deserializer))
            }
        }

        impl<'de $(: $lt, $lt)?> WireMessage<'de> for $name $(<$lt>)? {
            const NAME: &'static str = stringify!($name);
        }
    )*};
}

/// Hands a derived struct deserialiser (which asks only for `deserialize_struct`) a JSON object whose keys match
/// the field names as Go matches them, where `null` counts as a missing key, and where an error in a field's
/// value names the field.
struct GoObject<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for GoObject<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(ObjectVisitor { name, fields, visitor })
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Accepts only a JSON object (not the sequence form derived code also accepts).
struct ObjectVisitor<V> {
    name: &'static str,
    fields: &'static [&'static str],
    visitor: V,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object ({})", self.name)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(GoMap { map, fields: self.fields, field: None }).map_err(|GoError(e)| e)
    }
}

/// The entries of a wire struct's object, with keys replaced by the field names they match.
struct GoMap<A> {
    map: A,
    fields: &'static [&'static str],
    /// The field whose value comes next; `None` after an unknown key.
    field: Option<&'static str>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for GoMap<A> {
    type Error = GoError<A::Error>;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some(CowStr(key)) = self.map.next_key().map_err(GoError)? else { return Ok(None) };
        self.field = self.fields.iter().copied().find(|field| go_key_matches(&key, field));
        let key = match self.field {
            Some(field) => seed.deserialize(BorrowedStrDeserializer::new(field)),
            // Derived code skips keys that are not its fields.
            None => seed.deserialize(StrDeserializer::new(&key)),
        };
        key.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let Some(field) = self.field else { return self.map.next_value_seed(seed).map_err(GoError) };
        match self.map.next_value_seed(NullOr(seed)) {
            Ok(Ok(value)) => Ok(value),
            // As if the key were missing: `Option` and `or_default` fields accept it, others are required.
            Ok(Err(seed)) => seed
                .deserialize(UnitDeserializer::new())
                .map_err(|_: GoError<A::Error>| de::Error::missing_field(field)),
            Err(e) => Err(GoError(de::Error::custom(format_args!("{field}: {}", without_position(&e.to_string()))))),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a value with `seed`, or gives `seed` back if the value is `null`.
struct NullOr<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for NullOr<S> {
    type Value = Result<S::Value, S>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for NullOr<S> {
    type Value = Result<S::Value, S>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(self.0))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Ok)
    }
}

/// The error of [`GoMap`]: the underlying one, with a missing field reported the way a `null` one is (both are
/// Go's nil).
#[derive(Debug)]
struct GoError<E>(E);

impl<E: fmt::Display> fmt::Display for GoError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for GoError<E> {}

impl<E: de::Error> de::Error for GoError<E> {
    fn custom<T: fmt::Display>(message: T) -> Self {
        GoError(E::custom(message))
    }

    fn missing_field(field: &'static str) -> Self {
        GoError(E::custom(format_args!("field `{field}` is missing or null")))
    }
}

/// The body of a filter or prioritize call: the pod and the candidate nodes, as full objects (`Nodes`) or, when
/// the extender is `nodeCacheCapable`, as names (`NodeNames`); the other one is `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderArgs<'a> {
    /// The pod being scheduled.
    #[serde(rename = "Pod")]
    pub pod: Pod,
    /// The candidate nodes, when the extender is not `nodeCacheCapable`.
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList>,
    /// The candidate node names, when the extender is `nodeCacheCapable`.
    #[serde(rename = "NodeNames", borrow)]
    pub node_names: Option<NodeNames<'a>>,
}

/// The answer to a filter call. A nodeCacheCapable extender answers with `NodeNames`, each one of the names it was
/// sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderFilterResult<'a> {
    /// The nodes that passed, when the request carried `Nodes`.
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList>,
    /// The names of the nodes that passed, when the request carried `NodeNames`.
    #[serde(rename = "NodeNames", borrow)]
    pub node_names: Option<NodeNames<'a>>,
    /// Nodes that failed, with reasons; kube-scheduler may preempt on these.
    #[serde(rename = "FailedNodes", borrow, default, deserialize_with = "or_default")]
    pub failed_nodes: FailedNodes<'a>,
    /// Nodes that failed where preemption cannot help, with reasons; kube-scheduler will not preempt there.
    #[serde(rename = "FailedAndUnresolvableNodes", borrow, default, deserialize_with = "or_default")]
    pub failed_and_unresolvable_nodes: FailedNodes<'a>,
    /// Non-empty when the whole call failed.
    #[serde(rename = "Error", default, deserialize_with = "or_default")]
    pub error: String,
}

/// One node's score in a prioritize answer (0..=[`MAX_EXTENDER_PRIORITY`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct HostPriority {
    #[serde(rename = "Host", default, deserialize_with = "or_default")]
    pub host: String,
    #[serde(rename = "Score", default, deserialize_with = "or_default")]
    pub score: i64,
}

/// The body of a bind call: bind this pod to this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName", default, deserialize_with = "or_default")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace", default, deserialize_with = "or_default")]
    pub pod_namespace: String,
    #[serde(rename = "PodUID", default, deserialize_with = "or_default")]
    pub pod_uid: String,
    #[serde(rename = "Node", default, deserialize_with = "or_default")]
    pub node: String,
}

/// The answer to a bind call; an empty `Error` means the binding was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderBindingResult {
    #[serde(rename = "Error", default, deserialize_with = "or_default")]
    pub error: String,
}

/// The body of a preempt call: kube-scheduler's proposed victims per node, as full pods or (when the extender is
/// `nodeCacheCapable`) as UIDs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderPreemptionArgs {
    /// The pod that preempts.
    #[serde(rename = "Pod")]
    pub pod: Pod,
    #[serde(rename = "NodeNameToVictims", default, deserialize_with = "bounded_node_map")]
    pub node_name_to_victims: BTreeMap<String, Victims>,
    #[serde(rename = "NodeNameToMetaVictims", default, deserialize_with = "bounded_node_map")]
    pub node_name_to_meta_victims: BTreeMap<String, MetaVictims>,
}

/// The answer to a preempt call: the nodes (a subset of those proposed) and victims the extender accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExtenderPreemptionResult {
    #[serde(rename = "NodeNameToMetaVictims", default, deserialize_with = "or_default")]
    pub node_name_to_meta_victims: BTreeMap<String, MetaVictims>,
}

/// The pods to evict on one node, sent as full objects; only their UIDs are read (a full Pod costs a kilobyte
/// of memory however little of it the body holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Victims {
    #[serde(rename = "Pods", default, deserialize_with = "bounded_victims")]
    pub pods: Vec<VictimPod>,
    #[serde(rename = "NumPDBViolations", default, deserialize_with = "or_default")]
    pub num_pdb_violations: i64,
}

/// The pods to evict on one node, by UID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct MetaVictims {
    #[serde(rename = "Pods", default, deserialize_with = "bounded_victims")]
    pub pods: Vec<MetaPod>,
    #[serde(rename = "NumPDBViolations", default, deserialize_with = "or_default")]
    pub num_pdb_violations: i64,
}

/// A victim pod as a full object, of which only `metadata.uid` is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VictimPod {
    #[serde(default, deserialize_with = "or_default")]
    pub metadata: VictimMeta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VictimMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Victims on one node at most: above any node's pod capacity (kubelet's default is 110).
pub const MAX_VICTIMS_PER_NODE: usize = 1_000;

fn bounded_victims<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    bounded_list(deserializer, MAX_VICTIMS_PER_NODE, "victim pods on one node")
}

/// Node-keyed maps (victims by node) hold at most [`node_limit`] entries.
fn bounded_node_map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, V>, D::Error> {
    struct MapVisitor<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object keyed by node name")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let limit = node_limit();
            let mut entries = BTreeMap::new();
            while let Some((node, value)) = map.next_entry::<String, V>()? {
                entries.insert(node, value);
                if entries.len() > limit {
                    return Err(de::Error::custom(format_args!("more than {limit} nodes in one request")));
                }
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_any(MapVisitor(PhantomData))
}

/// A list of at most `limit` elements (`null` reads as empty).
fn bounded_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
    limit: usize,
    what: &'static str,
) -> Result<Vec<T>, D::Error> {
    struct ListVisitor<T> {
        limit: usize,
        what: &'static str,
        element: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of {}", self.what)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == self.limit {
                    return Err(de::Error::custom(format_args!("more than {} {}", self.limit, self.what)));
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_any(ListVisitor { limit, what, element: PhantomData })
}

/// A pod named by its UID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct MetaPod {
    #[serde(rename = "UID", default, deserialize_with = "or_default")]
    pub uid: String,
}

go_wire_impls!(
    ExtenderArgs<'a>,
    ExtenderFilterResult<'a>,
    HostPriority,
    ExtenderBindingArgs,
    ExtenderBindingResult,
    ExtenderPreemptionArgs,
    ExtenderPreemptionResult,
    Victims,
    MetaVictims,
    MetaPod,
);

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
    fn a_key_given_twice_is_refused() {
        let e = decode::<ExtenderArgs>(br#"{"Pod": {}, "NodeNames": ["a"], "nodenames": ["b"]}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `NodeNames`"), "{e}");
        let e = decode::<ExtenderPreemptionResult>(
            br#"{"NodeNameToMetaVictims": {"n": {"Pods": [{"UID": "a", "uid": "b"}]}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("NodeNameToMetaVictims: Pods: duplicate field `UID`"), "{e}");
    }

    #[test]
    fn null_reads_as_missing() {
        let e = decode::<ExtenderArgs>(br#"{"Pod": null, "NodeNames": ["a"]}"#).unwrap_err().to_string();
        assert!(e.ends_with("field `Pod` is missing or null at line 1 column 12"), "reported where it is: {e}");
        let answer: ExtenderFilterResult =
            decode(br#"{"Nodes": null, "NodeNames": null, "FailedNodes": null, "Error": null}"#).unwrap();
        assert_eq!(answer, ExtenderFilterResult::default());
        let scores: HostPriorityList = decode(br#"[{"Host": null, "Score": null}]"#).unwrap();
        assert_eq!(scores, vec![HostPriority::default()]);
        let preempt: ExtenderPreemptionResult =
            decode(br#"{"NodeNameToMetaVictims": {"n": {"Pods": [{"UID": null}], "NumPDBViolations": null}}}"#)
                .unwrap();
        assert_eq!(preempt.node_name_to_meta_victims["n"].pods, vec![MetaPod::default()]);
    }

    #[test]
    fn the_inherent_deserialize_is_the_plain_derived_one() {
        let body = r#"{"podname": "p"}"#;
        let go: ExtenderBindingArgs = serde_json::from_str(body).unwrap();
        assert_eq!(go.pod_name, "p");
        let plain = ExtenderBindingArgs::deserialize(&mut serde_json::Deserializer::from_str(body)).unwrap();
        assert_eq!(plain.pod_name, "", "exact keys only");
    }

    #[test]
    fn positions_are_stripped_only_when_present() {
        assert_eq!(without_position("invalid type: null at line 1 column 20"), "invalid type: null");
        assert_eq!(without_position("expected at line of sight"), "expected at line of sight");
        assert_eq!(without_position("plain"), "plain");
    }
}
