//! The Kubeflow Spark Operator's submission rules, reproduced as a test fixture: which `spark-submit` command line
//! (above all which `--conf`s) the operator (github.com/kubeflow/spark-operator v2.x) makes of a SparkApplication
//! `sparkoperator.k8s.io/v1beta2`. Its Go module cannot be fetched here, so the rules were read from its source and
//! rewritten; [`operator_submission`] names, rule by rule, the operator file and function each one comes from, and
//! [`COVERED_RULES`] lists them one a line.
//!
//! What matters most for a scheduler:
//! - Precedence. spark-submit keeps the last `--conf` given for a key (`SparkSubmitArguments.handle`, case `CONF`,
//!   writes into a hash map), and the operator passes `spec.sparkConf` after the namespace, image, pythonVersion,
//!   memoryOverheadFactor and waitAppCompletion confs (so `sparkConf` wins over those) but before every
//!   driver/executor, `spec.nodeSelector` and `spec.dynamicAllocation` conf (so those fields win over `sparkConf`).
//! - Much of a SparkApplication is not a conf at all: `spec.{driver,executor}.{nodeSelector,tolerations,affinity,
//!   gpu,env,schedulerName,priorityClassName}` are applied to the pods by the operator's mutating webhook when they
//!   are created (`internal/webhook/sparkpod_defaulter.go`). A spark-submit run with only these confs creates pods
//!   without them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The submission ID this fixture puts where the operator puts a fresh random UUID on every submission
/// (`controller.go` `submitSparkApplication` sets `status.submissionID = uuid.New()` before building the command
/// line, whatever the status held). It is a valid label value, so the confs can be given to a real spark-submit.
pub const SUBMISSION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// One SparkApplication (v1beta2) turned into what the operator passes to spark-submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSubmission {
    /// `--name`: `metadata.name`.
    pub app_name: String,
    /// `spark.kubernetes.namespace` as spark-submit sees it: `metadata.namespace` unless `spec.sparkConf` sets it.
    pub namespace: String,
    /// `--deploy-mode`: `spec.mode` (`cluster` when empty, by the operator's SparkApplication webhook).
    pub deploy_mode: String,
    /// Every `--conf` the operator adds, after spark-submit's "last one wins" (see the module docs).
    pub confs: BTreeMap<String, String>,
    /// The primary resource: `spec.mainApplicationFile`.
    pub main_application_file: Option<String>,
    /// `--class`: `spec.mainClass`.
    pub main_class: Option<String>,
    /// The application arguments: `spec.arguments`.
    pub arguments: Vec<String>,
    /// The other spark-submit options, in the operator's order: `--jars`, `--packages`, `--exclude-packages`,
    /// `--repositories`, `--py-files`, `--files`, `--archives` (`spec.deps`), `--proxy-user` (`spec.proxyUser`).
    pub other_args: Vec<String>,
}

impl OperatorSubmission {
    /// The spark-submit arguments after `--master`: options, confs (sorted, one per key), primary resource,
    /// application arguments.
    pub fn spark_submit_args(&self) -> Vec<String> {
        let mut args = vec!["--deploy-mode".to_owned(), self.deploy_mode.clone()];
        if let Some(class) = &self.main_class {
            args.extend(["--class".to_owned(), class.clone()]);
        }
        args.extend(["--name".to_owned(), self.app_name.clone()]);
        args.extend(self.other_args.iter().cloned());
        for (key, value) in &self.confs {
            args.extend(["--conf".to_owned(), format!("{key}={value}")]);
        }
        args.extend(self.main_application_file.iter().cloned());
        args.extend(self.arguments.iter().cloned());
        args
    }
}

/// How the operator is deployed, where it changes the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorOptions {
    /// The operator's webhooks run (Helm value `webhook.enable`, true by default). Here this means the
    /// SparkApplication defaulter runs before submission; the pod webhook's effects are never confs.
    pub webhook_enabled: bool,
}

impl Default for OperatorOptions {
    fn default() -> OperatorOptions {
        OperatorOptions { webhook_enabled: true }
    }
}

/// The rules covered, one line each, for the closing note and docs. "not a conf: webhook" marks what the operator
/// applies to the pods by its mutating webhook instead of passing to spark-submit.
pub const COVERED_RULES: &[&str] = &[
    "metadata.name -> --name (submission.go nameOption)",
    "metadata.namespace -> spark.kubernetes.namespace (namespaceOption; passed before sparkConf, so sparkConf wins)",
    "spec.mode -> --deploy-mode (deployModeOption); empty becomes cluster (webhook sparkapplication_defaulter.go)",
    "spec.mainClass -> --class (mainClassOption)",
    "spec.image -> spark.kubernetes.container.image (imageOption; before sparkConf, so sparkConf wins)",
    "spec.image -> spark.kubernetes.{driver,executor}.container.image when spec.{driver,executor}.image is unset",
    "spec.driver.image -> spark.kubernetes.driver.container.image (driverConfOption; after sparkConf: field wins)",
    "spec.executor.image -> spark.kubernetes.executor.container.image (executorConfOption)",
    "spec.imagePullPolicy -> spark.kubernetes.container.image.pullPolicy (imageOption; sparkConf wins)",
    "spec.imagePullSecrets -> spark.kubernetes.container.image.pullSecrets, comma-joined (imageOption)",
    "spec.pythonVersion -> spark.kubernetes.pyspark.pythonVersion (pythonVersionOption; sparkConf wins)",
    "spec.memoryOverheadFactor -> spark.kubernetes.memoryOverheadFactor (memoryOverheadFactorOption; sparkConf wins)",
    "always -> spark.kubernetes.submission.waitAppCompletion=false (submissionWaitAppCompletionOption; sparkConf wins)",
    "spec.sparkConf -> copied verbatim except spark.kubernetes.driver.pod.name (sparkConfOption); later confs win",
    "spec.hadoopConf.K -> spark.hadoop.K (hadoopConfOption)",
    "spec.driver.podName, else sparkConf's spark.kubernetes.driver.pod.name, else <name>-driver -> \
     spark.kubernetes.driver.pod.name (driverPodNameOption, util GetDriverPodName)",
    "always -> spark.kubernetes.{driver,executor}.label.sparkoperator.k8s.io/app-name=<name>, \
     .../launched-by-spark-operator=true, .../submission-id=<fresh UUID> (driverConfOption, executorConfOption)",
    "spec.sparkVersion < 3.0.0 (or not semver) or no spec.{driver,executor}.template -> \
     spark.kubernetes.{driver,executor}.label.sparkoperator.k8s.io/mutated-by-spark-operator=true \
     (the only effect of spec.sparkVersion)",
    "spec.driver.cores -> spark.driver.cores (driverConfOption)",
    "spec.driver.coreRequest -> spark.kubernetes.driver.request.cores",
    "spec.driver.coreLimit -> spark.kubernetes.driver.limit.cores",
    "spec.driver.memory -> spark.driver.memory",
    "spec.driver.memoryOverhead -> spark.driver.memoryOverhead",
    "spec.driver.serviceAccount -> spark.kubernetes.authenticate.driver.serviceAccountName",
    "spec.driver.javaOptions -> spark.driver.extraJavaOptions",
    "spec.driver.kubernetesMaster -> spark.kubernetes.driver.master",
    "metadata.labels.K -> spark.kubernetes.{driver,executor}.label.K (before the pod's own labels, which win)",
    "spec.driver.labels.K -> spark.kubernetes.driver.label.K",
    "spec.driver.annotations.K -> spark.kubernetes.driver.annotation.K",
    "spec.driver.serviceLabels.K -> spark.kubernetes.driver.service.label.K",
    "spec.driver.serviceAnnotations.K -> spark.kubernetes.driver.service.annotation.K",
    "spec.driver.envSecretKeyRefs.K {name, key} -> spark.kubernetes.driver.secretKeyRef.K=name:key",
    "spec.driver.envVars.K -> spark.kubernetes.driverEnv.K (driverEnvOption)",
    "spec.driver.secrets[] -> spark.kubernetes.driver.secrets.NAME=path, plus driverEnv GOOGLE_APPLICATION_CREDENTIALS \
     or HADOOP_TOKEN_FILE_LOCATION by secretType (driverSecretOption)",
    "spec.driver.template -> spark.kubernetes.driver.podTemplateFile=/tmp/spark/<submission id>/driver-pod-template.yaml \
     and spark.kubernetes.driver.podTemplateContainerName=spark-kubernetes-driver (driverPodTemplateOption)",
    "spec.executor.instances -> spark.executor.instances (executorConfOption)",
    "spec.executor.cores -> spark.executor.cores",
    "spec.executor.coreRequest -> spark.kubernetes.executor.request.cores",
    "spec.executor.coreLimit -> spark.kubernetes.executor.limit.cores",
    "spec.executor.memory -> spark.executor.memory",
    "spec.executor.memoryOverhead -> spark.executor.memoryOverhead",
    "spec.executor.serviceAccount -> spark.kubernetes.authenticate.executor.serviceAccountName",
    "spec.executor.deleteOnTermination -> spark.kubernetes.executor.deleteOnTermination",
    "spec.executor.labels.K -> spark.kubernetes.executor.label.K",
    "spec.executor.annotations.K -> spark.kubernetes.executor.annotation.K",
    "spec.executor.envSecretKeyRefs.K {name, key} -> spark.kubernetes.executor.secretKeyRef.K=name:key",
    "spec.executor.javaOptions -> spark.executor.extraJavaOptions",
    "spec.executor.envVars.K -> spark.executorEnv.K (executorEnvOption)",
    "spec.executor.secrets[] -> spark.kubernetes.executor.secrets.NAME=path, plus executorEnv by secretType",
    "spec.executor.template -> spark.kubernetes.executor.podTemplateFile=/tmp/spark/<submission id>/\
     executor-pod-template.yaml and spark.kubernetes.executor.podTemplateContainerName=spark-kubernetes-executor",
    "spec.nodeSelector.K -> spark.kubernetes.node.selector.K, driver and executors (nodeSelectorOption; field wins)",
    "spec.dynamicAllocation.enabled=true -> spark.dynamicAllocation.enabled=true; nothing at all when false \
     (dynamicAllocationOption; after sparkConf: fields win)",
    "spec.dynamicAllocation.initialExecutors -> spark.dynamicAllocation.initialExecutors",
    "spec.dynamicAllocation.minExecutors -> spark.dynamicAllocation.minExecutors",
    "spec.dynamicAllocation.maxExecutors -> spark.dynamicAllocation.maxExecutors",
    "spec.dynamicAllocation.shuffleTrackingEnabled (default true) -> spark.dynamicAllocation.shuffleTracking.enabled",
    "spec.dynamicAllocation.shuffleTrackingTimeout -> spark.dynamicAllocation.shuffleTracking.timeout",
    "spec.deps.{jars,packages,excludePackages,repositories,pyFiles,files,archives} -> --jars, --packages, \
     --exclude-packages, --repositories, --py-files, --files, --archives, comma-joined (dependenciesOption)",
    "spec.proxyUser -> --proxy-user (proxyUserOption)",
    "spec.mainApplicationFile -> primary resource; spec.arguments -> application arguments",
    "spec.type -> no conf: spark-submit infers Python/R from the main file; no resource type is set",
    "unset spec.{driver,executor}.{cores,memory}, spec.executor.instances -> defaulted by the webhook \
     (sparkapplication_defaulter.go): cores=1 and memory=1g unless sparkConf sets spark.{driver,executor}.{cores,memory}; \
     instances=1 only when sparkConf is present and sets neither spark.dynamicAllocation.enabled nor \
     spark.executor.instances, and spec.dynamicAllocation is not enabled",
    "spec.driver.nodeSelector, spec.executor.nodeSelector -> not a conf: webhook (addNodeSelectors merges them into \
     pod.spec.nodeSelector)",
    "spec.driver.tolerations, spec.executor.tolerations -> not a conf: webhook (addTolerations appends them); \
     a pod template may carry them too",
    "spec.driver.affinity, spec.executor.affinity -> not a conf: webhook (addAffinity replaces pod.spec.affinity)",
    "spec.driver.gpu, spec.executor.gpu {name, quantity} -> not a conf: webhook (addGPU sets the Spark container's \
     resources.limits[name]=quantity; no spark.{driver,executor}.resource.* conf)",
    "spec.driver.env, spec.executor.env -> not a conf: webhook (addEnvVars; executor env only when driver env is set)",
    "spec.batchScheduler, spec.{driver,executor}.schedulerName -> not a conf: webhook (addSchedulerName sets \
     pod.spec.schedulerName, batchScheduler first)",
    "spec.{driver,executor}.priorityClassName -> not a conf: webhook (addPriorityClassName)",
    "spec.batchScheduler, spec.batchSchedulerOptions -> no conf unless the operator runs with batch scheduling \
     (controller.go shouldDoBatchScheduling): volcano adds the annotation scheduling.k8s.io/group-name to driver and \
     executors and a PodGroup with queue, priorityClassName and resources as minResources; yunikorn adds queue \
     labels and task-group annotations; a kube-scheduler name adds label scheduling.x-k8s.io/pod-group; any other \
     name fails the submission (not modelled)",
    "spec.sparkConfigMap, spec.hadoopConfigMap -> not a conf: webhook (mounted at /etc/spark/conf, /etc/hadoop/conf, \
     SPARK_CONF_DIR/HADOOP_CONF_DIR set)",
    "spec.kerberos, spec.monitoring.prometheus, spark-local-dir-* volume mounts, KerberosKeytab secrets -> not \
     modelled: an error here; nor are the operator flags ingress-url-format (spark.ui.proxyBase) and default service \
     account",
];

const LABEL_APP_NAME: &str = "sparkoperator.k8s.io/app-name";
const LABEL_LAUNCHED_BY: &str = "sparkoperator.k8s.io/launched-by-spark-operator";
const LABEL_MUTATED_BY: &str = "sparkoperator.k8s.io/mutated-by-spark-operator";
const LABEL_SUBMISSION_ID: &str = "sparkoperator.k8s.io/submission-id";
const DRIVER_POD_NAME: &str = "spark.kubernetes.driver.pod.name";
const LOCAL_DIR_VOLUME_PREFIX: &str = "spark-local-dir-";

/// [`operator_submission_with`] for an operator deployed as the Helm chart does by default (webhooks enabled).
///
/// Where each rule comes from (kubeflow/spark-operator v2.x; the confs' names are `pkg/common/spark.go`):
/// - Order and "last `--conf` wins": `internal/controller/sparkapplication/submission.go` `buildSparkSubmitArgs`
///   runs master, deployMode, mainClass, name, dependencies, namespace, image, pythonVersion,
///   memoryOverheadFactor, submissionWaitAppCompletion, sparkConf, hadoopConf, (kerberos), driverPodTemplate,
///   driverPodName, driverConf, driverEnv, driverSecret, driverVolumeMounts, executorPodTemplate, executorConf,
///   executorEnv, executorSecret, executorVolumeMounts, nodeSelector, dynamicAllocation, proxyUser,
///   mainApplicationFile, application options in that order; Spark's `SparkSubmitArguments.handle` stores each
///   `--conf` into a hash map, so a later one replaces an earlier one.
/// - `--name`, `--deploy-mode`, `--class`: `nameOption`, `deployModeOption`, `mainClassOption`.
/// - `spark.kubernetes.namespace`: `namespaceOption`.
/// - `spark.kubernetes.container.image{,.pullPolicy,.pullSecrets}`: `imageOption` (empty strings skipped).
/// - `spark.kubernetes.pyspark.pythonVersion`: `pythonVersionOption`; `spark.kubernetes.memoryOverheadFactor`:
///   `memoryOverheadFactorOption`; `spark.kubernetes.submission.waitAppCompletion=false`:
///   `submissionWaitAppCompletionOption`.
/// - `spec.sparkConf` verbatim but `spark.kubernetes.driver.pod.name`: `sparkConfOption`; `spark.hadoop.*`:
///   `hadoopConfOption`.
/// - `spark.kubernetes.driver.pod.name`: `driverPodNameOption` with `pkg/util/sparkapplication.go`
///   `GetDriverPodName` (`spec.driver.podName`, else the sparkConf value, else `<name>-driver`).
/// - Driver labels (operator's, `metadata.labels`, `spec.driver.labels`), annotations, service labels and
///   annotations, secretKeyRefs, image, cores, request/limit cores, memory, memoryOverhead, serviceAccount,
///   javaOptions, kubernetesMaster: `driverConfOption`; the mutated-by label's condition uses
///   `pkg/util/util.go` `CompareSemanticVersion` (`golang.org/x/mod/semver`: a non-semver version sorts first).
/// - `spark.kubernetes.driverEnv.*`: `driverEnvOption`; secrets: `driverSecretOption`.
/// - Executor: `executorConfOption` (also instances and deleteOnTermination), `executorEnvOption`
///   (`spark.executorEnv.*`), `executorSecretOption`.
/// - Pod templates: `driverPodTemplateOption`, `executorPodTemplateOption` write `spec.{driver,executor}.template`
///   to `/tmp/spark/<submission id>/{driver,executor}-pod-template.yaml` and point the confs there.
/// - `spark.kubernetes.node.selector.*`: `nodeSelectorOption` (`spec.nodeSelector` only).
/// - `spark.dynamicAllocation.*`: `dynamicAllocationOption`.
/// - `--jars` and the other dependency options: `dependenciesOption`; `--proxy-user`: `proxyUserOption`; primary
///   resource and arguments: `mainApplicationFileOption`, `applicationOption`.
/// - Defaults before submission: `internal/webhook/sparkapplication_defaulter.go` `defaultSparkApplication`.
/// - Not confs: `internal/webhook/sparkpod_defaulter.go` `mutateSparkPod` (`addNodeSelectors`, `addTolerations`,
///   `addAffinity`, `addGPU`, `addEnvVars`, `addSchedulerName`, `addPriorityClassName`, `addSparkConfigMap`,
///   `addHadoopConfigMap`, ...); batch schedulers: `internal/controller/sparkapplication/controller.go`
///   `shouldDoBatchScheduling` and `internal/scheduler/{volcano,yunikorn,kubescheduler}/scheduler.go` `Schedule`,
///   which only run when the operator is started with batch scheduling enabled.
///
/// The submission-id label and the pod template paths use [`SUBMISSION_ID`]. Input the API server would reject
/// (a wrong type, an enum or minimum violated) and fields whose confs this fixture does not model are an `Err`.
pub fn operator_submission(app: &serde_json::Value) -> Result<OperatorSubmission, String> {
    operator_submission_with(app, &OperatorOptions::default())
}

/// What the operator deployed with `options` passes to spark-submit for `app` (a SparkApplication as JSON). See
/// [`operator_submission`] for the rules and where they come from.
pub fn operator_submission_with(app: &Value, options: &OperatorOptions) -> Result<OperatorSubmission, String> {
    let mut app = App::parse(app)?;
    if options.webhook_enabled {
        app.apply_defaults();
    }
    Ok(app.submission())
}

/// The parts of a SparkApplication the submission depends on, type-checked.
struct App {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    spark_version: String,
    mode: String,
    proxy_user: Option<String>,
    image: Option<String>,
    image_pull_policy: Option<String>,
    image_pull_secrets: Vec<String>,
    main_class: Option<String>,
    main_application_file: Option<String>,
    arguments: Vec<String>,
    /// `None` when absent or null: the defaulter tells a nil map from an empty one.
    spark_conf: Option<BTreeMap<String, String>>,
    hadoop_conf: BTreeMap<String, String>,
    node_selector: BTreeMap<String, String>,
    python_version: Option<String>,
    memory_overhead_factor: Option<String>,
    deps: Vec<(&'static str, Vec<String>)>,
    driver: PodSide,
    executor: PodSide,
    dynamic_allocation: Option<DynamicAllocation>,
}

/// `spec.driver` or `spec.executor`.
struct PodSide {
    has_template: bool,
    cores: Option<i32>,
    core_request: Option<String>,
    core_limit: Option<String>,
    memory: Option<String>,
    memory_overhead: Option<String>,
    image: Option<String>,
    service_account: Option<String>,
    java_options: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    env_vars: BTreeMap<String, String>,
    env_secret_key_refs: BTreeMap<String, (String, String)>,
    secrets: Vec<Secret>,
    // Driver only.
    pod_name: Option<String>,
    kubernetes_master: Option<String>,
    service_labels: BTreeMap<String, String>,
    service_annotations: BTreeMap<String, String>,
    // Executor only.
    instances: Option<i32>,
    delete_on_termination: Option<bool>,
}

struct Secret {
    name: String,
    path: String,
    secret_type: String,
}

struct DynamicAllocation {
    enabled: bool,
    initial_executors: Option<i32>,
    min_executors: Option<i32>,
    max_executors: Option<i32>,
    shuffle_tracking_enabled: Option<bool>,
    shuffle_tracking_timeout: Option<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Driver,
    Executor,
}

impl App {
    fn parse(value: &Value) -> Result<App, String> {
        let root = Obj::root(value, "SparkApplication")?;
        if let Some(kind) = root.string("kind")?
            && kind != "SparkApplication"
        {
            return Err(format!("kind: expected SparkApplication, got {kind:?}"));
        }
        if let Some(api_version) = root.string("apiVersion")?
            && api_version != "sparkoperator.k8s.io/v1beta2"
        {
            return Err(format!("apiVersion: expected sparkoperator.k8s.io/v1beta2, got {api_version:?}"));
        }
        let metadata = root.object("metadata")?;
        let name = metadata.required_string("name")?;
        if name.is_empty() {
            return Err("metadata.name: must not be empty".to_owned());
        }
        let namespace = metadata.required_string("namespace")?;
        let labels = metadata.string_map("labels")?.unwrap_or_default();

        let spec = root.object("spec")?;
        if !spec.is_present() {
            return Err("spec: required".to_owned());
        }
        if let Some(kind) = spec.string("type")? {
            one_of(&spec.path_of("type"), &kind, &["Java", "Python", "Scala", "R"])?;
        }
        let mode = spec.string("mode")?.unwrap_or_default();
        if !mode.is_empty() {
            one_of(&spec.path_of("mode"), &mode, &["cluster", "client"])?;
        }
        let python_version = spec.string("pythonVersion")?;
        if let Some(version) = &python_version {
            one_of(&spec.path_of("pythonVersion"), version, &["2", "3"])?;
        }
        for key in ["sparkConfigMap", "hadoopConfigMap", "batchScheduler"] {
            spec.string(key)?;
        }
        validate_batch_scheduler_options(&spec.object("batchSchedulerOptions")?)?;
        spec.array("volumes")?;
        if spec.field("kerberos").is_some() {
            return Err("spec.kerberos: not modelled by this fixture (kerberosConfOption)".to_owned());
        }
        let monitoring = spec.object("monitoring")?;
        if monitoring.field("prometheus").is_some() {
            return Err(
                "spec.monitoring.prometheus: not modelled by this fixture (configPrometheusMonitoring rewrites \
                        sparkConf and javaOptions)"
                    .to_owned(),
            );
        }

        let deps_obj = spec.object("deps")?;
        let mut deps = Vec::new();
        for (key, flag) in [
            ("jars", "--jars"),
            ("packages", "--packages"),
            ("excludePackages", "--exclude-packages"),
            ("repositories", "--repositories"),
            ("pyFiles", "--py-files"),
            ("files", "--files"),
            ("archives", "--archives"),
        ] {
            deps.push((flag, deps_obj.string_list(key)?));
        }

        let dynamic_allocation = {
            let da = spec.object("dynamicAllocation")?;
            if da.is_present() {
                Some(DynamicAllocation {
                    enabled: da.boolean("enabled")?.unwrap_or(false),
                    initial_executors: da.int32("initialExecutors")?,
                    min_executors: da.int32("minExecutors")?,
                    max_executors: da.int32("maxExecutors")?,
                    shuffle_tracking_enabled: da.boolean("shuffleTrackingEnabled")?,
                    shuffle_tracking_timeout: da.int64("shuffleTrackingTimeout")?,
                })
            } else {
                None
            }
        };

        Ok(App {
            name,
            namespace,
            labels,
            spark_version: spec.string("sparkVersion")?.unwrap_or_default(),
            mode,
            proxy_user: spec.string("proxyUser")?,
            image: spec.string("image")?,
            image_pull_policy: spec.string("imagePullPolicy")?,
            image_pull_secrets: spec.string_list("imagePullSecrets")?,
            main_class: spec.string("mainClass")?,
            main_application_file: spec.string("mainApplicationFile")?,
            arguments: spec.string_list("arguments")?,
            spark_conf: spec.string_map("sparkConf")?,
            hadoop_conf: spec.string_map("hadoopConf")?.unwrap_or_default(),
            node_selector: spec.string_map("nodeSelector")?.unwrap_or_default(),
            python_version,
            memory_overhead_factor: spec.string("memoryOverheadFactor")?,
            deps,
            driver: PodSide::parse(&spec.object("driver")?, Role::Driver)?,
            executor: PodSide::parse(&spec.object("executor")?, Role::Executor)?,
            dynamic_allocation,
        })
    }

    /// `sparkapplication_defaulter.go` `defaultSparkApplication` (the restart policy defaults change no conf).
    fn apply_defaults(&mut self) {
        if self.mode.is_empty() {
            self.mode = "cluster".to_owned();
        }
        let conf_unset =
            |key: &str| self.spark_conf.as_ref().and_then(|conf| conf.get(key)).is_none_or(String::is_empty);
        let driver_cores = self.driver.cores.is_none() && conf_unset("spark.driver.cores");
        let driver_memory = self.driver.memory.is_none() && conf_unset("spark.driver.memory");
        let executor_cores = self.executor.cores.is_none() && conf_unset("spark.executor.cores");
        let executor_memory = self.executor.memory.is_none() && conf_unset("spark.executor.memory");
        let mut executor_instances = false;
        if self.executor.instances.is_none() {
            let mut dynamic = self.dynamic_allocation.as_ref().is_some_and(|da| da.enabled);
            // As in the operator: only looked at when sparkConf is present, so a nil sparkConf never defaults it.
            if !dynamic && let Some(conf) = &self.spark_conf {
                if conf.get("spark.dynamicAllocation.enabled").and_then(|v| go_parse_bool(v)) == Some(true) {
                    dynamic = true;
                }
                if !dynamic && conf.get("spark.executor.instances").is_none_or(String::is_empty) {
                    executor_instances = true;
                }
            }
        }
        if driver_cores {
            self.driver.cores = Some(1);
        }
        if driver_memory {
            self.driver.memory = Some("1g".to_owned());
        }
        if executor_cores {
            self.executor.cores = Some(1);
        }
        if executor_memory {
            self.executor.memory = Some("1g".to_owned());
        }
        if executor_instances {
            self.executor.instances = Some(1);
        }
    }

    /// `submission.go` `buildSparkSubmitArgs`, without `--master`.
    fn submission(&self) -> OperatorSubmission {
        let mut confs = Confs::default();
        let non_empty = |value: &Option<String>| value.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);

        // namespaceOption, imageOption, pythonVersionOption, memoryOverheadFactorOption,
        // submissionWaitAppCompletionOption.
        confs.set("spark.kubernetes.namespace", &self.namespace);
        if let Some(image) = non_empty(&self.image) {
            confs.set("spark.kubernetes.container.image", image);
        }
        if let Some(policy) = non_empty(&self.image_pull_policy) {
            confs.set("spark.kubernetes.container.image.pullPolicy", policy);
        }
        if !self.image_pull_secrets.is_empty() {
            confs.set("spark.kubernetes.container.image.pullSecrets", self.image_pull_secrets.join(","));
        }
        if let Some(version) = non_empty(&self.python_version) {
            confs.set("spark.kubernetes.pyspark.pythonVersion", version);
        }
        if let Some(factor) = non_empty(&self.memory_overhead_factor) {
            confs.set("spark.kubernetes.memoryOverheadFactor", factor);
        }
        confs.set("spark.kubernetes.submission.waitAppCompletion", "false");

        // sparkConfOption, hadoopConfOption.
        for (key, value) in self.spark_conf.iter().flatten() {
            if key != DRIVER_POD_NAME {
                confs.set(key, value);
            }
        }
        for (key, value) in &self.hadoop_conf {
            confs.set(format!("spark.hadoop.{key}"), value);
        }

        // driverPodTemplateOption, driverPodNameOption, driverConfOption, driverEnvOption, driverSecretOption.
        self.pod_template(&mut confs, Role::Driver);
        let pod_name = match (&self.driver.pod_name, self.spark_conf.as_ref().and_then(|c| c.get(DRIVER_POD_NAME))) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(name)) if !name.is_empty() => name.clone(),
            _ => format!("{}-driver", self.name),
        };
        confs.set(DRIVER_POD_NAME, pod_name);
        self.pod_confs(&mut confs, Role::Driver);

        // executorPodTemplateOption, executorConfOption, executorEnvOption, executorSecretOption.
        self.pod_template(&mut confs, Role::Executor);
        self.pod_confs(&mut confs, Role::Executor);

        // nodeSelectorOption.
        for (key, value) in &self.node_selector {
            confs.set(format!("spark.kubernetes.node.selector.{key}"), value);
        }

        // dynamicAllocationOption.
        if let Some(da) = self.dynamic_allocation.as_ref().filter(|da| da.enabled) {
            confs.set("spark.dynamicAllocation.enabled", "true");
            if let Some(n) = da.initial_executors {
                confs.set("spark.dynamicAllocation.initialExecutors", n.to_string());
            }
            if let Some(n) = da.min_executors {
                confs.set("spark.dynamicAllocation.minExecutors", n.to_string());
            }
            if let Some(n) = da.max_executors {
                confs.set("spark.dynamicAllocation.maxExecutors", n.to_string());
            }
            let tracking = da.shuffle_tracking_enabled.unwrap_or(true);
            confs.set("spark.dynamicAllocation.shuffleTracking.enabled", tracking.to_string());
            if let Some(timeout) = da.shuffle_tracking_timeout {
                confs.set("spark.dynamicAllocation.shuffleTracking.timeout", timeout.to_string());
            }
        }

        // dependenciesOption, proxyUserOption.
        let mut other_args = Vec::new();
        for (flag, values) in &self.deps {
            if !values.is_empty() {
                other_args.extend([(*flag).to_owned(), values.join(",")]);
            }
        }
        if let Some(user) = non_empty(&self.proxy_user) {
            other_args.extend(["--proxy-user".to_owned(), user]);
        }

        OperatorSubmission {
            app_name: self.name.clone(),
            namespace: confs.0["spark.kubernetes.namespace"].clone(),
            deploy_mode: self.mode.clone(),
            confs: confs.0,
            main_application_file: self.main_application_file.clone(),
            main_class: self.main_class.clone(),
            arguments: self.arguments.clone(),
            other_args,
        }
    }

    fn side(&self, role: Role) -> &PodSide {
        match role {
            Role::Driver => &self.driver,
            Role::Executor => &self.executor,
        }
    }

    /// `driverPodTemplateOption` / `executorPodTemplateOption`.
    fn pod_template(&self, confs: &mut Confs, role: Role) {
        if !self.side(role).has_template {
            return;
        }
        let (role_name, container) = match role {
            Role::Driver => ("driver", "spark-kubernetes-driver"),
            Role::Executor => ("executor", "spark-kubernetes-executor"),
        };
        confs.set(
            format!("spark.kubernetes.{role_name}.podTemplateFile"),
            format!("/tmp/spark/{SUBMISSION_ID}/{role_name}-pod-template.yaml"),
        );
        confs.set(format!("spark.kubernetes.{role_name}.podTemplateContainerName"), container);
    }

    /// `driverConfOption` + `driverEnvOption` + `driverSecretOption`, or the executor's three.
    fn pod_confs(&self, confs: &mut Confs, role: Role) {
        let side = self.side(role);
        let role_name = match role {
            Role::Driver => "driver",
            Role::Executor => "executor",
        };
        let label = |key: &str| format!("spark.kubernetes.{role_name}.label.{key}");

        confs.set(label(LABEL_APP_NAME), &self.name);
        confs.set(label(LABEL_LAUNCHED_BY), "true");
        if spark_version_before_3(&self.spark_version) || !side.has_template {
            confs.set(label(LABEL_MUTATED_BY), "true");
        }
        confs.set(label(LABEL_SUBMISSION_ID), SUBMISSION_ID);

        if role == Role::Executor
            && let Some(instances) = side.instances
        {
            confs.set("spark.executor.instances", instances.to_string());
        }
        let image = side.image.as_deref().filter(|i| !i.is_empty()).or(self.image.as_deref().filter(|i| !i.is_empty()));
        if let Some(image) = image {
            confs.set(format!("spark.kubernetes.{role_name}.container.image"), image);
        }
        if let Some(cores) = side.cores {
            confs.set(format!("spark.{role_name}.cores"), cores.to_string());
        }
        if let Some(request) = &side.core_request {
            confs.set(format!("spark.kubernetes.{role_name}.request.cores"), request);
        }
        if let Some(limit) = &side.core_limit {
            confs.set(format!("spark.kubernetes.{role_name}.limit.cores"), limit);
        }
        if let Some(memory) = &side.memory {
            confs.set(format!("spark.{role_name}.memory"), memory);
        }
        if let Some(overhead) = &side.memory_overhead {
            confs.set(format!("spark.{role_name}.memoryOverhead"), overhead);
        }
        if let Some(account) = &side.service_account {
            confs.set(format!("spark.kubernetes.authenticate.{role_name}.serviceAccountName"), account);
        }
        match role {
            Role::Driver => {
                if let Some(options) = &side.java_options {
                    confs.set("spark.driver.extraJavaOptions", options);
                }
                if let Some(master) = &side.kubernetes_master {
                    confs.set("spark.kubernetes.driver.master", master);
                }
            }
            Role::Executor => {
                if let Some(delete) = side.delete_on_termination {
                    confs.set("spark.kubernetes.executor.deleteOnTermination", delete.to_string());
                }
            }
        }
        for (key, value) in self.labels.iter().chain(&side.labels) {
            confs.set(label(key), value);
        }
        for (key, value) in &side.annotations {
            confs.set(format!("spark.kubernetes.{role_name}.annotation.{key}"), value);
        }
        for (key, value) in &side.service_labels {
            confs.set(format!("spark.kubernetes.driver.service.label.{key}"), value);
        }
        for (key, value) in &side.service_annotations {
            confs.set(format!("spark.kubernetes.driver.service.annotation.{key}"), value);
        }
        for (key, (name, secret_key)) in &side.env_secret_key_refs {
            confs.set(format!("spark.kubernetes.{role_name}.secretKeyRef.{key}"), format!("{name}:{secret_key}"));
        }
        if role == Role::Executor
            && let Some(options) = &side.java_options
        {
            confs.set("spark.executor.extraJavaOptions", options);
        }

        let env = |name: &str| match role {
            Role::Driver => format!("spark.kubernetes.driverEnv.{name}"),
            Role::Executor => format!("spark.executorEnv.{name}"),
        };
        for (key, value) in &side.env_vars {
            confs.set(env(key), value);
        }
        for secret in &side.secrets {
            confs.set(format!("spark.kubernetes.{role_name}.secrets.{}", secret.name), &secret.path);
            match secret.secret_type.as_str() {
                "GCPServiceAccount" => {
                    confs.set(env("GOOGLE_APPLICATION_CREDENTIALS"), go_path_join(&secret.path, "key.json"));
                }
                "HadoopDelegationToken" => {
                    confs.set(env("HADOOP_TOKEN_FILE_LOCATION"), go_path_join(&secret.path, "hadoop.token"));
                }
                _ => {}
            }
        }
    }
}

impl PodSide {
    fn parse(obj: &Obj<'_>, role: Role) -> Result<PodSide, String> {
        let has_template = match obj.field("template") {
            None => false,
            Some(Value::Object(_)) => true,
            Some(other) => {
                return Err(format!("{}: expected an object, got {}", obj.path_of("template"), describe(other)));
            }
        };
        let cores = obj.int32("cores")?;
        if let Some(cores) = cores
            && cores < 1
        {
            return Err(format!("{}: must be at least 1, got {cores}", obj.path_of("cores")));
        }

        // Checked only for their types: the pod webhook applies them, they are no confs.
        let gpu = obj.object("gpu")?;
        if gpu.is_present() {
            gpu.string("name")?;
            gpu.int64("quantity")?;
        }
        obj.string_map("nodeSelector")?;
        obj.array("tolerations")?;
        obj.object("affinity")?;
        obj.array("env")?;
        obj.array("envFrom")?;
        obj.string("schedulerName")?;
        obj.string("priorityClassName")?;
        for (index, mount) in obj.array("volumeMounts")?.iter().enumerate() {
            let path = format!("{}[{index}]", obj.path_of("volumeMounts"));
            let mount = Obj::root(mount, &path)?;
            if mount.string("name")?.is_some_and(|name| name.starts_with(LOCAL_DIR_VOLUME_PREFIX)) {
                return Err(format!(
                    "{path}: {LOCAL_DIR_VOLUME_PREFIX}* volume mounts are not modelled by this fixture \
                     (driverVolumeMountsOption / executorVolumeMountsOption)"
                ));
            }
        }

        let mut env_secret_key_refs = BTreeMap::new();
        let refs = obj.object("envSecretKeyRefs")?;
        for (key, value) in refs.entries() {
            let entry = Obj::root(value, &refs.path_of(key))?;
            env_secret_key_refs.insert(key.clone(), (entry.required_string("name")?, entry.required_string("key")?));
        }

        let mut secrets = Vec::new();
        for (index, secret) in obj.array("secrets")?.iter().enumerate() {
            let secret = Obj::root(secret, &format!("{}[{index}]", obj.path_of("secrets")))?;
            let secret_type = secret.string("secretType")?.unwrap_or_default();
            if secret_type == "KerberosKeytab" {
                return Err(format!("{}: KerberosKeytab secrets are not modelled by this fixture", secret.path));
            }
            secrets.push(Secret {
                name: secret.required_string("name")?,
                path: secret.required_string("path")?,
                secret_type,
            });
        }

        let (pod_name, kubernetes_master, service_labels, service_annotations) = match role {
            Role::Driver => (
                obj.string("podName")?,
                obj.string("kubernetesMaster")?,
                obj.string_map("serviceLabels")?.unwrap_or_default(),
                obj.string_map("serviceAnnotations")?.unwrap_or_default(),
            ),
            Role::Executor => (None, None, BTreeMap::new(), BTreeMap::new()),
        };
        let (instances, delete_on_termination) = match role {
            Role::Driver => (None, None),
            Role::Executor => {
                let instances = obj.int32("instances")?;
                if let Some(instances) = instances
                    && instances < 1
                {
                    return Err(format!("{}: must be at least 1, got {instances}", obj.path_of("instances")));
                }
                (instances, obj.boolean("deleteOnTermination")?)
            }
        };

        Ok(PodSide {
            has_template,
            cores,
            core_request: obj.string("coreRequest")?,
            core_limit: obj.string("coreLimit")?,
            memory: obj.string("memory")?,
            memory_overhead: obj.string("memoryOverhead")?,
            image: obj.string("image")?,
            service_account: obj.string("serviceAccount")?,
            java_options: obj.string("javaOptions")?,
            labels: obj.string_map("labels")?.unwrap_or_default(),
            annotations: obj.string_map("annotations")?.unwrap_or_default(),
            env_vars: obj.string_map("envVars")?.unwrap_or_default(),
            env_secret_key_refs,
            secrets,
            pod_name,
            kubernetes_master,
            service_labels,
            service_annotations,
            instances,
            delete_on_termination,
        })
    }
}

fn validate_batch_scheduler_options(options: &Obj<'_>) -> Result<(), String> {
    options.string("queue")?;
    options.string("priorityClassName")?;
    let resources = options.object("resources")?;
    for (key, value) in resources.entries() {
        if !matches!(value, Value::String(_) | Value::Number(_)) {
            return Err(format!("{}: expected a quantity, got {}", resources.path_of(key), describe(value)));
        }
    }
    Ok(())
}

/// The `--conf`s in the order the operator passes them; a later one replaces an earlier one, as in spark-submit.
#[derive(Default)]
struct Confs(BTreeMap<String, String>);

impl Confs {
    fn set(&mut self, key: impl Into<String>, value: impl AsRef<str>) {
        self.0.insert(key.into(), value.as_ref().to_owned());
    }
}

/// `CompareSemanticVersion(version, "3.0.0") < 0` as `pkg/util/util.go` computes it: `golang.org/x/mod/semver`
/// with a `v` prefix added, where an invalid version sorts before every valid one, `v3` and `v3.0` are shorthands
/// for `v3.0.0`, and a prerelease sorts before its release.
pub fn spark_version_before_3(version: &str) -> bool {
    let version = version.strip_prefix('v').unwrap_or(version);
    let Some((major, minor, patch, prerelease)) = parse_semver(version) else {
        return true;
    };
    (major, minor, patch) < (3, 0, 0) || ((major, minor, patch) == (3, 0, 0) && prerelease)
}

/// `MAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]` with x/mod/semver's rules; returns whether a prerelease is present.
fn parse_semver(version: &str) -> Option<(u64, u64, u64, bool)> {
    fn number(part: &str) -> Option<u64> {
        let valid =
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
        if valid { part.parse().ok() } else { None }
    }
    fn identifiers(text: &str, numeric_leading_zero_ok: bool) -> bool {
        text.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (numeric_leading_zero_ok
                    || !id.bytes().all(|b| b.is_ascii_digit())
                    || id == "0"
                    || !id.starts_with('0'))
        })
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, prerelease) = match rest.split_once('-') {
        Some((core, prerelease)) => (core, Some(prerelease)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || ((prerelease.is_some() || build.is_some()) && parts.len() != 3) {
        return None;
    }
    let major = number(parts[0])?;
    let minor = parts.get(1).map_or(Some(0), |p| number(p))?;
    let patch = parts.get(2).map_or(Some(0), |p| number(p))?;
    if prerelease.is_some_and(|p| !identifiers(p, false)) || build.is_some_and(|b| !identifiers(b, true)) {
        return None;
    }
    Some((major, minor, patch, prerelease.is_some()))
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `filepath.Join(dir, file)` on Linux: joined, then cleaned (no `.`, `..` or repeated slashes).
fn go_path_join(dir: &str, file: &str) -> String {
    let joined = if dir.is_empty() { file.to_owned() } else { format!("{dir}/{file}") };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let cleaned = parts.join("/");
    match (rooted, cleaned.is_empty()) {
        (true, _) => format!("/{cleaned}"),
        (false, true) => ".".to_owned(),
        (false, false) => cleaned,
    }
}

fn one_of(path: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) { Ok(()) } else { Err(format!("{path}: expected one of {allowed:?}, got {value:?}")) }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A JSON object (or an absent one) and its path, for type-checked reads with errors that say where.
struct Obj<'a> {
    map: Option<&'a Map<String, Value>>,
    path: String,
}

impl<'a> Obj<'a> {
    /// `value` must be an object.
    fn root(value: &'a Value, path: &str) -> Result<Obj<'a>, String> {
        match value {
            Value::Object(map) => Ok(Obj { map: Some(map), path: path.to_owned() }),
            other => Err(format!("{path}: expected an object, got {}", describe(other))),
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() || self.path == "SparkApplication" {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn is_present(&self) -> bool {
        self.map.is_some()
    }

    /// The value at `key`; absent and null are both `None` (a nil pointer in Go).
    fn field(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|map| map.get(key)).filter(|value| !value.is_null())
    }

    fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.into_iter().flatten()
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> String {
        format!("{}: expected {expected}, got {}", self.path_of(key), describe(got))
    }

    /// The object at `key`, absent (not present) when missing or null.
    fn object(&self, key: &str) -> Result<Obj<'a>, String> {
        match self.field(key) {
            None => Ok(Obj { map: None, path: self.path_of(key) }),
            Some(value) => Obj::root(value, &self.path_of(key)),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, String> {
        self.string(key)?.ok_or_else(|| format!("{}: required", self.path_of(key)))
    }

    fn int64(&self, key: &str) -> Result<Option<i64>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(value @ Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| self.type_error(key, "an integer", value))
            }
            Some(other) => Err(self.type_error(key, "an integer", other)),
        }
    }

    fn int32(&self, key: &str) -> Result<Option<i32>, String> {
        match self.int64(key)? {
            None => Ok(None),
            Some(n) => {
                i32::try_from(n).map(Some).map_err(|_| format!("{}: {n} does not fit in an int32", self.path_of(key)))
            }
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "a boolean", other)),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value], String> {
        match self.field(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.type_error(key, "an array", other)),
        }
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>, String> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{}[{index}]: expected a string, got {}", self.path_of(key), describe(other))),
            })
            .collect()
    }

    /// A `map[string]string`: `None` when absent or null (a nil map in Go).
    fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let map = self.object(key)?;
        if !map.is_present() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for (entry, value) in map.entries() {
            match value {
                Value::String(s) => {
                    out.insert(entry.clone(), s.clone());
                }
                other => {
                    return Err(format!(
                        "{}.{entry}: expected a string (quote it in YAML), got {}",
                        map.path,
                        describe(other)
                    ));
                }
            }
        }
        Ok(Some(out))
    }
}
