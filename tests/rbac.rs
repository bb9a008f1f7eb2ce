//! The RBAC and manifests shipped in deploy/ are enough for muster, and no more than it needs.
//!
//! Everything is read from deploy/ at test time: a rule removed from deploy/rbac.yaml fails the test that makes the
//! call needing it, and a rule added there fails the test that pins the role to muster's contract. The API server
//! runs with RBAC authorization; the pod's identity is a static token user named exactly like its ServiceAccount
//! (`system:serviceaccount:muster-system:muster`, with the ServiceAccount groups), so the shipped bindings apply to
//! it unchanged. Where muster's own ClusterRole must be tested alone, only that role and its binding are applied
//! (or the binding is pointed at a user that has nothing else).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    ValidationDirective, WatchParams,
};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, Error, Resource};
use muster::api::{PodGroup, Queue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{ControlPlane, DEFAULT_TIMEOUT, TestNode, bound_node, test_pod, wait_for_pods, wait_until};

/// The identity RBAC gives muster's pod: its ServiceAccount.
const MUSTER_NAMESPACE: &str = "muster-system";
const MUSTER_SERVICE_ACCOUNT: &str = "muster";
const MUSTER_USER: &str = "system:serviceaccount:muster-system:muster";
const MUSTER_GROUPS: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:muster-system"];
/// A user bound to muster's ClusterRole and nothing else (see the `muster serve` test).
const MUSTER_ROLE_ONLY_USER: &str = "muster-role-only";

// ---------------------------------------------------------------------------------------------------------------
// Reading deploy/
// ---------------------------------------------------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every document of a (multi-document) YAML file, as JSON values; empty documents are skipped.
fn documents(relative: &str) -> Vec<Value> {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// What `kubectl apply -f deploy/` applies: every *.yaml directly in deploy/ (not deploy/crds/), in file name order.
fn deploy_documents() -> Vec<Value> {
    let mut files: Vec<String> = std::fs::read_dir(repo_path("deploy"))
        .expect("deploy/ exists")
        .map(|entry| entry.expect("a readable directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    files.iter().flat_map(|name| documents(&format!("deploy/{name}"))).collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_else(|| panic!("a manifest without kind: {doc}"))
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("a manifest without metadata.name: {doc}"))
}

/// The one document of `kind` named `name`, as a k8s-openapi type.
fn typed<T: DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let matching: Vec<&Value> = docs.iter().filter(|d| kind_of(d) == kind && name_of(d) == name).collect();
    assert_eq!(matching.len(), 1, "expected exactly one {kind} named {name} in deploy/");
    serde_json::from_value(matching[0].clone()).unwrap_or_else(|e| panic!("{kind} {name} does not parse: {e}"))
}

/// muster's ClusterRole and every document binding it, as shipped.
fn muster_role_documents() -> Vec<Value> {
    let docs = documents("deploy/rbac.yaml");
    let role: ClusterRole = typed(&docs, "ClusterRole", "muster");
    let role_name = role.metadata.name.expect("typed() matched the name");
    let selected: Vec<Value> = docs
        .into_iter()
        .filter(|doc| match kind_of(doc) {
            "ServiceAccount" => true,
            "ClusterRole" => name_of(doc) == role_name,
            "ClusterRoleBinding" => doc["roleRef"]["kind"] == "ClusterRole" && doc["roleRef"]["name"] == *role_name,
            _ => false,
        })
        .collect();
    assert!(
        selected.iter().any(|d| kind_of(d) == "ClusterRoleBinding"),
        "deploy/rbac.yaml has no ClusterRoleBinding for the ClusterRole muster"
    );
    selected
}

// ---------------------------------------------------------------------------------------------------------------
// Applying manifests and calling the API
// ---------------------------------------------------------------------------------------------------------------

/// Server-side applies one manifest as `client`, with strict field validation: an unknown or misspelt field in
/// deploy/ fails here instead of being dropped silently (what `kubectl apply --server-side` would report).
async fn apply(client: &Client, doc: &Value) {
    let api_version = doc["apiVersion"].as_str().unwrap_or_else(|| panic!("a manifest without apiVersion: {doc}"));
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind_of(doc));
    let (resource, capabilities) =
        pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("the API server does not serve {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or_else(|| panic!("namespaced {} {} has no namespace", kind_of(doc), name_of(doc)));
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
    };
    let params = PatchParams::apply("muster-rbac-test").validation(ValidationDirective::Strict);
    api.patch(name_of(doc), &params, &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("cannot apply {} {}: {e}", kind_of(doc), name_of(doc)));
}

/// Applies deploy/crds/ and waits until the API server serves the new kinds.
async fn install_crds(admin: &Client) {
    let crds = documents("deploy/crds/muster.yaml");
    for crd in &crds {
        apply(admin, crd).await;
    }
    let api = Api::<CustomResourceDefinition>::all(admin.clone());
    for crd in &crds {
        let name = name_of(crd);
        wait_until(&format!("CRD {name} is established"), DEFAULT_TIMEOUT, || async {
            let crd = api.get(name).await.map_err(|e| e.to_string())?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            match conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                true => Ok(()),
                false => Err(format!("conditions {conditions:?}")),
            }
        })
        .await;
    }
}

/// The authorizer learns new bindings through an informer, a moment after they are written.
async fn wait_until_muster_can_list_nodes(muster: &Client) {
    let nodes = Api::<Node>::all(muster.clone());
    wait_until("the shipped binding reaches the authorizer", DEFAULT_TIMEOUT, || async {
        nodes.list(&ListParams::default()).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
}

/// Asserts the call was allowed (and succeeded), naming the call when it was not.
#[track_caller]
fn allowed<T>(what: &str, result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("muster must be able to {what}, but: {e}"))
}

/// Asserts the call was refused by authorization (403), not failed for another reason.
#[track_caller]
fn forbidden<T: Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Api(status)) if status.code == 403 => {}
        other => panic!("muster must NOT be able to {what}, but the API server answered {other:?}"),
    }
}

async fn list_and_watch<K>(what: &str, api: Api<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    allowed(&format!("list {what}"), api.list(&ListParams::default().limit(10)).await);
    // A watch is authorised when it starts: an error here is the API server's answer to the request.
    allowed(&format!("watch {what}"), api.watch(&WatchParams::default().timeout(1), "0").await.map(|_| ()));
}

fn merge_patch(value: Value) -> Patch<Value> {
    Patch::Merge(value)
}

// ---------------------------------------------------------------------------------------------------------------
// Pure checks of deploy/ (no cluster)
// ---------------------------------------------------------------------------------------------------------------

/// (API group, resource, verb) triples granted by a role's rules; panics on anything RBAC would read more broadly
/// than it looks (wildcards, resource names, non-resource URLs).
fn grants(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    assert!(role.aggregation_rule.is_none(), "muster's role must not aggregate other roles");
    let mut grants = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.non_resource_urls.is_none(), "muster needs no non-resource URL: {rule:?}");
        assert!(rule.resource_names.is_none(), "muster's rules apply to every object of a kind: {rule:?}");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for part in [group, resource, verb] {
                        assert!(!part.contains('*'), "no wildcards in muster's role: {rule:?}");
                    }
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

/// muster's contract with the API server (see deploy/README.md), and nothing else: a rule added to
/// deploy/rbac.yaml must be added here too, deliberately.
#[test]
fn the_shipped_cluster_role_grants_exactly_musters_contract() {
    let role: ClusterRole = typed(&documents("deploy/rbac.yaml"), "ClusterRole", "muster");
    let contract: &[(&str, &str, &[&str])] = &[
        ("", "nodes", &["list", "watch"]),
        ("", "pods", &["get", "list", "watch", "patch"]),
        ("", "pods/binding", &["create"]),
        ("", "pods/eviction", &["create"]),
        ("scheduling.k8s.io", "priorityclasses", &["list", "watch"]),
        ("scheduling.muster.dev", "podgroups", &["list", "watch", "create"]),
        ("scheduling.muster.dev", "podgroups/status", &["patch"]),
        ("scheduling.muster.dev", "queues", &["list", "watch", "create"]),
        ("scheduling.muster.dev", "queues/status", &["patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    let expected: BTreeSet<(String, String, String)> = contract
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(move |verb| ((*group).to_owned(), (*resource).to_owned(), (*verb).to_owned()))
        })
        .collect();
    let shipped = grants(&role);
    let missing: Vec<_> = expected.difference(&shipped).collect();
    let extra: Vec<_> = shipped.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "deploy/rbac.yaml: missing {missing:?}, extra {extra:?}");
}

fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
    let spec = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
    spec.containers.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no container {name} in the Deployment"))
}

fn config_map_text(docs: &[Value], name: &str, key: &str) -> String {
    let config_map: ConfigMap = typed(docs, "ConfigMap", name);
    config_map.data.unwrap_or_default().remove(key).unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
}

fn config_map_entry(docs: &[Value], name: &str, key: &str) -> serde_yaml::Value {
    let text = config_map_text(docs, name, key);
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("ConfigMap {name}/{key} is not YAML: {e}"))
}

fn config_file(relative: &str) -> serde_yaml::Value {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// The Deployment runs what the README says, as the ServiceAccount the RBAC binds, with the configuration in
/// config/ (the kube-scheduler one minus its kubeconfig, so it uses the in-cluster configuration).
#[test]
fn the_deployment_is_one_hardened_pod_with_the_configs_from_config() {
    let docs = deploy_documents();
    let deployment: Deployment = typed(&docs, "Deployment", "muster");
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE));
    let spec = deployment.spec.as_ref().expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(1), "reservations live in one process's memory");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "a rolling update would run two muster instances at once"
    );
    let pod = spec.template.spec.as_ref().expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some(MUSTER_SERVICE_ACCOUNT));
    assert_eq!(pod.scheduler_name, None, "muster's own pod is placed by the default scheduler");
    let binding: ClusterRoleBinding = typed(&documents("deploy/rbac.yaml"), "ClusterRoleBinding", "muster");
    let subject = Subject {
        kind: "ServiceAccount".to_owned(),
        name: MUSTER_SERVICE_ACCOUNT.to_owned(),
        namespace: Some(MUSTER_NAMESPACE.to_owned()),
        api_group: None,
    };
    assert!(binding.subjects.unwrap_or_default().contains(&subject), "the binding names the pod's ServiceAccount");

    let muster = container(&deployment, "muster");
    assert_eq!(muster.image.as_deref(), Some("ghcr.io/muster-dev/muster:0.1.0"));
    let command: Vec<String> = muster.command.iter().chain(muster.args.iter()).flatten().cloned().collect();
    assert_eq!(command, ["muster", "serve", "--config", "/etc/muster/muster.yaml"]);
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
        (get.path.clone().unwrap_or_default(), serde_json::to_value(&get.port).expect("a port serialises"))
    };
    assert_eq!(probe_path(&muster.readiness_probe), ("/readyz".to_owned(), json!("http")));
    assert_eq!(probe_path(&muster.liveness_probe), ("/healthz".to_owned(), json!("http")));
    let port = muster.ports.iter().flatten().find(|p| p.name.as_deref() == Some("http")).expect("a port named http");
    assert_eq!(port.container_port, 8888);

    let scheduler = container(&deployment, "kube-scheduler");
    assert_eq!(scheduler.image.as_deref(), Some("registry.k8s.io/kube-scheduler:v1.35.4"));
    for c in [muster, scheduler] {
        let resources = c.resources.as_ref().unwrap_or_else(|| panic!("{}: no resources", c.name));
        for (what, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
            let list = list.as_ref().unwrap_or_else(|| panic!("{}: no {what}", c.name));
            assert!(list.contains_key("cpu") && list.contains_key("memory"), "{}: {what} {list:?}", c.name);
        }
        let security = c.security_context.as_ref().unwrap_or_else(|| panic!("{}: no securityContext", c.name));
        assert_eq!(security.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(security.allow_privilege_escalation, Some(false), "{}", c.name);
    }
    let pod_security = pod.security_context.as_ref().expect("a pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|uid| uid != 0));

    // The configurations are config/'s, mounted where the commands read them.
    assert_eq!(config_map_entry(&docs, "muster-config", "muster.yaml"), config_file("config/muster.yaml"));
    let mut expected_scheduler = config_file("config/kube-scheduler.yaml");
    let client_connection = expected_scheduler
        .get_mut("clientConnection")
        .and_then(|c| c.as_mapping_mut())
        .expect("config/kube-scheduler.yaml sets clientConnection");
    client_connection.remove("kubeconfig");
    if client_connection.is_empty() {
        expected_scheduler.as_mapping_mut().expect("a mapping").remove("clientConnection");
    }
    let scheduler_config = config_map_entry(&docs, "muster-kube-scheduler-config", "kube-scheduler.yaml");
    assert_eq!(scheduler_config, expected_scheduler);
    let mounts = |c: &Container| -> BTreeMap<String, String> {
        c.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone())).collect()
    };
    let volumes: BTreeMap<String, String> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.config_map.as_ref().map(|c| c.name.clone()).unwrap_or_default()))
        .collect();
    assert_eq!(volumes["muster-config"], "muster-config");
    assert_eq!(mounts(muster)["muster-config"], "/etc/muster");
    assert_eq!(volumes["kube-scheduler-config"], "muster-kube-scheduler-config");
    assert_eq!(mounts(scheduler)["kube-scheduler-config"], "/etc/kubernetes/muster-scheduler");
    assert!(
        scheduler
            .command
            .iter()
            .flatten()
            .any(|a| a == "--config=/etc/kubernetes/muster-scheduler/kube-scheduler.yaml"),
        "kube-scheduler reads the mounted configuration: {:?}",
        scheduler.command
    );

    // The sidecar calls muster on the port and prefix muster listens on.
    let muster_config = config_map_entry(&docs, "muster-config", "muster.yaml");
    let listen_port = muster_config["listen"].as_str().and_then(|l| l.rsplit_once(':')).map(|(_, port)| port);
    let prefix = muster_config["urlPrefix"].as_str().expect("urlPrefix");
    let url = format!("http://127.0.0.1:{}{prefix}", listen_port.expect("listen has a port"));
    assert_eq!(scheduler_config["extenders"][0]["urlPrefix"].as_str(), Some(url.as_str()));
    assert_eq!(scheduler_config["profiles"][0]["schedulerName"], muster_config["schedulerName"]);
    assert_eq!(scheduler_config["leaderElection"]["leaderElect"], serde_yaml::Value::Bool(false));

    let service: Service = typed(&docs, "Service", "muster");
    let service_spec = service.spec.expect("a Service spec");
    let selector = service_spec.selector.expect("a selector");
    let pod_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the Service selects the pod");
    let service_port = &service_spec.ports.expect("ports")[0];
    assert_eq!((service_port.name.as_deref(), service_port.port), (Some("http"), 8888));
}

// ---------------------------------------------------------------------------------------------------------------
// Against the real API server
// ---------------------------------------------------------------------------------------------------------------

/// Every call muster makes, as muster, with only the shipped ClusterRole bound: each is allowed. And a few that
/// would be dangerous are refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_cluster_role_allows_every_call_muster_makes_and_refuses_the_rest() {
    let control_plane = ControlPlane::builder().rbac().user(MUSTER_USER, MUSTER_GROUPS).start().await;
    let admin = control_plane.client();
    install_crds(&admin).await;
    control_plane.create_namespace(MUSTER_NAMESPACE).await;
    for doc in muster_role_documents() {
        apply(&admin, &doc).await;
    }
    let muster = control_plane.client_for_user(MUSTER_USER).await;
    wait_until_muster_can_list_nodes(&muster).await;

    // The world muster watches, made by the admin.
    let ns = "work";
    control_plane.create_namespace(ns).await;
    control_plane.create_node(&TestNode::new("node-1", "4", "8Gi")).await;
    let admin_pods = Api::<Pod>::namespaced(admin.clone(), ns);
    for name in ["driver", "pending", "bind-me", "evict-me"] {
        allowed(
            "(admin) create a pod",
            admin_pods.create(&PostParams::default(), &test_pod(name, "100m", "64Mi")).await,
        );
    }

    // Watches: every kind in the cache, cluster-wide.
    list_and_watch("nodes", Api::<Node>::all(muster.clone())).await;
    list_and_watch("pods", Api::<Pod>::all(muster.clone())).await;
    list_and_watch("podgroups", Api::<PodGroup>::all(muster.clone())).await;
    list_and_watch("queues", Api::<Queue>::all(muster.clone())).await;
    list_and_watch("priorityclasses", Api::<PriorityClass>::all(muster.clone())).await;

    // Pods: the retry annotation, binding, eviction.
    let pods = Api::<Pod>::namespaced(muster.clone(), ns);
    let annotation = merge_patch(json!({"metadata": {"annotations": {"muster.dev/retry": "2025-01-01T00:00:00Z"}}}));
    let patched =
        allowed("patch a pod's annotations", pods.patch("pending", &PatchParams::default(), &annotation).await);
    assert_eq!(patched.metadata.annotations.unwrap_or_default()["muster.dev/retry"], "2025-01-01T00:00:00Z");
    allowed("get a pod", pods.get("pending").await);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "bind-me", "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    });
    allowed(
        "create pods/binding",
        pods.create_subresource::<Value, Value>("binding", "bind-me", &PostParams::default(), &binding).await,
    );
    assert_eq!(bound_node(&admin_pods.get("bind-me").await.expect("the pod exists")), Some("node-1"));
    allowed("create pods/eviction", pods.evict("evict-me", &EvictParams::default()).await);
    wait_until("the evicted pod is gone", DEFAULT_TIMEOUT, || async {
        match admin_pods.get_opt("evict-me").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Queues: the default queue created, its status written.
    let queues = Api::<Queue>::all(muster.clone());
    let queue: Queue = serde_json::from_value(json!({
        "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "Queue",
        "metadata": {"name": "default"}, "spec": {"weight": 1},
    }))
    .expect("a Queue");
    allowed("create a queue", queues.create(&PostParams::default(), &queue).await);
    let status = merge_patch(json!({"status": {"state": "Open", "pending": 1, "deserved": {"cpu": "4"}}}));
    let patched =
        allowed("patch queues/status", queues.patch_status("default", &PatchParams::default(), &status).await);
    assert_eq!(patched.status.map(|s| s.pending), Some(1));
    forbidden(
        "patch a queue's spec",
        queues.patch("default", &PatchParams::default(), &merge_patch(json!({"spec": {"weight": 9}}))).await,
    );

    // PodGroups: an automatic one owned by its driver pod, its status written.
    let driver = admin_pods.get("driver").await.expect("the driver exists");
    let groups = Api::<PodGroup>::namespaced(muster.clone(), ns);
    let group: PodGroup = serde_json::from_value(json!({
        "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup",
        "metadata": {
            "name": "spark-app", "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": "driver", "uid": driver.metadata.uid, "controller": false,
            }],
        },
        "spec": {"minMember": 1, "memberTemplates": [{"name": "driver", "minMember": 1, "resources": {"cpu": "100m"}}]},
    }))
    .expect("a PodGroup");
    allowed("create a podgroup", groups.create(&PostParams::default(), &group).await);
    let status = merge_patch(json!({"status": {
        "phase": "Inqueue", "admittedAt": "2025-01-01T00:00:00Z",
        "reservations": [{"template": "driver", "node": "node-1", "count": 1}],
    }}));
    let patched =
        allowed("patch podgroups/status", groups.patch_status("spark-app", &PatchParams::default(), &status).await);
    assert_eq!(patched.status.map(|s| s.reservations.len()), Some(1));
    let labels = merge_patch(json!({"metadata": {"labels": {"spark-app-selector": "spark-app"}}}));
    forbidden("patch a podgroup's spec", groups.patch("spark-app", &PatchParams::default(), &labels).await);

    // Events (events.k8s.io, as kube's recorder writes them), created and then patched as repeats are counted.
    let regarding = json!({
        "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup", "name": "spark-app", "namespace": ns,
    });
    let events = Api::<EventV1>::namespaced(muster.clone(), ns);
    let event: EventV1 = serde_json::from_value(json!({
        "metadata": {"name": "spark-app.admitted", "namespace": ns},
        "regarding": regarding, "type": "Normal", "reason": "Admitted", "action": "Admit", "note": "reserved node-1",
        "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "muster.dev/muster",
        "reportingInstance": "muster-0",
    }))
    .expect("an events.k8s.io Event");
    allowed("create an events.k8s.io event", events.create(&PostParams::default(), &event).await);
    let series = merge_patch(json!({"series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:10.000000Z"}}));
    allowed("patch an events.k8s.io event", events.patch("spark-app.admitted", &PatchParams::default(), &series).await);

    // What muster must not do.
    forbidden("delete a pod directly", pods.delete("pending", &DeleteParams::default()).await);
    forbidden("create a pod", pods.create(&PostParams::default(), &test_pod("sneaky", "1", "1Gi")).await);
    let mut pending = admin_pods.get("pending").await.expect("the pod exists");
    pending.metadata.managed_fields = None;
    forbidden("update (PUT) a pod", pods.replace("pending", &PostParams::default(), &pending).await);
    forbidden(
        "write pod status",
        pods.patch_status("pending", &PatchParams::default(), &merge_patch(json!({"status": {"phase": "Failed"}})))
            .await,
    );
    forbidden("list secrets", Api::<Secret>::all(muster.clone()).list(&ListParams::default()).await);
    forbidden("read a secret", Api::<Secret>::namespaced(muster.clone(), ns).get("anything").await);
    forbidden("list configmaps", Api::<ConfigMap>::all(muster.clone()).list(&ListParams::default()).await);
    let crds = Api::<CustomResourceDefinition>::all(muster.clone());
    let label = merge_patch(json!({"metadata": {"labels": {"tampered": "true"}}}));
    forbidden("modify a CRD", crds.patch("podgroups.scheduling.muster.dev", &PatchParams::default(), &label).await);
    forbidden("delete a CRD", crds.delete("queues.scheduling.muster.dev", &DeleteParams::default()).await);
    let nodes = Api::<Node>::all(muster.clone());
    forbidden("update a node", nodes.patch("node-1", &PatchParams::default(), &label).await);
    forbidden(
        "cordon a node",
        nodes.patch("node-1", &PatchParams::default(), &merge_patch(json!({"spec": {"unschedulable": true}}))).await,
    );
    forbidden("delete a podgroup", groups.delete("spark-app", &DeleteParams::default()).await);
    forbidden("delete a queue", queues.delete("default", &DeleteParams::default()).await);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "muster", "namespace": ns}})).expect("a Lease");
    forbidden(
        "create a lease (leader election is off)",
        Api::<Lease>::namespaced(muster.clone(), ns).create(&PostParams::default(), &lease).await,
    );
    let escalation: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "muster-escalates"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": MUSTER_SERVICE_ACCOUNT, "namespace": MUSTER_NAMESPACE}],
    }))
    .expect("a ClusterRoleBinding");
    forbidden(
        "grant itself more (bind cluster-admin)",
        Api::<ClusterRoleBinding>::all(muster.clone()).create(&PostParams::default(), &escalation).await,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The real `muster serve` with the shipped RBAC
// ---------------------------------------------------------------------------------------------------------------

/// `muster serve` as a child process, its output in a log file; killed when dropped (printing the log's tail
/// first when the test is failing).
struct MusterProcess {
    child: Child,
    log_path: PathBuf,
}

impl MusterProcess {
    /// Runs `muster serve --config <config>` with the given listen port, the test's URL prefix and scheduler name.
    fn spawn(config: &Path, kubeconfig: &Path, listen_port: u16, log_dir: &Path) -> MusterProcess {
        let log_path = log_dir.join("muster-serve.log");
        let log = std::fs::File::create(&log_path).expect("cannot create the muster log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{listen_port}")])
            .args(["--url-prefix", "/muster", "--scheduler-name", "muster"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. muster dies with the test's thread even when the test is killed.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("cannot start the muster binary");
        MusterProcess { child, log_path }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("cannot query muster") {
            panic!("muster serve exited ({status}); its log:\n{}", self.log());
        }
    }
}

impl Drop for MusterProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("\n----- last lines of muster serve -----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("----- end of muster serve -----");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// `GET path` on a plain-HTTP loopback port: the status code and the body.
async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .map_err(|_| "no complete answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Lines of a log that report an authorization failure.
fn forbidden_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.to_ascii_lowercase().contains("forbidden")).collect()
}

/// The whole product with the shipped deploy/ (RBAC, sidecar scheduler configuration): `muster serve` and a
/// kube-scheduler with the configuration from the ConfigMap admit and bind a gang of two, with no authorization
/// failure on either side.
///
/// The scheduler acts as the pod's ServiceAccount, with every shipped binding. muster acts as a user bound to the
/// ClusterRole `muster` alone (the shipped binding with its subject replaced): the ServiceAccount also holds
/// kube-scheduler's roles (pods/binding among them), which would hide a rule muster's own role lacks.
#[tokio::test(flavor = "multi_thread")]
async fn muster_serve_and_its_sidecar_scheduler_bind_a_gang_with_only_the_shipped_rbac() {
    let mut control_plane =
        ControlPlane::builder().rbac().user(MUSTER_USER, MUSTER_GROUPS).user(MUSTER_ROLE_ONLY_USER, &[]).start().await;
    let admin = control_plane.client();
    // The install, as the README gives it: the CRDs, then deploy/ (no controller-manager runs, so the Deployment
    // stays inert; the test runs its two containers' programs itself).
    install_crds(&admin).await;
    for doc in deploy_documents() {
        apply(&admin, &doc).await;
    }
    let mut binding = muster_role_documents()
        .into_iter()
        .find(|doc| kind_of(doc) == "ClusterRoleBinding")
        .expect("muster_role_documents() checks there is one");
    binding["metadata"] = json!({"name": "muster-role-only"});
    binding["subjects"] =
        json!([{"kind": "User", "name": MUSTER_ROLE_ONLY_USER, "apiGroup": "rbac.authorization.k8s.io"}]);
    apply(&admin, &binding).await;
    let muster_client = control_plane.client_for_user(MUSTER_ROLE_ONLY_USER).await;
    wait_until_muster_can_list_nodes(&muster_client).await;
    wait_until_muster_can_list_nodes(&control_plane.client_for_user(MUSTER_USER).await).await;
    forbidden(
        "delete pods with muster's role alone",
        Api::<Pod>::namespaced(muster_client.clone(), "default")
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
    );
    control_plane.create_node(&TestNode::new("node-a", "2", "4Gi")).await;
    control_plane.create_node(&TestNode::new("node-b", "2", "4Gi")).await;

    // muster with the shipped configuration file (the flags override where it listens, as on a laptop).
    let docs = deploy_documents();
    let config_path = control_plane.dir().join("muster.yaml");
    std::fs::write(&config_path, config_map_text(&docs, "muster-config", "muster.yaml")).expect("write the config");
    let port = free_loopback_port();
    let kubeconfig = control_plane.kubeconfig_for_user(MUSTER_ROLE_ONLY_USER);
    let mut muster = MusterProcess::spawn(&config_path, kubeconfig, port, control_plane.dir());
    let start = Instant::now();
    loop {
        muster.assert_running();
        let last = match http_get(port, "/readyz").await {
            Ok((200, _)) => break,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e,
        };
        assert!(start.elapsed() < Duration::from_secs(60), "muster's /readyz never answered 200; last: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sidecar's configuration as shipped, pointed at this muster, acting as the pod's ServiceAccount.
    let mut config = config_map_entry(&docs, "muster-kube-scheduler-config", "kube-scheduler.yaml");
    config["extenders"][0]["urlPrefix"] = format!("http://127.0.0.1:{port}/muster").into();
    let kubeconfig = control_plane.kubeconfig_for_user(MUSTER_USER).display().to_string();
    config.as_mapping_mut().expect("a mapping").insert(
        "clientConnection".into(),
        serde_yaml::to_value(BTreeMap::from([("kubeconfig", kubeconfig)])).expect("a mapping serialises"),
    );
    control_plane.start_scheduler(&serde_yaml::to_string(&config).expect("YAML serialises")).await;

    let ns = "gang";
    control_plane.create_namespace(ns).await;
    let group: PodGroup = serde_json::from_value(json!({
        "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup",
        "metadata": {"name": "train", "namespace": ns},
        "spec": {"minMember": 2, "memberTemplates": [
            {"name": "w", "minMember": 2, "resources": {"cpu": "1", "memory": "1Gi"}},
        ]},
    }))
    .expect("a PodGroup");
    Api::<PodGroup>::namespaced(admin.clone(), ns).create(&PostParams::default(), &group).await.expect("create");
    let pods = Api::<Pod>::namespaced(admin.clone(), ns);
    for name in ["train-0", "train-1"] {
        let mut pod = test_pod(name, "1", "1Gi");
        pod.metadata.labels = Some(BTreeMap::from([("muster.dev/pod-group".to_owned(), "train".to_owned())]));
        pod.metadata.annotations = Some(BTreeMap::from([("muster.dev/member-template".to_owned(), "w".to_owned())]));
        pod.spec.as_mut().expect("test_pod has a spec").scheduler_name = Some("muster".to_owned());
        pods.create(&PostParams::default(), &pod).await.expect("create a gang member");
    }
    let bound = wait_for_pods(&admin, ns, "muster.dev/pod-group=train", "are 2 bound pods", |pods| {
        pods.len() == 2 && pods.iter().all(|p| bound_node(p).is_some())
    })
    .await;
    assert_eq!(bound.len(), 2);

    // muster wrote what its RBAC is for: the gang's status (podgroups/status) and the default queue (queues create).
    // Read back as the admin: muster itself never reads single objects (it watches).
    let groups = Api::<PodGroup>::namespaced(admin.clone(), ns);
    wait_until("muster records the gang's phase", DEFAULT_TIMEOUT, || async {
        let group = groups.get("train").await.map_err(|e| e.to_string())?;
        group.status.as_ref().and_then(|s| s.phase).map(|_| ()).ok_or_else(|| format!("{:?}", group.status))
    })
    .await;
    let queues = Api::<Queue>::all(admin.clone());
    wait_until("muster creates the default queue", DEFAULT_TIMEOUT, || async {
        queues.get_opt("default").await.map_err(|e| e.to_string())?.map(|_| ()).ok_or_else(|| "absent".to_owned())
    })
    .await;

    muster.assert_running();
    let muster_log = muster.log();
    let refused = forbidden_lines(&muster_log);
    assert!(refused.is_empty(), "muster was refused by RBAC:\n{}", refused.join("\n"));
    let scheduler_log_path = control_plane.dir().join("kube-scheduler-1.log");
    let scheduler_log = std::fs::read_to_string(&scheduler_log_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", scheduler_log_path.display()));
    let refused = forbidden_lines(&scheduler_log);
    assert!(refused.is_empty(), "the sidecar kube-scheduler was refused by RBAC:\n{}", refused.join("\n"));
}
