//! Conversions from Kubernetes objects (and muster's CRDs) into the core's model. Pure functions: no API calls.
//!
//! Every function reads one object and either returns core values or a [`ConvertError`] naming the object and the
//! offending field or value, ready to be shown in an Event or a log line. Pods and nodes are converted on every
//! watch event, so the names in error messages are only formatted when an error is actually built.
//!
//! One file per kind of object: `pod.rs` (requests and placement), `node.rs`, `queue.rs`, `gang.rs` (PodGroups,
//! Spark drivers and which gang a pod belongs to), `spark.rs` (Spark's configuration into its executor pod); errors and the parsing they share are here.

#[cfg(test)]
mod fixtures;
mod gang;
mod node;
mod pod;
mod queue;
pub mod spark;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::core::{QuantityError, ResourceError, ResourceNames, Resources, Unit, parse_amount};

pub use gang::{
    GangRef, GangSource, SPARK_DRIVER_TEMPLATE, SPARK_EXECUTOR_TEMPLATE, SparkGang, gang_key, podgroup_templates,
    queue_annotation, spark_driver_gang, spark_pod_group_name, template_for_pod,
};
pub use node::node_spec;
pub use pod::{pod_placement, pod_requests, tolerations_to_k8s};
pub use queue::queue_spec;

/// Why an object could not be converted. `object` is e.g. `Pod spark/exec-1`, `field` a JSON path into it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("{object}: {field}: {cause}")]
    Quantity { object: String, field: String, cause: QuantityError },
    #[error("{object}: {field}: {cause}")]
    Resource { object: String, field: String, cause: ResourceError },
    #[error("{object}: {field}: {value:?} {problem}")]
    Invalid { object: String, field: String, value: String, problem: String },
    #[error("{object}: Spark conf {key}: {problem}")]
    SparkConf { object: String, key: String, problem: String },
    #[error("{object}: annotation {annotation}: {problem}")]
    Annotation { object: String, annotation: &'static str, problem: String },
    #[error(
        "{object}: spec.minMember is {min_member} but the member templates' minMember add up to only \
         {template_sum}; raise a template's minMember or lower spec.minMember"
    )]
    MinMemberAboveTemplates { object: String, min_member: u32, template_sum: u64 },
}

impl ConvertError {
    fn invalid(
        object: Subject<'_>,
        field: impl fmt::Display,
        value: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConvertError::Invalid {
            object: object.to_string(),
            field: field.to_string(),
            value: value.into(),
            problem: problem.into(),
        }
    }

    fn annotation(object: Subject<'_>, annotation: &'static str, problem: impl Into<String>) -> Self {
        ConvertError::Annotation { object: object.to_string(), annotation, problem: problem.into() }
    }
}

/// The object being converted, as error messages name it: `Kind namespace/name` (`Kind name` when
/// cluster-scoped).
#[derive(Clone, Copy)]
struct Subject<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.meta.name.as_deref().unwrap_or("<unnamed>");
        match self.meta.namespace.as_deref() {
            Some(namespace) => write!(f, "{} {namespace}/{name}", self.kind),
            None => write!(f, "{} {name}", self.kind),
        }
    }
}

/// A non-empty label value.
fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

fn required_name(object: Subject<'_>) -> Result<String, ConvertError> {
    object.meta.name.clone().ok_or_else(|| ConvertError::invalid(object, "metadata.name", "", "is required"))
}

/// Parses one quantity into the integer unit the core stores for `resource`.
fn parse_quantity(
    resource: &str,
    quantity: &Quantity,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<u64, ConvertError> {
    parse_amount(&quantity.0, Unit::for_resource(resource)).map_err(|cause| ConvertError::Quantity {
        object: object.to_string(),
        field: field.to_string(),
        cause,
    })
}

/// Interns `resource` and parses its quantity: `(slot, amount)`.
fn parse_resource(
    resource: &str,
    quantity: &Quantity,
    names: &mut ResourceNames,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<(usize, u64), ConvertError> {
    let slot = names.intern(resource).map_err(|cause| ConvertError::Resource {
        object: object.to_string(),
        field: field.to_string(),
        cause,
    })?;
    Ok((slot, parse_quantity(resource, quantity, object, field)?))
}

/// Parses a whole `name -> quantity` map found at `field`, interning new names.
fn parse_list(
    list: &BTreeMap<String, Quantity>,
    names: &mut ResourceNames,
    object: Subject<'_>,
    field: impl fmt::Display,
) -> Result<Resources, ConvertError> {
    let mut r = Resources::ZERO;
    for (resource, quantity) in list {
        let (slot, amount) = parse_resource(resource, quantity, names, object, format_args!("{field}.{resource}"))?;
        r.0[slot] = amount;
    }
    Ok(r)
}

/// `a + b`, or an error when a sum leaves u64: such requests are absurd, and saturating would make them look
/// like `Resources::UNLIMITED`.
fn checked_add(a: &Resources, b: &Resources, object: Subject<'_>, field: &str) -> Result<Resources, ConvertError> {
    let mut r = *a;
    for (x, y) in r.0.iter_mut().zip(b.0) {
        *x = x.checked_add(y).ok_or_else(|| {
            ConvertError::invalid(object, field, y.to_string(), "makes the pod's total requests overflow")
        })?;
    }
    Ok(r)
}
