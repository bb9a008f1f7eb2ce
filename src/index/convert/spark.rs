//! A Spark application's executors, read from Spark's own configuration the way Spark sizes its pods.
//!
//! In cluster mode spark-submit stores the driver's resolved configuration in a ConfigMap (`spark.properties`)
//! and, when an executor pod template is given, the template in a second ConfigMap; the driver pod mounts both
//! (volumes [`SPARK_CONF_VOLUME`] and [`POD_TEMPLATE_VOLUME`]). Spark creates the ConfigMaps just *after* the
//! driver pod, so the controller fetches them on demand ([`spark_conf_sources`] says which) and hands the text to
//! [`executor_plan`]. Everything here is pure: no API calls.
//!
//! [`executor_plan`] builds the executor pod Spark's `BasicExecutorFeatureStep` would build (template, then the
//! executor container's cpu and memory, custom resources and node selectors) and returns it with the gang's
//! executor counts. Its requests and placement are then read like any other pod's, so sidecars, init containers
//! and the template's tolerations and required node affinity count exactly as kube-scheduler will count them.
//! The rules (Spark 3.5 and 4.x):
//! - cpu request: `spark.kubernetes.executor.request.cores`, else `spark.executor.cores` (default 1);
//! - memory (request and limit, in MiB): `spark.executor.memory` (1g) + overhead + `spark.executor.pyspark.memory`
//!   (Python applications only: `spark.kubernetes.resource.type=python`) + `spark.memory.offHeap.size` when
//!   `spark.memory.offHeap.enabled`; the overhead is `spark.executor.memoryOverhead`, else
//!   max(⌊factor × memory⌋, `spark.executor.minMemoryOverhead` (4.x; 384 MiB)), the factor being
//!   `spark.executor.memoryOverheadFactor`, else `spark.kubernetes.memoryOverheadFactor` (0.1; a Python
//!   application's driver is handed 0.4 there by spark-submit);
//! - custom resources: `spark.executor.resource.<name>.amount` as the limit (so the request) of
//!   `<vendor>/<name>`;
//! - placement: the template's, plus `spark.kubernetes.node.selector.*` and
//!   `spark.kubernetes.executor.node.selector.*` (these win over the template's keys).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The driver pod's volume holding its configuration ConfigMap.
pub const SPARK_CONF_VOLUME: &str = "spark-conf-volume-driver";
/// The key of `spark.properties` in that ConfigMap.
pub const SPARK_PROPERTIES_KEY: &str = "spark.properties";
/// The driver pod's volume holding the executor pod template ConfigMap (when one was given).
pub const POD_TEMPLATE_VOLUME: &str = "pod-template-volume";
/// The key of the template in that ConfigMap.
pub const POD_TEMPLATE_KEY: &str = "podspec-configmap-key";

/// The conf key naming the queue (the operations guide's Volcano spelling, honoured as is).
pub const QUEUE_CONF: &str = "spark.kubernetes.scheduler.volcano.podGroupPolicy.queue";
/// The conf key giving the gang's minimum member count, driver included (Volcano's `minAvailable`).
pub const MIN_AVAILABLE_CONF: &str = "spark.kubernetes.scheduler.volcano.podGroupPolicy.minAvailable";

/// The label the Kubeflow Spark Operator puts on the pods it launches, naming their SparkApplication.
pub const OPERATOR_APP_NAME_LABEL: &str = "sparkoperator.k8s.io/app-name";
/// The label (`true`) marking pods the operator launched, which its mutating webhook completes.
pub const OPERATOR_LAUNCHED_LABEL: &str = "sparkoperator.k8s.io/launched-by-spark-operator";

/// Where (in the driver's namespace) a driver's configuration is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SparkConfSources {
    /// The ConfigMap holding `spark.properties`.
    pub properties: String,
    /// The ConfigMap holding the executor pod template, when the driver mounts one.
    pub pod_template: Option<String>,
    /// The SparkApplication (`sparkoperator.k8s.io/v1beta2`) that launched the driver, if the Spark Operator did:
    /// its webhook adds the executors' node selector, tolerations, affinity and GPU to the pods, which no Spark
    /// conf carries.
    pub spark_application: Option<String>,
}

/// A driver's configuration, as fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct SparkConfFiles {
    /// `spark.properties`.
    pub properties: String,
    /// The executor pod template (YAML), when the driver mounts one.
    pub pod_template: Option<String>,
    /// The SparkApplication's `spec.executor`, when [`SparkConfSources::spark_application`] named one that
    /// exists.
    pub operator_executor: Option<serde_json::Value>,
}

/// The ConfigMaps a driver pod mounts its configuration from; `None` when it mounts none (a client-mode driver,
/// or a pod made by hand), whose executors muster can learn only from annotations.
pub fn spark_conf_sources(driver: &Pod) -> Option<SparkConfSources> {
    let volumes = driver.spec.as_ref()?.volumes.as_deref()?;
    let config_map = |name: &str| -> Option<String> {
        volumes.iter().find(|v: &&Volume| v.name == name)?.config_map.as_ref().map(|c| c.name.clone())
    };
    let labels = driver.metadata.labels.as_ref();
    let launched_by_operator = labels.and_then(|l| l.get(OPERATOR_LAUNCHED_LABEL)).is_some_and(|v| v == "true");
    Some(SparkConfSources {
        properties: config_map(SPARK_CONF_VOLUME)?,
        pod_template: config_map(POD_TEMPLATE_VOLUME),
        spark_application: labels
            .and_then(|l| l.get(OPERATOR_APP_NAME_LABEL))
            .filter(|name| launched_by_operator && !name.is_empty())
            .cloned(),
    })
}

/// A configuration muster cannot use: the key (or file) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Spark conf {key}: {problem}")]
pub struct SparkConfError {
    pub key: String,
    pub problem: String,
}

fn conf_error(key: &str, problem: impl Into<String>) -> SparkConfError {
    SparkConfError { key: key.to_string(), problem: problem.into() }
}

/// What the configuration says about the executors.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorPlan {
    /// Executors that must start with the driver.
    pub min: u32,
    /// The most executors the application may run (`u32::MAX`: unbounded).
    pub max: u32,
    /// One executor pod as Spark will create it (its requests and placement are what matter).
    pub pod: Pod,
    /// The queue the configuration names, if any.
    pub queue: Option<String>,
}

/// Parses a Java properties file (`java.util.Properties.load`): `key=value`, `key: value` or `key value`,
/// `#`/`!` comments, backslash line continuations and escapes (`\t`, `\n`, `\uXXXX`, `\=`, ...).
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let first = first.trim_start_matches([' ', '\t', '\u{c}']);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the next (leading blanks dropped).
        let mut logical = String::from(first);
        while logical.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1 {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start_matches([' ', '\t', '\u{c}'])),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.insert(unescape(key), unescape(value));
    }
    out
}

/// Splits a logical line at the first unescaped `=`, `:` or blank (blanks around one separator are dropped).
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let key_end = i.min(bytes.len());
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\u{c}']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\u{c}']);
    }
    (&line[..key_end], rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => out.push_str(&hex), // Java throws; keeping the text is the lenient reading
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The unit a size conf means when its value has no suffix.
#[derive(Clone, Copy)]
enum SizeUnit {
    Bytes,
    MiB,
}

/// A size as Spark reads it (`JavaUtils.byteStringAs`), in MiB rounded down: an integer with an optional
/// suffix b, k(b), m(b), g(b), t(b), p(b) (case-insensitive, binary multiples); no fractions.
fn size_mib(key: &str, value: &str, unit: SizeUnit) -> Result<u64, SparkConfError> {
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at(digits_end);
    if digits.is_empty() || (suffix.starts_with('.') && suffix[1..].starts_with(|c: char| c.is_ascii_digit())) {
        let problem = if digits.is_empty() {
            format!("{value:?} is not a size (an integer with an optional suffix b, k, m, g, t or p)")
        } else {
            format!("{value:?}: fractional sizes are not supported by Spark; use a smaller unit, e.g. 1536m")
        };
        return Err(conf_error(key, problem));
    }
    let number: u128 = digits.parse().map_err(|_| conf_error(key, format!("{value:?} is too large")))?;
    let bytes_per_unit: u128 = match suffix {
        "" => match unit {
            SizeUnit::Bytes => 1,
            SizeUnit::MiB => 1 << 20,
        },
        "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        "p" | "pb" => 1 << 50,
        _ => return Err(conf_error(key, format!("{value:?} has an unknown size suffix {suffix:?}"))),
    };
    let mib = number.checked_mul(bytes_per_unit).map(|b| b >> 20);
    mib.and_then(|m| u64::try_from(m).ok()).ok_or_else(|| conf_error(key, format!("{value:?} is too large")))
}

/// Spark's lookup with defaults, and its parsers for each kind of value.
struct Conf<'a>(&'a BTreeMap<String, String>);

impl Conf<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim())
    }

    fn size_mib(&self, key: &str, unit: SizeUnit) -> Result<Option<u64>, SparkConfError> {
        self.get(key).map(|v| size_mib(key, v, unit)).transpose()
    }

    fn boolean(&self, key: &str) -> Result<bool, SparkConfError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(conf_error(key, format!("{other:?} is not true or false"))),
        }
    }

    fn count(&self, key: &str) -> Result<Option<u32>, SparkConfError> {
        self.get(key)
            .map(|v| v.parse::<u32>().map_err(|_| conf_error(key, format!("{v:?} is not a non-negative integer"))))
            .transpose()
    }

    fn factor(&self, key: &str) -> Result<Option<f64>, SparkConfError> {
        self.get(key)
            .map(|v| match v.parse::<f64>() {
                Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
                _ => Err(conf_error(key, format!("{v:?} is not a positive number"))),
            })
            .transpose()
    }

    /// `prefix<suffix>=value` entries, e.g. node selectors.
    fn with_prefix<'k>(&'k self, prefix: &'k str) -> impl Iterator<Item = (&'k str, &'k str)> + 'k {
        self.0.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).filter_map(move |(k, v)| {
            let rest = &k[prefix.len()..];
            (!rest.is_empty()).then_some((rest, v.as_str()))
        })
    }
}

/// The executors a driver's configuration asks for: counts, the executor pod Spark will create, and the queue.
/// `driver` gives the namespace and name used in the executor pod's metadata (for messages).
pub fn executor_plan(driver: &Pod, files: &SparkConfFiles) -> Result<ExecutorPlan, SparkConfError> {
    let properties = parse_properties(&files.properties);
    let conf = Conf(&properties);
    let (min, max) = executor_counts(&conf)?;
    let mut pod = executor_pod(driver, &conf, files.pod_template.as_deref())?;
    if let Some(executor) = &files.operator_executor {
        apply_operator_webhook(&mut pod, executor)?;
    }
    let queue = conf.get(QUEUE_CONF).filter(|q| !q.is_empty()).map(str::to_string);
    Ok(ExecutorPlan { min, max, pod, queue })
}

/// Executors that must start with the driver, and the most it may run.
fn executor_counts(conf: &Conf<'_>) -> Result<(u32, u32), SparkConfError> {
    let (mut min, max) = if conf.boolean("spark.dynamicAllocation.enabled")? {
        let min = conf.count("spark.dynamicAllocation.minExecutors")?.unwrap_or(0);
        let initial = conf.count("spark.dynamicAllocation.initialExecutors")?.unwrap_or(min);
        let max = conf.count("spark.dynamicAllocation.maxExecutors")?.unwrap_or(u32::MAX);
        if min > max {
            return Err(conf_error(
                "spark.dynamicAllocation.minExecutors",
                format!("{min} is above spark.dynamicAllocation.maxExecutors ({max}); Spark refuses this too"),
            ));
        }
        (min.max(initial).min(max), max)
    } else {
        // Spark on Kubernetes starts 2 executors when spark.executor.instances is unset.
        let instances = conf.count("spark.executor.instances")?.unwrap_or(2);
        (instances, instances)
    };
    if let Some(available) = conf.count(MIN_AVAILABLE_CONF)? {
        if available == 0 {
            return Err(conf_error(MIN_AVAILABLE_CONF, "0: the gang has at least its driver"));
        }
        let executors = available - 1;
        if executors > max {
            return Err(conf_error(
                MIN_AVAILABLE_CONF,
                format!("{available} (the driver and {executors} executors) is above the {max} executors allowed"),
            ));
        }
        min = executors;
    }
    Ok((min, max))
}

/// The executor pod `BasicExecutorFeatureStep` builds: the template (if any), its Spark container (named by
/// `spark.kubernetes.executor.podTemplateContainerName`, else the first) given Spark's cpu and memory requests,
/// custom resource limits and node selectors.
fn executor_pod(driver: &Pod, conf: &Conf<'_>, template: Option<&str>) -> Result<Pod, SparkConfError> {
    let mut pod = match template {
        Some(yaml) => parse_pod_template(yaml)?,
        None => {
            if let Some(path) = conf.get("spark.kubernetes.executor.podTemplateFile") {
                return Err(conf_error(
                    "spark.kubernetes.executor.podTemplateFile",
                    format!(
                        "{path:?} is set but the driver mounts no {POD_TEMPLATE_VOLUME:?} ConfigMap to read it from"
                    ),
                ));
            }
            Pod::default()
        }
    };
    pod.metadata = ObjectMeta {
        name: Some(format!("{}-exec-template", driver.metadata.name.as_deref().unwrap_or("driver"))),
        namespace: driver.metadata.namespace.clone(),
        ..ObjectMeta::default()
    };
    let spec = pod.spec.get_or_insert_with(PodSpec::default);

    let container_name = conf.get("spark.kubernetes.executor.podTemplateContainerName");
    let index = match container_name.and_then(|n| spec.containers.iter().position(|c| c.name == n)) {
        Some(i) => i,
        None if spec.containers.is_empty() => {
            spec.containers.push(Container { name: "spark-kubernetes-executor".into(), ..Container::default() });
            0
        }
        None => 0,
    };
    let resources = spec.containers[index].resources.get_or_insert_with(ResourceRequirements::default);
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    let memory = Quantity(format!("{}Mi", executor_memory_mib(conf)?));
    requests.insert("memory".into(), memory.clone());
    requests.insert("cpu".into(), Quantity(executor_cpu(conf)?));
    let limits = resources.limits.get_or_insert_with(BTreeMap::new);
    limits.insert("memory".into(), memory);
    if let Some(cores) = conf.get("spark.kubernetes.executor.limit.cores") {
        limits.insert("cpu".into(), Quantity(cores.to_string()));
    }
    for (name, amount) in custom_resources(conf)? {
        limits.insert(name, amount);
    }

    let selectors = conf.with_prefix("spark.kubernetes.node.selector.");
    let executor_selectors = conf.with_prefix("spark.kubernetes.executor.node.selector.");
    let node_selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
    for (key, value) in selectors.chain(executor_selectors) {
        node_selector.insert(key.to_string(), value.to_string());
    }
    if node_selector.is_empty() {
        spec.node_selector = None;
    }
    Ok(pod)
}

/// What the Spark Operator's pod webhook adds to an executor pod from its SparkApplication's `spec.executor`:
/// `nodeSelector` merged, `tolerations` appended, `affinity` replacing the pod's, and `gpu` (`{name, quantity}`)
/// as a limit of the Spark container (the first).
fn apply_operator_webhook(pod: &mut Pod, executor: &serde_json::Value) -> Result<(), SparkConfError> {
    const KEY: &str = "SparkApplication spec.executor";
    let field = |name: &str| executor.get(name).filter(|v| !v.is_null());
    let invalid = |name: &str, e: serde_json::Error| conf_error(KEY, format!("{name}: {e}"));
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    if let Some(value) = field("nodeSelector") {
        let selector: BTreeMap<String, String> =
            serde_json::from_value(value.clone()).map_err(|e| invalid("nodeSelector", e))?;
        spec.node_selector.get_or_insert_with(BTreeMap::new).extend(selector);
    }
    if let Some(value) = field("tolerations") {
        let tolerations: Vec<k8s_openapi::api::core::v1::Toleration> =
            serde_json::from_value(value.clone()).map_err(|e| invalid("tolerations", e))?;
        spec.tolerations.get_or_insert_with(Vec::new).extend(tolerations);
    }
    if let Some(value) = field("affinity") {
        spec.affinity = Some(serde_json::from_value(value.clone()).map_err(|e| invalid("affinity", e))?);
    }
    if let Some(gpu) = field("gpu") {
        let name = gpu.get("name").and_then(|n| n.as_str()).filter(|n| !n.is_empty());
        let quantity = gpu.get("quantity").and_then(|q| q.as_i64());
        let (Some(name), Some(quantity)) = (name, quantity) else {
            return Err(conf_error(KEY, format!("gpu: {gpu} needs a name and an integer quantity")));
        };
        if quantity > 0 {
            let container = spec.containers.first_mut().expect("executor_pod gives the pod its Spark container");
            let resources = container.resources.get_or_insert_with(ResourceRequirements::default);
            resources.limits.get_or_insert_with(BTreeMap::new).insert(name.to_string(), Quantity(quantity.to_string()));
        }
    }
    Ok(())
}

/// A pod template as Spark loads it: a Pod in YAML (apiVersion and kind may be left out).
fn parse_pod_template(yaml: &str) -> Result<Pod, SparkConfError> {
    const KEY: &str = "spark.kubernetes.executor.podTemplateFile";
    let mut value: serde_json::Value =
        serde_norway::from_str(yaml).map_err(|e| conf_error(KEY, format!("the template is not YAML: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(conf_error(KEY, "the template is not a Pod object"));
    };
    object.entry("apiVersion").or_insert_with(|| "v1".into());
    object.entry("kind").or_insert_with(|| "Pod".into());
    serde_json::from_value(value).map_err(|e| conf_error(KEY, format!("the template is not a valid Pod: {e}")))
}

/// The executor container's cpu request, as Spark writes it.
fn executor_cpu(conf: &Conf<'_>) -> Result<String, SparkConfError> {
    if let Some(request) = conf.get("spark.kubernetes.executor.request.cores") {
        return Ok(request.to_string());
    }
    let cores = conf.count("spark.executor.cores")?.unwrap_or(1);
    if cores == 0 {
        return Err(conf_error("spark.executor.cores", "0: an executor needs at least one core"));
    }
    Ok(cores.to_string())
}

/// The executor container's memory (request and limit) in MiB: heap + overhead + PySpark + off-heap.
fn executor_memory_mib(conf: &Conf<'_>) -> Result<u64, SparkConfError> {
    let heap = conf.size_mib("spark.executor.memory", SizeUnit::MiB)?.unwrap_or(1024);
    let overhead = match conf.size_mib("spark.executor.memoryOverhead", SizeUnit::MiB)? {
        Some(explicit) => explicit,
        None => {
            let factor = match conf.factor("spark.executor.memoryOverheadFactor")? {
                Some(f) => f,
                None => conf.factor("spark.kubernetes.memoryOverheadFactor")?.unwrap_or(0.1),
            };
            let floor = conf.size_mib("spark.executor.minMemoryOverhead", SizeUnit::MiB)?.unwrap_or(384);
            // Scala's `(factor * memory).toInt`: a double product truncated toward zero.
            ((factor * heap as f64) as u64).max(floor)
        }
    };
    let python = conf.get("spark.kubernetes.resource.type") == Some("python");
    let pyspark = if python { conf.size_mib("spark.executor.pyspark.memory", SizeUnit::MiB)?.unwrap_or(0) } else { 0 };
    let off_heap = if conf.boolean("spark.memory.offHeap.enabled")? {
        let size = conf.size_mib("spark.memory.offHeap.size", SizeUnit::Bytes)?.unwrap_or(0);
        if size == 0 {
            return Err(conf_error(
                "spark.memory.offHeap.size",
                "must be positive when spark.memory.offHeap.enabled is true (Spark refuses to start otherwise)",
            ));
        }
        size
    } else {
        0
    };
    [overhead, pyspark, off_heap]
        .into_iter()
        .try_fold(heap, u64::checked_add)
        .ok_or_else(|| conf_error("spark.executor.memory", "the executor's total memory overflows"))
}

/// `spark.executor.resource.<name>.amount` with `.vendor`: the limits `<vendor>/<name>: <amount>`.
fn custom_resources(conf: &Conf<'_>) -> Result<Vec<(String, Quantity)>, SparkConfError> {
    const PREFIX: &str = "spark.executor.resource.";
    let mut names: Vec<&str> =
        conf.with_prefix(PREFIX).filter_map(|(rest, _)| rest.split_once('.')).map(|p| p.0).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let amount_key = format!("{PREFIX}{name}.amount");
        let Some(amount) = conf.count(&amount_key)? else {
            return Err(conf_error(&amount_key, format!("is required: other {PREFIX}{name}.* keys are set")));
        };
        if amount == 0 {
            continue;
        }
        let vendor_key = format!("{PREFIX}{name}.vendor");
        let Some(vendor) = conf.get(&vendor_key).filter(|v| !v.is_empty()) else {
            return Err(conf_error(&vendor_key, "is required on Kubernetes (e.g. nvidia.com for a gpu)"));
        };
        out.push((format!("{vendor}/{name}"), Quantity(amount.to_string())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn driver() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "pi-driver", "namespace": "spark"},
            "spec": {"containers": [{"name": "spark-kubernetes-driver"}], "volumes": [
                {"name": "spark-local-dir-1", "emptyDir": {}},
                {"name": SPARK_CONF_VOLUME, "configMap": {"name": "spark-drv-123-conf-map"}},
                {"name": POD_TEMPLATE_VOLUME, "configMap": {"name": "pi-driver-podspec-conf-map"}}
            ]}
        }))
        .unwrap()
    }

    fn plan(properties: &str, template: Option<&str>) -> Result<ExecutorPlan, SparkConfError> {
        executor_plan(
            &driver(),
            &SparkConfFiles {
                properties: properties.into(),
                pod_template: template.map(str::to_string),
                operator_executor: None,
            },
        )
    }

    fn requests(plan: &ExecutorPlan) -> BTreeMap<String, String> {
        let c = &plan.pod.spec.as_ref().unwrap().containers[0];
        c.resources.as_ref().unwrap().requests.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    }

    #[test]
    fn the_sources_are_the_volumes_spark_mounts() {
        let sources = spark_conf_sources(&driver()).unwrap();
        assert_eq!(sources.properties, "spark-drv-123-conf-map");
        assert_eq!(sources.pod_template.as_deref(), Some("pi-driver-podspec-conf-map"));
        let mut bare = driver();
        bare.spec.as_mut().unwrap().volumes = None;
        assert_eq!(spark_conf_sources(&bare), None);
    }

    #[test]
    fn the_operators_webhook_fields_complete_the_executor() {
        let mut launched = driver();
        launched.metadata.labels = Some(BTreeMap::from([
            (OPERATOR_APP_NAME_LABEL.to_string(), "etl".to_string()),
            (OPERATOR_LAUNCHED_LABEL.to_string(), "true".to_string()),
        ]));
        assert_eq!(spark_conf_sources(&launched).unwrap().spark_application.as_deref(), Some("etl"));
        assert_eq!(spark_conf_sources(&driver()).unwrap().spark_application, None);

        let executor = json!({
            "cores": 2, "memory": "4g",
            "nodeSelector": {"workload": "spark-executor"},
            "tolerations": [{"key": "workload", "operator": "Equal", "value": "spark-executor", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]}]}}},
            "gpu": {"name": "nvidia.com/gpu", "quantity": 1}
        });
        let files = SparkConfFiles {
            properties: "spark.kubernetes.node.selector.zone=a\n".into(),
            pod_template: None,
            operator_executor: Some(executor),
        };
        let p = executor_plan(&launched, &files).unwrap();
        let spec = p.pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_selector.clone().unwrap(),
            BTreeMap::from([("workload".into(), "spark-executor".into()), ("zone".into(), "a".into())])
        );
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
        assert!(spec.affinity.as_ref().unwrap().node_affinity.is_some());
        let limits = spec.containers[0].resources.as_ref().unwrap().limits.clone().unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");

        let bad = SparkConfFiles { operator_executor: Some(json!({"tolerations": "all"})), ..files };
        let e = executor_plan(&launched, &bad).unwrap_err();
        assert!(e.to_string().starts_with("Spark conf SparkApplication spec.executor: tolerations:"), "{e}");
    }

    #[test]
    fn java_properties_as_spark_writes_them() {
        let text = "#Java properties built from Kubernetes config map with name: x\n#Wed Dec 02 10:00:00 UTC 2026\n\
                    spark.app.name=pi\nspark.kubernetes.driver.label.team=data\\:eng\n  spark.a : b c\n\
                    spark.long=one\\\n    two\n! comment\nspark.unicode=caf\\u00e9\nspark.empty=\nspark.bare\n";
        let p = parse_properties(text);
        assert_eq!(p["spark.app.name"], "pi");
        assert_eq!(p["spark.kubernetes.driver.label.team"], "data:eng");
        assert_eq!(p["spark.a"], "b c");
        assert_eq!(p["spark.long"], "onetwo");
        assert_eq!(p["spark.unicode"], "café");
        assert_eq!(p["spark.empty"], "");
        assert_eq!(p["spark.bare"], "");
        assert_eq!(p.len(), 7);
    }

    #[test]
    fn sizes_are_read_like_spark() {
        assert_eq!(size_mib("k", "1g", SizeUnit::MiB), Ok(1024));
        assert_eq!(size_mib("k", "1536", SizeUnit::MiB), Ok(1536));
        assert_eq!(size_mib("k", " 2G ", SizeUnit::MiB), Ok(2048));
        assert_eq!(size_mib("k", "1048576k", SizeUnit::MiB), Ok(1024));
        assert_eq!(size_mib("k", "1500k", SizeUnit::MiB), Ok(1), "rounded down");
        assert_eq!(size_mib("k", "1073741824", SizeUnit::Bytes), Ok(1024));
        assert!(size_mib("k", "1.5g", SizeUnit::MiB).unwrap_err().problem.contains("fractional"));
        assert!(size_mib("k", "lots", SizeUnit::MiB).unwrap_err().problem.contains("not a size"));
        assert!(size_mib("k", "2x", SizeUnit::MiB).unwrap_err().problem.contains("unknown size suffix"));
        assert!(size_mib("k", "99999999999999999999999999999999p", SizeUnit::MiB).is_err());
    }

    #[test]
    fn default_executors_are_two_of_one_core_and_1g_plus_384m() {
        let p = plan("spark.app.name=pi\n", None).unwrap();
        assert_eq!((p.min, p.max), (2, 2));
        assert_eq!(requests(&p), BTreeMap::from([("cpu".into(), "1".into()), ("memory".into(), "1408Mi".into())]));
        assert_eq!(p.queue, None);
    }

    #[test]
    fn memory_adds_overhead_pyspark_and_off_heap() {
        // factor 0.4 (a Python application's), pyspark memory counted for Python only.
        let python = "spark.executor.memory=4g\nspark.kubernetes.memoryOverheadFactor=0.4\n\
                      spark.kubernetes.resource.type=python\nspark.executor.pyspark.memory=512m\n";
        assert_eq!(requests(&plan(python, None).unwrap())["memory"], format!("{}Mi", 4096 + 1638 + 512));
        let jvm = python.replace("python", "java");
        assert_eq!(requests(&plan(&jvm, None).unwrap())["memory"], format!("{}Mi", 4096 + 1638));
        // The executor factor wins over the Kubernetes one; an explicit overhead wins over both.
        let factor = format!("{python}spark.executor.memoryOverheadFactor=0.25\n");
        assert_eq!(requests(&plan(&factor, None).unwrap())["memory"], format!("{}Mi", 4096 + 1024 + 512));
        let explicit = format!("{factor}spark.executor.memoryOverhead=700\n");
        assert_eq!(requests(&plan(&explicit, None).unwrap())["memory"], format!("{}Mi", 4096 + 700 + 512));
        // The floor (4.x's minMemoryOverhead) and off-heap in bytes.
        let floor = "spark.executor.memory=1g\nspark.executor.minMemoryOverhead=500m\n\
                     spark.memory.offHeap.enabled=true\nspark.memory.offHeap.size=2147483648\n";
        assert_eq!(requests(&plan(floor, None).unwrap())["memory"], format!("{}Mi", 1024 + 500 + 2048));
        let no_size = "spark.memory.offHeap.enabled=true\n";
        assert_eq!(plan(no_size, None).unwrap_err().key, "spark.memory.offHeap.size");
    }

    #[test]
    fn cpu_prefers_request_cores_and_custom_resources_become_limits() {
        let p = plan(
            "spark.executor.cores=4\nspark.kubernetes.executor.request.cores=3500m\n\
             spark.kubernetes.executor.limit.cores=4\nspark.executor.resource.gpu.amount=2\n\
             spark.executor.resource.gpu.vendor=nvidia.com\nspark.executor.resource.gpu.discoveryScript=/x\n",
            None,
        )
        .unwrap();
        assert_eq!(requests(&p)["cpu"], "3500m");
        let limits = p.pod.spec.as_ref().unwrap().containers[0].resources.as_ref().unwrap().limits.clone().unwrap();
        assert_eq!(limits["cpu"].0, "4");
        assert_eq!(limits["nvidia.com/gpu"].0, "2");
        let e = plan("spark.executor.resource.gpu.amount=1\n", None).unwrap_err();
        assert_eq!(e.key, "spark.executor.resource.gpu.vendor");
        let e = plan("spark.executor.resource.fpga.vendor=xilinx.com\n", None).unwrap_err();
        assert_eq!(e.key, "spark.executor.resource.fpga.amount");
        assert_eq!(plan("spark.executor.cores=two\n", None).unwrap_err().key, "spark.executor.cores");
    }

    #[test]
    fn counts_static_dynamic_and_min_available() {
        let counts = |text: &str| plan(text, None).map(|p| (p.min, p.max));
        assert_eq!(counts("spark.executor.instances=5\n"), Ok((5, 5)));
        let dynamic = "spark.dynamicAllocation.enabled=true\nspark.dynamicAllocation.minExecutors=2\n\
                       spark.dynamicAllocation.maxExecutors=10\n";
        assert_eq!(counts(dynamic), Ok((2, 10)));
        assert_eq!(counts(&format!("{dynamic}spark.dynamicAllocation.initialExecutors=4\n")), Ok((4, 10)));
        assert_eq!(counts("spark.dynamicAllocation.enabled=TRUE\n"), Ok((0, u32::MAX)));
        assert_eq!(counts(&format!("{dynamic}{MIN_AVAILABLE_CONF}=5\n")), Ok((4, 10)));
        assert_eq!(counts(&format!("{dynamic}{MIN_AVAILABLE_CONF}=12\n")).unwrap_err().key, MIN_AVAILABLE_CONF);
        let inverted = "spark.dynamicAllocation.enabled=true\nspark.dynamicAllocation.minExecutors=3\n\
                        spark.dynamicAllocation.maxExecutors=2\n";
        assert_eq!(counts(inverted).unwrap_err().key, "spark.dynamicAllocation.minExecutors");
        assert_eq!(counts("spark.dynamicAllocation.enabled=yes\n").unwrap_err().key, "spark.dynamicAllocation.enabled");
    }

    #[test]
    fn the_template_keeps_its_sidecars_tolerations_and_affinity_and_selectors_merge() {
        let template = r#"
spec:
  priorityClassName: batch
  nodeSelector: {pool: template, zone: a}
  tolerations: [{key: workload, operator: Equal, value: spark-executor, effect: NoSchedule}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: arch, operator: In, values: [amd64]}]}]
  containers:
  - name: log-shipper
    resources: {requests: {cpu: 100m, memory: 64Mi}}
  - name: executor
    resources: {requests: {cpu: "8", ephemeral-storage: 1Gi}}
"#;
        let text = "spark.kubernetes.executor.podTemplateContainerName=executor\n\
                    spark.kubernetes.node.selector.zone=b\nspark.kubernetes.executor.node.selector.pool=spot\n\
                    spark.kubernetes.scheduler.volcano.podGroupPolicy.queue=team-a\n";
        let p = plan(text, Some(template)).unwrap();
        let spec = p.pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 2);
        let executor = &spec.containers[1];
        let req = executor.resources.as_ref().unwrap().requests.clone().unwrap();
        assert_eq!((req["cpu"].0.as_str(), req["memory"].0.as_str()), ("1", "1408Mi"), "Spark overrides cpu");
        assert_eq!(req["ephemeral-storage"].0, "1Gi", "the template's other requests stay");
        let sidecar = spec.containers[0].resources.as_ref().unwrap().requests.clone().unwrap();
        assert_eq!(sidecar["cpu"].0, "100m", "the sidecar is untouched");
        assert_eq!(
            spec.node_selector.clone().unwrap(),
            BTreeMap::from([("pool".into(), "spot".into()), ("zone".into(), "b".into())])
        );
        assert_eq!(spec.tolerations.as_ref().unwrap()[0].value.as_deref(), Some("spark-executor"));
        assert!(spec.affinity.is_some());
        assert_eq!(spec.priority_class_name.as_deref(), Some("batch"));
        assert_eq!(p.queue.as_deref(), Some("team-a"));
        assert_eq!(p.pod.metadata.name.as_deref(), Some("pi-driver-exec-template"));

        let e = plan("", Some("spec: [1, 2]")).unwrap_err();
        assert!(e.problem.contains("not a valid Pod"), "{e}");
        let e = plan("", Some(": : :")).unwrap_err();
        assert!(e.problem.contains("not YAML"), "{e}");
        let e = plan("spark.kubernetes.executor.podTemplateFile=/opt/t.yaml\n", None).unwrap_err();
        assert!(e.problem.contains("mounts no"), "{e}");
    }
}
