//! A real Spark client (PyPI pyspark on the machine's Java) against a test control plane: it creates driver and
//! executor pods exactly as in production, with Spark's labels, sizes and owner references.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::controlplane::ControlPlane;
use super::process::{ManagedProcess, print_log_tails, stop_all};
use super::tools::pyspark_venv_of;

/// The application a client-mode driver runs: it starts a SparkSession, prints [`STARTED_MARKER`] and its
/// app id, and idles until killed.
const APPLICATION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spark/keep_alive.py");
/// What a cluster-mode driver pod would run. `local://` means "already in the image", so spark-submit uploads
/// nothing; and nothing ever runs the pod.
const CLUSTER_MODE_APPLICATION: &str = "local:///opt/muster-test/keep_alive.py";
const STARTED_MARKER: &str = "muster-spark-app-started app_id=";
/// A JVM plus the Spark context start in about 5 s warm; a loaded CI machine can take much longer.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// On SIGTERM Spark stops its context and deletes its executor pods, which takes a few seconds.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to submit: `spark-submit --master k8s://<control plane>` with the confs below, acting as the control
/// plane's admin unless [`SparkSubmit::kubeconfig`] says otherwise. Clone it to submit one application twice:
/// in cluster mode, then as the driver inside the pod that created ([`SparkSubmit::in_driver_pod`]).
#[derive(Clone)]
pub struct SparkSubmit {
    /// The pyspark version whose spark-submit runs (one of the pinned [`super::tools::PYSPARK_VERSIONS`]).
    version: String,
    server_url: String,
    kubeconfig: PathBuf,
    app_name: String,
    confs: BTreeMap<String, String>,
}

/// The driver pod a cluster-mode submission created.
#[derive(Clone, Debug)]
pub struct SubmittedDriver {
    pub pod_name: String,
    pub app_id: String,
}

impl SparkSubmit {
    /// A submission to `namespace` with Spark's defaults otherwise: 2 static executors of 1 cpu and 1g + 384m
    /// overhead, no scheduler name (so the pods go to `default-scheduler`). The confs the fixture sets:
    /// - `spark.kubernetes.trust.certificates=true`: the API server's certificate is self-signed. Spark passes
    ///   this flag to its Kubernetes client explicitly, overriding the kubeconfig's `insecure-skip-tls-verify`.
    /// - `spark.scheduler.minRegisteredResourcesRatio=0`: the executors never run (no kubelet), and Spark
    ///   would otherwise hold SparkContext creation up to 30 s waiting for them to register.
    /// - client mode only: `spark.driver.host`/`bindAddress=127.0.0.1` (and SPARK_LOCAL_IP), so the driver
    ///   listens on loopback only (cluster mode rejects `bindAddress`: the pod's IP would be the address).
    /// - `spark.ui.enabled=false`: no web UI, so concurrent tests do not compete for port 4040.
    /// - `spark.kubernetes.container.image`: required by Spark; nothing pulls it.
    ///
    /// Credentials come from the kubeconfig (KUBECONFIG): Spark's Kubernetes client starts from it.
    pub fn new(control_plane: &ControlPlane, namespace: &str) -> SparkSubmit {
        let confs = [
            ("spark.kubernetes.namespace", namespace),
            ("spark.kubernetes.container.image", super::objects::UNUSED_IMAGE),
            ("spark.kubernetes.trust.certificates", "true"),
            ("spark.scheduler.minRegisteredResourcesRatio", "0"),
            ("spark.ui.enabled", "false"),
        ];
        SparkSubmit {
            version: super::tools::PYSPARK_VERSIONS[0].to_owned(),
            server_url: control_plane.server_url().to_owned(),
            kubeconfig: control_plane.kubeconfig().to_owned(),
            app_name: "keep-alive".to_owned(),
            confs: confs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    /// Submits with another pinned pyspark version (default: the first of
    /// [`super::tools::PYSPARK_VERSIONS`]).
    pub fn version(mut self, version: &str) -> SparkSubmit {
        self.version = version.to_owned();
        self
    }

    /// `spark.app.name`, which also prefixes the pod names.
    pub fn app_name(mut self, name: &str) -> SparkSubmit {
        self.app_name = name.to_owned();
        self
    }

    /// Sets (or overrides) a Spark conf, e.g. `spark.kubernetes.scheduler.name`, `spark.executor.memory`,
    /// `spark.dynamicAllocation.enabled`.
    pub fn conf(mut self, key: &str, value: &str) -> SparkSubmit {
        self.confs.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Acts as another user, e.g. `control_plane.kubeconfig_for_user(..)`.
    pub fn kubeconfig(mut self, kubeconfig: &Path) -> SparkSubmit {
        self.kubeconfig = kubeconfig.to_owned();
        self
    }

    /// Runs the driver as if inside the existing pod `driver_pod` (the second half of a cluster-mode
    /// submission, when a test plays the kubelet): Spark looks the pod up, makes it the controller owner of
    /// every executor, and labels them `spark-app-selector=<app_id>`. Spark waits (1 s, then logs an error and
    /// goes on) for that pod to be Ready, so mark it Running first with `set_pod_phase`.
    ///
    /// Also sets, unless already set, the two confs a cluster-mode submission of a Python application hands its
    /// driver (in the driver's `spark.properties` ConfigMap), because they size the executors:
    /// `spark.kubernetes.resource.type=python` (adds `spark.executor.pyspark.memory` to the pod's memory) and
    /// `spark.kubernetes.memoryOverheadFactor=0.4` (Spark 3.5's default overhead for non-JVM applications).
    pub fn in_driver_pod(mut self, driver_pod: &str, app_id: &str) -> SparkSubmit {
        for (key, value) in
            [("spark.kubernetes.resource.type", "python"), ("spark.kubernetes.memoryOverheadFactor", "0.4")]
        {
            self.confs.entry(key.to_owned()).or_insert_with(|| value.to_owned());
        }
        self.conf("spark.kubernetes.driver.pod.name", driver_pod).conf("spark.app.id", app_id)
    }

    /// Submits in cluster mode, as a user would: spark-submit creates the driver pod (with Spark's labels and
    /// size), its `spark.properties` ConfigMap and its Service, and exits without waiting for the application.
    /// Nothing runs the driver pod; continue with [`SparkSubmit::in_driver_pod`] once it is bound.
    pub async fn submit_cluster_mode(&self) -> SubmittedDriver {
        let dir = temporary_dir();
        let confs = self.confs_with(&[("spark.kubernetes.submission.waitAppCompletion", "false")]);
        let command = self.command(dir.path(), "cluster", &confs, None, CLUSTER_MODE_APPLICATION);
        let mut process = vec![ManagedProcess::spawn("spark-submit-cluster-mode", command, dir.path())];
        let start = Instant::now();
        let failure = loop {
            match process[0].exit_status() {
                Some(status) if status.success() => match parse_submission(&process[0].log()) {
                    Some(submitted) => return submitted,
                    None => break "spark-submit did not report the driver pod it created".to_owned(),
                },
                Some(status) => break format!("spark-submit in cluster mode failed ({status})"),
                None if start.elapsed() > START_TIMEOUT => {
                    break format!("spark-submit in cluster mode did not finish within {START_TIMEOUT:?}");
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        print_log_tails(&process, 80);
        stop_all(&mut process, Duration::ZERO);
        panic!("{failure} (log tail above)");
    }

    /// Starts a client-mode driver and waits until its SparkContext exists (executor pods are then being
    /// requested). Panics with the driver's log if it exits or does not start in time.
    pub async fn start(self) -> SparkApp {
        let dir = temporary_dir();
        let loopback = [("spark.driver.host", "127.0.0.1"), ("spark.driver.bindAddress", "127.0.0.1")];
        let confs = self.confs_with(&loopback);
        let command = self.command(dir.path(), "client", &confs, None, APPLICATION);
        wait_started(dir, command).await
    }

    /// Runs the driver as its pod would: the container's entrypoint is `spark-submit --deploy-mode client
    /// --properties-file spark.properties`, with the `spark.properties` of the driver's ConfigMap and the executor
    /// pod template of its pod-template ConfigMap, as spark-submit in cluster mode wrote them. Only what ties the
    /// driver to a pod is overridden: it listens on loopback (any free port), talks to the API server through the
    /// kubeconfig instead of a mounted service account (`spark.kubernetes.submitInDriver=false`), and reads the
    /// template from a local file. The confs given to this `SparkSubmit` are not used: the ConfigMap has them.
    pub async fn start_from_driver_conf(self, properties: &str, pod_template: Option<&str>) -> SparkApp {
        let dir = temporary_dir();
        let properties_file = dir.path().join("spark.properties");
        std::fs::write(&properties_file, properties).expect("cannot write spark.properties");
        let mut confs: Vec<(String, String)> = [
            ("spark.kubernetes.submitInDriver", "false"),
            ("spark.driver.host", "127.0.0.1"),
            ("spark.driver.bindAddress", "127.0.0.1"),
            ("spark.driver.port", "0"),
            ("spark.driver.blockManager.port", "0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        if let Some(template) = pod_template {
            let template_file = dir.path().join("pod-spec-template.yml");
            std::fs::write(&template_file, template).expect("cannot write the pod template");
            confs.push(("spark.kubernetes.executor.podTemplateFile".into(), template_file.display().to_string()));
        }
        let command = self.command(dir.path(), "client", &confs, Some(&properties_file), APPLICATION);
        wait_started(dir, command).await
    }

    /// This submission's confs followed by `extra`.
    fn confs_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut confs: Vec<(String, String)> = self.confs.clone().into_iter().collect();
        confs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        confs
    }

    /// The spark-submit command line and environment, working in `dir`.
    fn command(
        &self,
        dir: &Path,
        deploy_mode: &str,
        confs: &[(String, String)],
        properties_file: Option<&Path>,
        application: &str,
    ) -> Command {
        let venv = pyspark_venv_of(&self.version);
        let python = venv.join("bin/python");
        let mut command = Command::new(venv.join("bin/spark-submit"));
        command
            .arg("--master")
            .arg(format!("k8s://{}", self.server_url))
            .args(["--deploy-mode", deploy_mode])
            .arg("--conf")
            .arg(format!("spark.local.dir={}", dir.display()));
        match properties_file {
            // The file's spark.app.name is the application's name.
            Some(file) => command.arg("--properties-file").arg(file),
            None => command.args(["--name", &self.app_name]),
        };
        for (key, value) in confs {
            command.arg("--conf").arg(format!("{key}={value}"));
        }
        command
            .arg(application)
            .current_dir(dir)
            .env("KUBECONFIG", &self.kubeconfig)
            // Also how the spark-submit script finds SPARK_HOME: it imports pyspark with this interpreter (else
            // with `python3` from PATH, which lacks it).
            .env("PYSPARK_DRIVER_PYTHON", &python)
            .env("PYSPARK_PYTHON", &python)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            // A Spark installation configured on the machine must not leak into the test's.
            .env_remove("SPARK_HOME")
            .env_remove("SPARK_CONF_DIR");
        command
    }
}

/// Starts a client-mode driver and waits until its SparkContext exists (executor pods are then being
/// requested). Panics with the driver's log if it exits or does not start in time.
async fn wait_started(dir: TempDir, command: Command) -> SparkApp {
    let mut process = vec![ManagedProcess::spawn("spark-submit", command, dir.path())];
    let start = Instant::now();
    let failure = loop {
        if let Some(app_id) = process[0].log().lines().find_map(|l| l.strip_prefix(STARTED_MARKER)) {
            return SparkApp { app_id: app_id.trim().to_owned(), process, _dir: dir };
        }
        match process[0].exit_status() {
            Some(status) => break format!("spark-submit exited ({status}) before its application started"),
            None if start.elapsed() > START_TIMEOUT => {
                break format!("the Spark application did not start within {START_TIMEOUT:?}");
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    print_log_tails(&process, 80);
    stop_all(&mut process, Duration::ZERO);
    panic!("{failure} (log tail above)");
}

/// The text of a cluster-mode driver's `spark.properties` and executor pod template (when it has one), read from
/// the ConfigMaps its pod mounts, as the driver container reads them.
pub async fn driver_conf(client: &kube::Client, namespace: &str, driver_pod: &str) -> (String, Option<String>) {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    let pod = kube::Api::<Pod>::namespaced(client.clone(), namespace).get(driver_pod).await.expect("the driver pod");
    let volumes = pod.spec.and_then(|s| s.volumes).unwrap_or_default();
    let map_of = |volume: &str| volumes.iter().find(|v| v.name == volume).and_then(|v| v.config_map.clone());
    let maps = kube::Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let read = |name: String, key: &'static str| {
        let maps = maps.clone();
        async move {
            let data = maps.get(&name).await.unwrap_or_else(|e| panic!("ConfigMap {name}: {e}")).data;
            data.unwrap_or_default().remove(key).unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
        }
    };
    let conf = map_of("spark-conf-volume-driver").expect("the driver mounts spark-conf-volume-driver");
    let properties = read(conf.name, "spark.properties").await;
    let template = match map_of("pod-template-volume") {
        Some(t) => Some(read(t.name, "podspec-configmap-key").await),
        None => None,
    };
    (properties, template)
}

fn temporary_dir() -> TempDir {
    tempfile::Builder::new().prefix("muster-spark-").tempdir().expect("cannot create a temporary directory for Spark")
}

/// Reads spark-submit's closing line in cluster mode: "Deployed Spark application <name> with application ID
/// <app id> and submission ID <namespace>:<driver pod> into Kubernetes".
fn parse_submission(log: &str) -> Option<SubmittedDriver> {
    let line = log.lines().find(|l| l.contains("Deployed Spark application"))?;
    let word_after = |marker: &str| line.split(marker).nth(1)?.split_whitespace().next();
    let app_id = word_after(" with application ID ")?;
    let (_namespace, pod_name) = word_after(" and submission ID ")?.split_once(':')?;
    Some(SubmittedDriver { pod_name: pod_name.to_owned(), app_id: app_id.to_owned() })
}

/// A running Spark driver; dropping it stops the whole process tree (JVM and Python).
pub struct SparkApp {
    /// A one-element Vec, to share `stop_all`/`print_log_tails` with the control plane.
    process: Vec<ManagedProcess>,
    app_id: String,
    _dir: TempDir,
}

impl SparkApp {
    /// The application id: the value of `spark-app-selector` on its pods.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The label selector of this application's executor pods.
    pub fn executor_selector(&self) -> String {
        format!("spark-app-selector={},spark-role=executor", self.app_id)
    }

    /// Everything the driver has printed so far (Spark's log and the application's output).
    pub fn log(&self) -> String {
        self.process[0].log()
    }

    /// Ends the application as a finished one ends: its SparkContext stops (Spark deletes its executor pods)
    /// and the driver exits. Panics with the log if it has not exited within [`START_TIMEOUT`].
    pub async fn finish(mut self) {
        std::fs::write(self._dir.path().join("muster-finish"), b"").expect("cannot signal the application");
        let start = Instant::now();
        while self.process[0].exit_status().is_none() {
            if start.elapsed() > START_TIMEOUT {
                print_log_tails(&self.process, 80);
                panic!("the Spark application did not finish within {START_TIMEOUT:?} (log tail above)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop_all(&mut self.process, Duration::ZERO);
    }
}

impl Drop for SparkApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.process, 80);
        }
        stop_all(&mut self.process, STOP_GRACE);
    }
}
