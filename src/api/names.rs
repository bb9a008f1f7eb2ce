//! Well-known label and annotation keys muster reads or writes, in one place.
//!
//! Keys borrowed from Volcano and Spark keep their upstream spelling so that pods written for those systems work
//! unchanged; muster's own keys live under `muster.dev/`.

/// Pod label naming the PodGroup (in the pod's namespace) the pod is a member of. Takes precedence over every
/// other way of naming a gang.
pub const POD_GROUP_LABEL: &str = "muster.dev/pod-group";

/// Volcano's pod annotation naming the PodGroup the pod belongs to; honoured so Volcano workloads (and Spark's
/// `VolcanoFeatureStep`) need no changes.
pub const VOLCANO_GROUP_ANNOTATION: &str = "scheduling.k8s.io/group-name";

/// The alias of [`VOLCANO_GROUP_ANNOTATION`] that newer Volcano releases write.
pub const VOLCANO_GROUP_ANNOTATION_ALIAS: &str = "scheduling.volcano.sh/group-name";

/// Spark's pod label carrying the application id, identical on the driver and all its executors. A pod with this
/// label and no explicit group belongs to the application's automatic PodGroup.
pub const SPARK_APP_SELECTOR_LABEL: &str = "spark-app-selector";

/// Spark's pod label saying which role the pod plays: `driver` or `executor`.
pub const SPARK_ROLE_LABEL: &str = "spark-role";

/// The value of [`SPARK_ROLE_LABEL`] on a driver pod.
pub const SPARK_ROLE_DRIVER: &str = "driver";

/// The value of [`SPARK_ROLE_LABEL`] on an executor pod.
pub const SPARK_ROLE_EXECUTOR: &str = "executor";

/// Spark's pod label carrying an executor's id (`1`, `2`, ...); absent on the driver.
pub const SPARK_EXEC_ID_LABEL: &str = "spark-exec-id";

/// Pod annotation (or label) naming the member template of its PodGroup the pod fills, for gangs whose roles
/// cannot be told apart otherwise. An annotation wins over a label of the same key.
pub const MEMBER_TEMPLATE_KEY: &str = "muster.dev/member-template";

/// Pod annotation choosing the Queue of an automatic (Spark) PodGroup. Ignored on pods of an explicit PodGroup,
/// whose `spec.queue` decides.
pub const QUEUE_ANNOTATION: &str = "muster.dev/queue";

/// Volcano's spelling of [`QUEUE_ANNOTATION`]; consulted when muster's own key is absent.
pub const VOLCANO_QUEUE_ANNOTATION: &str = "scheduling.volcano.sh/queue-name";

/// Spark driver annotation: the number of executors that must start together with the driver (the executor part
/// of the gang minimum, e.g. `spark.dynamicAllocation.minExecutors` or `spark.executor.instances`). Without it an
/// automatic PodGroup holds the driver alone.
pub const MIN_EXECUTORS_ANNOTATION: &str = "muster.dev/min-executors";

/// Spark driver annotation: the most executors the application may run (`spark.dynamicAllocation.maxExecutors`);
/// executors above the minimum are elastic. Unbounded when absent.
pub const MAX_EXECUTORS_ANNOTATION: &str = "muster.dev/max-executors";

/// Spark driver annotation: one executor pod's resource requests as a JSON object of resource name to quantity,
/// e.g. `{"cpu":"2","memory":"5Gi"}` (memory including Spark's overhead, as the executor pod will request it).
/// Required with [`MIN_EXECUTORS_ANNOTATION`]: muster reserves capacity for executors that do not exist yet.
pub const EXECUTOR_RESOURCES_ANNOTATION: &str = "muster.dev/executor-resources";

/// Spark driver annotation: the executors' node selector as a JSON object of label to value, e.g.
/// `{"pool":"spot"}` (`spark.kubernetes.executor.node.selector.*`).
pub const EXECUTOR_NODE_SELECTOR_ANNOTATION: &str = "muster.dev/executor-node-selector";

/// Spark driver annotation: the executors' tolerations as a JSON list of Kubernetes tolerations, e.g.
/// `[{"key":"workload","operator":"Equal","value":"spark-executor","effect":"NoSchedule"}]`.
pub const EXECUTOR_TOLERATIONS_ANNOTATION: &str = "muster.dev/executor-tolerations";

/// Annotation muster writes on the pending pods of a gang it has just admitted. Any update to a pending pod moves
/// it back to kube-scheduler's active queue, so members are retried at once instead of after their backoff
/// expires; the value (e.g. the admission time) matters only in that it changes.
pub const RETRY_ANNOTATION: &str = "muster.dev/retry";

/// The `action` of the Events muster records (the reporting controller is `muster`): an admission decision or a
/// problem with an object, a reclaim eviction, an object skipped. kube-scheduler's profile for muster's pods
/// reports as `muster` too, with its own actions (`Scheduling`, `Binding`), so readers tell them apart by these.
pub const EVENT_ACTION_ADMISSION: &str = "Admission";
pub const EVENT_ACTION_EVICT: &str = "Evict";
pub const EVENT_ACTION_SKIP: &str = "Skip";
pub const EVENT_ACTIONS: [&str; 3] = [EVENT_ACTION_ADMISSION, EVENT_ACTION_EVICT, EVENT_ACTION_SKIP];

/// The scheduling gate muster's mutating admission webhook puts on every new pod of muster's scheduler name, so
/// kube-scheduler leaves the pod alone until its gang is admitted (muster then removes the gate).
pub const ADMISSION_GATE: &str = "muster.dev/admission";

/// Karpenter's pod annotation that keeps voluntary disruption (consolidation, drift, expiry) off the pod's node.
/// muster sets it to `"true"` on the members of running gangs whose loss would leave the gang below its minimum.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
