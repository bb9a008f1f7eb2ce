//! The RBAC and manifests shipped in deploy/ are enough for muster, and no more than it needs.
//!
//! Everything is read from deploy/ at test time: a rule removed from deploy/rbac.yaml fails the test that makes the
//! call needing it, and a rule added there fails the test that pins the roles to muster's contract. The API server
//! runs with RBAC authorization; the pod's identity is a static token user named exactly like its ServiceAccount
//! (`system:serviceaccount:muster-system:muster`, with the ServiceAccount groups), so the shipped bindings apply to
//! it unchanged. Where muster's own grants must be tested alone (the ClusterRole `muster` and the Role for its
//! leader-election Lease), only those roles and their bindings are applied (or the bindings are pointed at a user
//! that has nothing else).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, PodSpec, Secret, Service};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
/// A user bound to muster's own roles and nothing else (see the `muster serve` test).
const MUSTER_ROLE_ONLY_USER: &str = "muster-role-only";
/// The Role (in muster's namespace) for muster's leader election, and the Lease it elects on.
const LEADER_ELECTION_ROLE: &str = "muster-leader-election";
const LEASE_NAME: &str = "muster";
/// muster's default `leaderElection.leaseName`, used when the shipped configuration does not set one.
const DEFAULT_LEASE_NAME: &str = "muster";
/// The Secrets of the mutual TLS between kube-scheduler and muster (cert-manager's key names: tls.crt, tls.key,
/// ca.crt), and where muster reads its own.
const SERVER_TLS_SECRET: &str = "muster-tls";
const CLIENT_TLS_SECRET: &str = "muster-scheduler-client-tls";
const SERVER_TLS_DIR: &str = "/etc/muster/tls";
/// The admission webhook's Secret (muster makes it), the configuration muster patches, and the roles for both.
const WEBHOOK_SECRET: &str = "muster-webhook-tls";
const WEBHOOK_CONFIGURATION: &str = "muster";
const WEBHOOK_ROLE: &str = "muster-webhook";
/// The PriorityClass muster's pods run at, and the highest value a non-system PriorityClass may have.
const PRIORITY_CLASS: &str = "muster-critical";
const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;

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
    serde_norway::Deserializer::from_str(&text)
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

/// The admission webhook's grants as shipped: its Role and ClusterRole and their bindings.
fn webhook_role_documents() -> Vec<Value> {
    let docs: Vec<Value> = documents("deploy/rbac.yaml")
        .into_iter()
        .filter(|d| {
            matches!(kind_of(d), "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
                && name_of(d) == WEBHOOK_ROLE
        })
        .collect();
    assert_eq!(docs.len(), 4, "deploy/rbac.yaml has the webhook's Role, ClusterRole and both bindings");
    docs
}

/// muster's own grants as shipped: the ServiceAccount, the ClusterRole `muster`, the Role for its Lease, and
/// every document binding one of those roles.
fn muster_role_documents() -> Vec<Value> {
    let docs = documents("deploy/rbac.yaml");
    let cluster_role: ClusterRole = typed(&docs, "ClusterRole", "muster");
    let cluster_role_name = cluster_role.metadata.name.expect("typed() matched the name");
    let role: Role = typed(&docs, "Role", LEADER_ELECTION_ROLE);
    let role_namespace = role.metadata.namespace.expect("a Role is namespaced");
    let selected: Vec<Value> = docs
        .into_iter()
        .filter(|doc| match kind_of(doc) {
            "ServiceAccount" => true,
            "ClusterRole" => name_of(doc) == cluster_role_name,
            "ClusterRoleBinding" => {
                doc["roleRef"]["kind"] == "ClusterRole" && doc["roleRef"]["name"] == *cluster_role_name
            }
            "Role" => name_of(doc) == LEADER_ELECTION_ROLE,
            // A RoleBinding refers to a Role of its own namespace.
            "RoleBinding" => {
                doc["roleRef"]["kind"] == "Role"
                    && doc["roleRef"]["name"] == LEADER_ELECTION_ROLE
                    && doc["metadata"]["namespace"] == *role_namespace
            }
            _ => false,
        })
        .collect();
    for (kind, role) in [("ClusterRoleBinding", "the ClusterRole muster"), ("RoleBinding", "the Role for the Lease")] {
        assert!(selected.iter().any(|d| kind_of(d) == kind), "deploy/rbac.yaml has no {kind} for {role}");
    }
    selected
}

// ---------------------------------------------------------------------------------------------------------------
// Applying manifests and calling the API
// ---------------------------------------------------------------------------------------------------------------

/// Server-side applies one manifest as `client`, with strict field validation: an unknown or misspelt field in
/// deploy/ fails here instead of being dropped silently (what `kubectl apply --server-side` would report).
async fn apply(client: &Client, doc: &Value) {
    apply_with(client, doc, false).await;
}

/// [`apply`], or with `dry_run` validated and admitted by the API server but not stored.
async fn apply_with(client: &Client, doc: &Value, dry_run: bool) {
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
    let mut params = PatchParams::apply("muster-rbac-test").validation(ValidationDirective::Strict);
    params.dry_run = dry_run;
    api.patch(name_of(doc), &params, &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("cannot apply {} {}: {e}", kind_of(doc), name_of(doc)));
}

/// Applies deploy/crds/ and waits until the API server serves the new kinds.
async fn install_crds(admin: &Client) {
    // muster's own, and the stand-ins for Volcano's (which muster reads when they are installed).
    let mut crds = documents("deploy/crds/muster.yaml");
    crds.extend(documents("tests/fixtures/crds/volcano.yaml"));
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

/// Like [`wait_until_muster_can_list_nodes`], for the Role in muster's namespace: its Lease can be read (absent is
/// fine; refused is not, yet).
async fn wait_until_muster_can_read_its_lease(muster: &Client) {
    let leases = Api::<Lease>::namespaced(muster.clone(), MUSTER_NAMESPACE);
    wait_until("the shipped RoleBinding reaches the authorizer", DEFAULT_TIMEOUT, || async {
        leases.get_opt(LEASE_NAME).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Pure checks of deploy/ (no cluster)
// ---------------------------------------------------------------------------------------------------------------

/// (API group, resource, verb, resource names) granted by rules; an empty name list means every object of the
/// kind. Panics on anything RBAC would read more broadly than it looks (wildcards, non-resource URLs).
fn rule_grants<'a>(rules: impl IntoIterator<Item = &'a PolicyRule>) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none(), "muster needs no non-resource URL: {rule:?}");
        let mut names = rule.resource_names.clone().unwrap_or_default();
        names.sort();
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for part in [group, resource, verb].into_iter().chain(&names) {
                        assert!(!part.contains('*'), "no wildcards in muster's roles: {rule:?}");
                    }
                    grants.insert((group.clone(), resource.clone(), verb.clone(), names.clone()));
                }
            }
        }
    }
    grants
}

/// (API group, resource, verb) triples granted by muster's ClusterRole, whose every rule applies to every object
/// of its kind (resource names there would hide that muster needs a rule cluster-wide).
fn grants(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    assert!(role.aggregation_rule.is_none(), "muster's role must not aggregate other roles");
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none(), "muster's rules apply to every object of a kind: {rule:?}");
    }
    rule_grants(role.rules.iter().flatten())
        .into_iter()
        .map(|(group, resource, verb, _)| (group, resource, verb))
        .collect()
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
        // Capacity requests (CapacityBuffers and their PodTemplates) for gangs that wait for nodes.
        ("", "podtemplates", &["list", "create", "patch", "delete"]),
        ("autoscaling.x-k8s.io", "capacitybuffers", &["list", "create", "patch", "delete"]),
        // Spark drivers' configuration, by name.
        ("", "configmaps", &["get"]),
        ("sparkoperator.k8s.io", "sparkapplications", &["get"]),
        ("scheduling.volcano.sh", "queues", &["list", "watch"]),
        ("scheduling.volcano.sh", "podgroups", &["list", "watch"]),
        ("scheduling.volcano.sh", "queues/status", &["patch"]),
        ("scheduling.volcano.sh", "podgroups/status", &["patch"]),
        ("scheduling.k8s.io", "priorityclasses", &["list", "watch"]),
        ("scheduling.muster.dev", "podgroups", &["list", "watch", "create"]),
        ("scheduling.muster.dev", "podgroups/status", &["patch"]),
        ("scheduling.muster.dev", "queues", &["list", "watch", "create"]),
        ("scheduling.muster.dev", "queues/status", &["patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        // /state: who a bearer token is, and whether it may list PodGroups (stateAccess: kubernetes).
        ("authentication.k8s.io", "tokenreviews", &["create"]),
        ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
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

fn service_account_subject() -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: MUSTER_SERVICE_ACCOUNT.to_owned(),
        namespace: Some(MUSTER_NAMESPACE.to_owned()),
        api_group: None,
    }
}

/// Leader election and nothing more: `create` on Leases in muster's namespace (RBAC cannot restrict a create by
/// name: the name is not known when the request is authorised) and every other verb the lease manager uses on the
/// one Lease muster's shipped configuration names, in the namespace its pod runs in. A verb added here must be
/// added to the contract deliberately, as for the ClusterRole.
#[test]
fn the_shipped_lease_role_grants_exactly_leader_election_on_musters_lease() {
    let rbac = documents("deploy/rbac.yaml");
    let role: Role = typed(&rbac, "Role", LEADER_ELECTION_ROLE);
    assert_eq!(role.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE), "the Lease lives in muster's namespace");
    let contract: &[(&str, &[&str])] =
        &[("create", &[]), ("get", &[LEASE_NAME]), ("patch", &[LEASE_NAME]), ("delete", &[LEASE_NAME])];
    let expected: BTreeSet<(String, String, String, Vec<String>)> = contract
        .iter()
        .map(|(verb, names)| {
            let names = names.iter().map(|n| (*n).to_owned()).collect();
            ("coordination.k8s.io".to_owned(), "leases".to_owned(), (*verb).to_owned(), names)
        })
        .collect();
    let shipped = rule_grants(role.rules.iter().flatten());
    let missing: Vec<_> = expected.difference(&shipped).collect();
    let extra: Vec<_> = shipped.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Role {LEADER_ELECTION_ROLE}: missing {missing:?}, extra {extra:?}"
    );

    let binding: RoleBinding = typed(&rbac, "RoleBinding", LEADER_ELECTION_ROLE);
    assert_eq!(binding.metadata.namespace, role.metadata.namespace, "a RoleBinding grants its own namespace's Role");
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("Role", LEADER_ELECTION_ROLE));
    assert!(
        binding.subjects.unwrap_or_default().contains(&service_account_subject()),
        "the binding names the pod's ServiceAccount"
    );

    // The Lease the shipped configuration elects on is the one the Role names, in the namespace the Role is in.
    let docs = deploy_documents();
    let config = config_map_entry(&docs, "muster-config", "muster.yaml");
    let election = &config["leaderElection"];
    assert_eq!(election["enabled"], serde_norway::Value::Bool(true), "the shipped configuration elects a leader");
    let lease_name = election.get("leaseName").and_then(|v| v.as_str()).unwrap_or(DEFAULT_LEASE_NAME);
    assert_eq!(lease_name, LEASE_NAME);
    let deployment: Deployment = typed(&docs, "Deployment", "muster");
    let pod_namespace = deployment.metadata.namespace.clone().expect("a namespaced Deployment");
    // An empty or absent leaseNamespace means the pod's own ($POD_NAMESPACE, from the downward API).
    let lease_namespace =
        election.get("leaseNamespace").and_then(|v| v.as_str()).filter(|ns| !ns.is_empty()).unwrap_or(&pod_namespace);
    assert_eq!(Some(lease_namespace), role.metadata.namespace.as_deref());
}

/// The admission webhook's certificate and nothing more: in muster's namespace, `create` on Secrets (RBAC cannot
/// restrict a create by name) and get/update of its one Secret; cluster-wide, get/patch of its one
/// MutatingWebhookConfiguration. Both roles bound to the pod's ServiceAccount.
#[test]
fn the_shipped_webhook_roles_grant_exactly_its_secret_and_its_configuration() {
    let rbac = documents("deploy/rbac.yaml");
    let role: Role = typed(&rbac, "Role", WEBHOOK_ROLE);
    assert_eq!(role.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE), "the Secret lives in muster's namespace");
    let secret = |verb: &str, names: &[&str]| {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        (String::new(), "secrets".to_owned(), verb.to_owned(), names)
    };
    let expected =
        BTreeSet::from([secret("create", &[]), secret("get", &[WEBHOOK_SECRET]), secret("update", &[WEBHOOK_SECRET])]);
    assert_eq!(rule_grants(role.rules.iter().flatten()), expected, "Role {WEBHOOK_ROLE}");
    let cluster_role: ClusterRole = typed(&rbac, "ClusterRole", WEBHOOK_ROLE);
    let configuration = |verb: &str| {
        let group = "admissionregistration.k8s.io".to_owned();
        (group, "mutatingwebhookconfigurations".to_owned(), verb.to_owned(), vec![WEBHOOK_CONFIGURATION.to_owned()])
    };
    let expected = BTreeSet::from([configuration("get"), configuration("patch")]);
    assert_eq!(rule_grants(cluster_role.rules.iter().flatten()), expected, "ClusterRole {WEBHOOK_ROLE}");
    let role_binding: RoleBinding = typed(&rbac, "RoleBinding", WEBHOOK_ROLE);
    assert_eq!(role_binding.metadata.namespace, role.metadata.namespace);
    let cluster_binding: ClusterRoleBinding = typed(&rbac, "ClusterRoleBinding", WEBHOOK_ROLE);
    for (kind, role_ref, subjects) in [
        ("Role", &role_binding.role_ref, role_binding.subjects.clone()),
        ("ClusterRole", &cluster_binding.role_ref, cluster_binding.subjects.clone()),
    ] {
        assert_eq!((role_ref.kind.as_str(), role_ref.name.as_str()), (kind, WEBHOOK_ROLE));
        assert!(subjects.unwrap_or_default().contains(&service_account_subject()), "binds the pod's ServiceAccount");
    }
    // The configuration the ClusterRole names is the one deploy/ ships.
    let docs = deploy_documents();
    let shipped: Vec<&str> =
        docs.iter().filter(|d| kind_of(d) == "MutatingWebhookConfiguration").map(name_of).collect();
    assert_eq!(shipped, [WEBHOOK_CONFIGURATION]);
}

fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
    let spec = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
    spec.containers.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no container {name} in the Deployment"))
}

fn config_map_text(docs: &[Value], name: &str, key: &str) -> String {
    let config_map: ConfigMap = typed(docs, "ConfigMap", name);
    config_map.data.unwrap_or_default().remove(key).unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
}

fn config_map_entry(docs: &[Value], name: &str, key: &str) -> serde_norway::Value {
    let text = config_map_text(docs, name, key);
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("ConfigMap {name}/{key} is not YAML: {e}"))
}

fn config_file(relative: &str) -> serde_norway::Value {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

fn yaml(text: &str) -> serde_norway::Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// `base` with `overlay` merged in: mappings key by key (recursively), anything else replaced.
fn merged(mut base: serde_norway::Value, overlay: serde_norway::Value) -> serde_norway::Value {
    match (base.as_mapping_mut(), overlay) {
        (Some(base_map), serde_norway::Value::Mapping(overlay_map)) => {
            for (key, value) in overlay_map {
                let merged_value = match base_map.remove(&key) {
                    Some(old) => merged(old, value),
                    None => value,
                };
                base_map.insert(key, merged_value);
            }
            base
        }
        (_, overlay) => overlay,
    }
}

/// Whether a label selector's `matchLabels` (and nothing else) select pods with these labels.
fn selects(match_labels: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
    match_labels.is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Each volume of a pod and what it holds: `configMap/<name>`, `secret/<name>` or `emptyDir`.
fn volume_sources(pod: &PodSpec) -> BTreeMap<String, String> {
    pod.volumes
        .iter()
        .flatten()
        .map(|v| {
            let source = match (&v.config_map, &v.secret, &v.empty_dir) {
                (Some(c), None, None) => format!("configMap/{}", c.name),
                (None, Some(s), None) => format!("secret/{}", s.secret_name.as_deref().unwrap_or_default()),
                (None, None, Some(_)) => "emptyDir".to_owned(),
                _ => panic!("volume {} is of a kind muster's pod does not use", v.name),
            };
            (v.name.clone(), source)
        })
        .collect()
}

/// Where `c` mounts the volume holding `source` (see [`volume_sources`]); a mount of it must be read-only.
fn mount_of(pod: &PodSpec, c: &Container, source: &str) -> Option<String> {
    let volumes = volume_sources(pod);
    let mounts: Vec<_> =
        c.volume_mounts.iter().flatten().filter(|m| volumes.get(&m.name).map(String::as_str) == Some(source)).collect();
    assert!(mounts.len() <= 1, "{} mounts {source} more than once", c.name);
    let mount = mounts.first()?;
    assert_eq!(mount.read_only, Some(true), "{} mounts {source} read-only", c.name);
    Some(mount.mount_path.clone())
}

/// The port of `<section>.listen` (`host:port`) in muster's configuration.
fn listen_port(config: &serde_norway::Value, section: &str) -> i32 {
    let listen = config[section]["listen"].as_str().unwrap_or_else(|| panic!("{section}.listen is set"));
    let (_, port) = listen.rsplit_once(':').unwrap_or_else(|| panic!("{section}.listen {listen} has a port"));
    port.parse().unwrap_or_else(|e| panic!("{section}.listen {listen}: {e}"))
}

/// A KubeSchedulerConfiguration from config/ as a sidecar uses it: without `clientConnection.kubeconfig` (the
/// in-cluster configuration, the pod's ServiceAccount).
fn without_kubeconfig(mut config: serde_norway::Value) -> serde_norway::Value {
    let client_connection = config
        .get_mut("clientConnection")
        .and_then(|c| c.as_mapping_mut())
        .expect("the configuration in config/ sets clientConnection");
    client_connection.remove("kubeconfig");
    if client_connection.is_empty() {
        config.as_mapping_mut().expect("a mapping").remove("clientConnection");
    }
    config
}

/// The two KubeSchedulerConfigurations in config/ differ by exactly the TLS to muster: the https URL of the same
/// address, `enableHTTPS`, and `tlsConfig` naming the files `muster certs` writes.
#[test]
fn the_mtls_scheduler_config_is_the_plain_one_with_tls() {
    let plain = config_file("config/kube-scheduler.yaml");
    let mtls = config_file("config/kube-scheduler-mtls.yaml");
    let plain_url = plain["extenders"][0]["urlPrefix"].as_str().expect("urlPrefix");
    let address = plain_url.strip_prefix("http://").expect("the plain form is http");
    let mut expected = plain.clone();
    let extender = &mut expected["extenders"][0];
    extender["urlPrefix"] = format!("https://{address}").into();
    extender["enableHTTPS"] = true.into();
    extender["tlsConfig"] = yaml("{caFile: /certs/ca.crt, certFile: /certs/client.crt, keyFile: /certs/client.key}");
    assert_eq!(mtls, expected);
    // The plain form calls muster's default extender address: loopback, the only place plain HTTP is accepted.
    let muster = config_file("config/muster.yaml");
    let listen = muster["extender"]["listen"].as_str().expect("extender.listen");
    let prefix = muster["urlPrefix"].as_str().expect("urlPrefix");
    assert_eq!(format!("{listen}{prefix}"), address);
    assert!(listen.starts_with("127.0.0.1:"), "config/muster.yaml listens on loopback: {listen}");
    assert!(muster["extender"].get("tls").is_none(), "config/muster.yaml shows tls commented out");
}

/// The Deployment runs what the README says: two replicas (a leader and a standby) of one hardened pod, as the
/// ServiceAccount the RBAC binds, spread over nodes, above workload priority, with the configurations in config/
/// plus exactly what high availability changes (leader election on both sides; kube-scheduler calls muster
/// through the Service over mutual TLS, with the Secrets deploy/cert-manager/ issues), a Service that sends
/// kube-scheduler to the Ready replica, and a disruption budget.
#[test]
fn the_deployment_is_two_hardened_replicas_with_the_configs_from_config() {
    let docs = deploy_documents();
    let deployment: Deployment = typed(&docs, "Deployment", "muster");
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE));
    let spec = deployment.spec.as_ref().expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(2), "a leader and a standby");
    let strategy = spec.strategy.as_ref().expect("a rollout strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate parameters");
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)), "a new pod starts before the old ones go");
    assert_eq!(
        rolling.max_unavailable,
        Some(IntOrString::String("100%".to_owned())),
        "only the leader is ever Ready: a rollout that waited for a new pod to become available before stopping the \
         old leader would wait forever"
    );
    let pod = spec.template.spec.as_ref().expect("a pod template");
    let pod_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    assert!(selects(spec.selector.match_labels.as_ref(), &pod_labels), "the Deployment selects its pods");
    assert_eq!(pod.service_account_name.as_deref(), Some(MUSTER_SERVICE_ACCOUNT));
    assert_eq!(pod.scheduler_name, None, "muster's own pod is placed by the default scheduler");
    let binding: ClusterRoleBinding = typed(&documents("deploy/rbac.yaml"), "ClusterRoleBinding", "muster");
    assert!(
        binding.subjects.unwrap_or_default().contains(&service_account_subject()),
        "the binding names the pod's ServiceAccount"
    );

    // Above every workload, below the system classes, and shipped (not a system class, which some distributions
    // admit only in kube-system).
    assert_eq!(pod.priority_class_name.as_deref(), Some(PRIORITY_CLASS));
    let class: PriorityClass = typed(&docs, "PriorityClass", PRIORITY_CLASS);
    assert_eq!(class.value, HIGHEST_USER_DEFINABLE_PRIORITY);
    assert_ne!(class.global_default, Some(true), "muster's class is not every pod's default");

    // The replicas on different nodes where the cluster allows it.
    let anti_affinity = pod.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()).expect("pod anti-affinity");
    assert!(
        anti_affinity.preferred_during_scheduling_ignored_during_execution.iter().flatten().any(|term| {
            term.pod_affinity_term.topology_key == "kubernetes.io/hostname"
                && selects(
                    term.pod_affinity_term.label_selector.as_ref().and_then(|s| s.match_labels.as_ref()),
                    &pod_labels,
                )
        }),
        "a preferred anti-affinity of the replicas per node: {anti_affinity:?}"
    );
    assert!(
        anti_affinity.required_during_scheduling_ignored_during_execution.is_none(),
        "preferred only: a one-node cluster still runs both replicas"
    );

    let muster = container(&deployment, "muster");
    assert_eq!(muster.image.as_deref(), Some("ghcr.io/muster-dev/muster:0.1.0"));
    let command: Vec<String> = muster.command.iter().chain(muster.args.iter()).flatten().cloned().collect();
    assert_eq!(command[..4], ["muster", "serve", "--config", "/etc/muster/muster.yaml"]);
    // Capacity requests for autoscalers and do-not-disrupt on running gangs, which the ClusterRole allows.
    assert_eq!(command[4..6], ["--capacity-requests=true", "--protect-gangs=true"]);
    // The admission webhook, on every replica, with the certificate muster makes into the Secret the webhook Role
    // names, for the Service the configuration calls.
    assert_eq!(
        command[6..],
        [
            "--webhook-listen",
            "0.0.0.0:9443",
            "--webhook-secret",
            WEBHOOK_SECRET,
            "--webhook-configuration",
            WEBHOOK_CONFIGURATION,
            "--webhook-hosts",
            "muster-webhook.muster-system.svc",
        ]
    );
    // The Lease's namespace and this replica's identity, from the downward API.
    let downward: BTreeMap<&str, &str> = muster
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let field = e.value_from.as_ref()?.field_ref.as_ref()?;
            Some((e.name.as_str(), field.field_path.as_str()))
        })
        .collect();
    assert_eq!(downward.get("POD_NAMESPACE"), Some(&"metadata.namespace"), "env: {:?}", muster.env);
    assert_eq!(downward.get("POD_NAME"), Some(&"metadata.name"), "env: {:?}", muster.env);
    let probe = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
        (get.path.clone().unwrap_or_default(), serde_json::to_value(&get.port).expect("a port serialises"))
    };
    // Probes on the plain health listener (the kubelet presents no client certificate).
    assert_eq!(probe(&muster.readiness_probe), ("/readyz".to_owned(), json!("health")));
    assert_eq!(probe(&muster.liveness_probe), ("/healthz".to_owned(), json!("health")));
    let ports: BTreeMap<&str, i32> =
        muster.ports.iter().flatten().map(|p| (p.name.as_deref().unwrap_or_default(), p.container_port)).collect();
    assert_eq!(ports, BTreeMap::from([("https", 8443), ("health", 8081), ("metrics", 9090), ("webhook", 9443)]));

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

    // The Service kube-scheduler calls muster through: it selects the pods and targets the extender port, and only
    // that one (health and metrics are reached on each pod).
    let service: Service = typed(&docs, "Service", "muster");
    assert_eq!(service.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE));
    let service_spec = service.spec.expect("a Service spec");
    assert!(selects(service_spec.selector.as_ref(), &pod_labels), "the Service selects the pods");
    assert_ne!(service_spec.publish_not_ready_addresses, Some(true), "the Service must route to the Ready leader only");
    let service_ports = service_spec.ports.expect("ports");
    assert_eq!(service_ports.len(), 1, "the Service exposes the extender port alone: {service_ports:?}");
    let service_port = &service_ports[0];
    assert_eq!((service_port.name.as_deref(), service_port.port), (Some("https"), 8443));
    assert_eq!(service_port.target_port, Some(IntOrString::String("https".to_owned())));

    // The Secrets, mounted read-only: muster's server certificate into muster, the client certificate into
    // kube-scheduler, each only where it is needed.
    let volumes = volume_sources(pod);
    assert_eq!(volumes["muster-config"], "configMap/muster-config");
    assert_eq!(volumes["kube-scheduler-config"], "configMap/muster-kube-scheduler-config");
    assert_eq!(mount_of(pod, muster, "configMap/muster-config"), Some("/etc/muster".to_owned()));
    assert_eq!(
        mount_of(pod, scheduler, "configMap/muster-kube-scheduler-config"),
        Some("/etc/kubernetes/muster-scheduler".to_owned())
    );
    let server_tls = mount_of(pod, muster, &format!("secret/{SERVER_TLS_SECRET}"));
    assert_eq!(server_tls.as_deref(), Some(SERVER_TLS_DIR), "muster mounts {SERVER_TLS_SECRET}");
    let client_tls = mount_of(pod, scheduler, &format!("secret/{CLIENT_TLS_SECRET}"))
        .unwrap_or_else(|| panic!("kube-scheduler mounts {CLIENT_TLS_SECRET}"));
    assert_eq!(
        mount_of(pod, scheduler, &format!("secret/{SERVER_TLS_SECRET}")),
        None,
        "the server key stays in muster"
    );
    assert_eq!(
        mount_of(pod, muster, &format!("secret/{CLIENT_TLS_SECRET}")),
        None,
        "the client key stays in kube-scheduler"
    );
    assert!(
        scheduler
            .command
            .iter()
            .flatten()
            .any(|a| a == "--config=/etc/kubernetes/muster-scheduler/kube-scheduler.yaml"),
        "kube-scheduler reads the mounted configuration: {:?}",
        scheduler.command
    );

    // The configurations are config/'s plus exactly what running two replicas changes: leader election, mutual
    // TLS on the pod IP with the mounted Secret (cert-manager's key names).
    let muster_config = config_map_entry(&docs, "muster-config", "muster.yaml");
    let ha = yaml(&format!(
        "{{leaderElection: {{enabled: true}}, extender: {{listen: '0.0.0.0:8443', tls: {{\
         certFile: {SERVER_TLS_DIR}/tls.crt, keyFile: {SERVER_TLS_DIR}/tls.key, clientCAFile: {SERVER_TLS_DIR}/ca.crt}}}}}}"
    ));
    assert_eq!(muster_config, merged(config_file("config/muster.yaml"), ha));
    // Each listener on its container port.
    for (section, port) in [("extender", "https"), ("health", "health"), ("metrics", "metrics")] {
        assert_eq!(listen_port(&muster_config, section), ports[port], "{section}.listen is on the port named {port}");
    }
    let mut expected_scheduler = without_kubeconfig(config_file("config/kube-scheduler-mtls.yaml"));
    // The sidecars elect one active scheduler on the Lease the bootstrap role system:kube-scheduler allows (its
    // name, in any namespace), in muster's namespace: never the cluster's own scheduler's Lease in kube-system.
    expected_scheduler["leaderElection"] =
        yaml(&format!("{{leaderElect: true, resourceNamespace: {MUSTER_NAMESPACE}, resourceName: kube-scheduler}}"));
    // The active scheduler may run next to the standby muster: it calls muster through the Service, by a name in
    // the server certificate, verifying it with the Secret's CA and presenting the Secret's client certificate.
    let prefix = muster_config["urlPrefix"].as_str().expect("urlPrefix");
    let service_host =
        format!("{}.{}.svc", service.metadata.name.as_deref().expect("a named Service"), MUSTER_NAMESPACE);
    expected_scheduler["extenders"][0]["urlPrefix"] =
        format!("https://{service_host}:{}{prefix}", service_port.port).into();
    expected_scheduler["extenders"][0]["tlsConfig"] = yaml(&format!(
        "{{caFile: {client_tls}/ca.crt, certFile: {client_tls}/tls.crt, keyFile: {client_tls}/tls.key}}"
    ));
    let scheduler_config = config_map_entry(&docs, "muster-kube-scheduler-config", "kube-scheduler.yaml");
    assert_eq!(scheduler_config, expected_scheduler);
    assert_eq!(scheduler_config["profiles"][0]["schedulerName"], muster_config["schedulerName"]);
    assert_eq!(scheduler_config["extenders"][0]["enableHTTPS"], serde_norway::Value::Bool(true));

    // cert-manager (deploy/cert-manager/, applied separately) issues exactly these Secrets: the server certificate
    // for the name kube-scheduler calls, a client certificate, both from one CA muster alone uses.
    let certificates = documents("deploy/cert-manager/certificates.yaml");
    let secret_of = |name: &str| -> Value {
        let certificate = certificates
            .iter()
            .find(|d| kind_of(d) == "Certificate" && d["spec"]["secretName"] == name)
            .unwrap_or_else(|| panic!("no Certificate in deploy/cert-manager/ writes the Secret {name}"));
        assert_eq!(certificate["metadata"]["namespace"], MUSTER_NAMESPACE);
        certificate["spec"].clone()
    };
    let server = secret_of(SERVER_TLS_SECRET);
    let dns_names: Vec<&str> =
        server["dnsNames"].as_array().expect("dnsNames").iter().filter_map(Value::as_str).collect();
    assert!(
        dns_names.contains(&service_host.as_str()),
        "{SERVER_TLS_SECRET} is valid for {service_host}: {dns_names:?}"
    );
    assert!(dns_names.contains(&format!("{service_host}.cluster.local").as_str()));
    assert!(server["usages"].as_array().expect("usages").contains(&json!("server auth")));
    let client = secret_of(CLIENT_TLS_SECRET);
    assert!(client["usages"].as_array().expect("usages").contains(&json!("client auth")));
    assert_eq!(server["issuerRef"], client["issuerRef"], "one CA signs both: each side verifies the other with it");
    let issuer = certificates
        .iter()
        .find(|d| kind_of(d) == "Issuer" && d["metadata"]["name"] == server["issuerRef"]["name"])
        .expect("the Issuer of muster's certificates");
    let ca = secret_of(issuer["spec"]["ca"]["secretName"].as_str().expect("a CA Issuer"));
    assert_eq!(ca["isCA"], json!(true));
    let issued_from_ca: Vec<&str> = certificates
        .iter()
        .filter(|d| kind_of(d) == "Certificate" && d["spec"]["issuerRef"] == server["issuerRef"])
        .map(|d| d["spec"]["secretName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(issued_from_ca, [SERVER_TLS_SECRET, CLIENT_TLS_SECRET], "muster accepts any client its CA signed");

    // The disruption budget covers the pods; a pod that is not Ready (the standby) never blocks an eviction.
    let budget: PodDisruptionBudget = typed(&docs, "PodDisruptionBudget", "muster");
    assert_eq!(budget.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE));
    let budget_spec = budget.spec.expect("a PodDisruptionBudget spec");
    assert_eq!(budget_spec.min_available, Some(IntOrString::Int(1)));
    assert_eq!(budget_spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
    assert!(selects(budget_spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()), &pod_labels));
}

/// A NetworkPolicy port (a number or a container port's name) as a number of `c`'s ports.
fn policy_port(port: &IntOrString, c: &Container) -> i32 {
    match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("the NetworkPolicy names port {name}, which {} does not have", c.name))
                .container_port
        }
    }
}

/// The NetworkPolicy (applied with deploy/) isolates muster's pods for ingress: the extender port admits only the
/// muster pods themselves (the kube-scheduler sidecars), health admits anyone (the kubelet), metrics a namespace
/// (Prometheus'). Every port muster listens on is admitted by some rule, and egress is not restricted.
#[test]
fn the_network_policy_admits_only_muster_pods_to_the_extender_port() {
    let docs = deploy_documents();
    let deployment: Deployment = typed(&docs, "Deployment", "muster");
    let spec = deployment.spec.as_ref().expect("a Deployment spec");
    let pod_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let muster = container(&deployment, "muster");
    let named = |name: &str| policy_port(&IntOrString::String(name.to_owned()), muster);
    let (extender, health, metrics) = (named("https"), named("health"), named("metrics"));

    let policy: NetworkPolicy = typed(&docs, "NetworkPolicy", "muster");
    assert_eq!(policy.metadata.namespace.as_deref(), Some(MUSTER_NAMESPACE));
    let policy_spec = policy.spec.expect("a NetworkPolicy spec");
    assert!(
        selects(policy_spec.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref()), &pod_labels),
        "the NetworkPolicy selects muster's pods"
    );
    assert_eq!(
        policy_spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..]),
        "ingress only: muster must reach the API server, whose address varies"
    );
    let rules = policy_spec.ingress.unwrap_or_default();
    // Which rules admit traffic to a port: those listing it, and those listing no port at all.
    let admitting = |port: i32| -> Vec<&k8s_openapi::api::networking::v1::NetworkPolicyIngressRule> {
        rules
            .iter()
            .filter(|rule| match &rule.ports {
                None => true,
                Some(ports) => ports.iter().any(|p| {
                    assert!(p.end_port.is_none(), "no port ranges: {p:?}");
                    assert_eq!(p.protocol.as_deref(), Some("TCP"), "{p:?}");
                    p.port.as_ref().is_some_and(|n| policy_port(n, muster) == port)
                }),
            })
            .collect()
    };

    let to_extender = admitting(extender);
    assert!(!to_extender.is_empty(), "kube-scheduler must reach the extender port {extender}");
    for rule in to_extender {
        let peers = rule.from.as_deref().unwrap_or_default();
        assert!(!peers.is_empty(), "a rule admitting anyone to the extender port: {rule:?}");
        for peer in peers {
            assert!(peer.ip_block.is_none() && peer.namespace_selector.is_none(), "not only muster's pods: {peer:?}");
            let selector = peer.pod_selector.as_ref().expect("a pod selector");
            assert!(selector.match_expressions.is_none(), "{selector:?}");
            assert_eq!(
                selector.match_labels.as_ref(),
                spec.selector.match_labels.as_ref(),
                "the extender port admits exactly the Deployment's pods"
            );
        }
    }
    let to_health = admitting(health);
    assert!(
        to_health.iter().any(|rule| rule.from.as_deref().unwrap_or_default().is_empty()),
        "the probes come from the node: the health port admits anyone"
    );
    let to_metrics = admitting(metrics);
    assert!(!to_metrics.is_empty(), "Prometheus must reach the metrics port {metrics}");
    for rule in to_metrics {
        let peers = rule.from.as_deref().unwrap_or_default();
        assert!(!peers.is_empty(), "the metrics port admits a namespace, not anyone: {rule:?}");
        assert!(peers.iter().all(|p| p.namespace_selector.is_some() || p.pod_selector.is_some()), "{peers:?}");
    }
}

/// The single-replica setup (deploy/single-replica/, not applied with deploy/): one pod whose init container makes
/// the certificates, kube-scheduler calling the muster beside it on loopback over mutual TLS, the configurations
/// config/'s plus exactly that.
#[test]
fn the_single_replica_setup_calls_the_muster_beside_it_with_certificates_made_at_start() {
    let docs = documents("deploy/single-replica/muster.yaml");
    let deployment: Deployment = typed(&docs, "Deployment", "muster");
    let spec = deployment.spec.as_ref().expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(1), "a second replica's scheduler could call a standby muster");
    assert_eq!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("Recreate"));
    let pod = spec.template.spec.as_ref().expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some(MUSTER_SERVICE_ACCOUNT));
    assert_eq!(volume_sources(pod)["certs"], "emptyDir");
    let init = pod.init_containers.as_deref().unwrap_or_default();
    assert_eq!(init.len(), 1);
    let command: Vec<String> = init[0].command.iter().chain(init[0].args.iter()).flatten().cloned().collect();
    assert_eq!(command, ["muster", "certs", "--out", "/certs", "--host", "127.0.0.1"]);
    let writable: Vec<_> =
        init[0].volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only)).collect();
    assert_eq!(writable, [("certs", "/certs", None)]);
    let muster = container(&deployment, "muster");
    let scheduler = container(&deployment, "kube-scheduler");
    for c in [muster, scheduler] {
        assert_eq!(mount_of(pod, c, "emptyDir"), Some("/certs".to_owned()), "{} reads the certificates", c.name);
    }

    let muster_config = config_map_entry(&docs, "muster-config", "muster.yaml");
    let overlay = yaml(
        "{leaderElection: {enabled: true}, extender: {tls: {certFile: /certs/tls.crt, keyFile: /certs/tls.key, \
         clientCAFile: /certs/ca.crt}}}",
    );
    assert_eq!(muster_config, merged(config_file("config/muster.yaml"), overlay));
    let mut expected_scheduler = without_kubeconfig(config_file("config/kube-scheduler-mtls.yaml"));
    expected_scheduler["leaderElection"] =
        yaml(&format!("{{leaderElect: true, resourceNamespace: {MUSTER_NAMESPACE}, resourceName: kube-scheduler}}"));
    let scheduler_config = config_map_entry(&docs, "muster-kube-scheduler-config", "kube-scheduler.yaml");
    assert_eq!(scheduler_config, expected_scheduler);
    let url = format!(
        "https://{}{}",
        muster_config["extender"]["listen"].as_str().expect("extender.listen"),
        muster_config["urlPrefix"].as_str().expect("urlPrefix")
    );
    assert_eq!(scheduler_config["extenders"][0]["urlPrefix"].as_str(), Some(url.as_str()));
    let ports: Vec<i32> = muster.ports.iter().flatten().map(|p| p.container_port).collect();
    for section in ["health", "metrics"] {
        assert!(ports.contains(&listen_port(&muster_config, section)), "{section}.listen is a container port");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Against the real API server
// ---------------------------------------------------------------------------------------------------------------

/// Every call muster makes, as muster, with only its shipped roles bound (the ClusterRole and the Role for its
/// Lease): each is allowed. And a few that would be dangerous are refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_roles_allow_every_call_muster_makes_and_refuse_the_rest() {
    let control_plane = ControlPlane::builder().rbac().user(MUSTER_USER, MUSTER_GROUPS).start().await;
    let admin = control_plane.client();
    install_crds(&admin).await;
    control_plane.create_namespace(MUSTER_NAMESPACE).await;
    for doc in muster_role_documents().iter().chain(&webhook_role_documents()) {
        apply(&admin, doc).await;
    }
    let muster = control_plane.client_for_user(MUSTER_USER).await;
    wait_until_muster_can_list_nodes(&muster).await;
    wait_until_muster_can_read_its_lease(&muster).await;
    let webhook_secrets = Api::<Secret>::namespaced(muster.clone(), MUSTER_NAMESPACE);
    wait_until("the webhook RoleBinding reaches the authorizer", DEFAULT_TIMEOUT, || async {
        webhook_secrets.get_opt(WEBHOOK_SECRET).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;

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
    let volcano_queues = muster::api::volcano::queue_resource();
    let volcano_groups = muster::api::volcano::podgroup_resource();
    list_and_watch("Volcano queues", Api::<DynamicObject>::all_with(muster.clone(), &volcano_queues)).await;
    list_and_watch("Volcano podgroups", Api::<DynamicObject>::all_with(muster.clone(), &volcano_groups)).await;
    let volcano_queue: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue", "metadata": {"name": "team-a"},
        "spec": {"weight": 1}
    }))
    .expect("a Volcano Queue");
    Api::<DynamicObject>::all_with(admin.clone(), &volcano_queues)
        .create(&PostParams::default(), &volcano_queue)
        .await
        .expect("the admin creates a Volcano Queue");
    allowed(
        "patch a Volcano queue's status",
        Api::<DynamicObject>::all_with(muster.clone(), &volcano_queues)
            .patch_status("team-a", &PatchParams::default(), &merge_patch(json!({"status": {"state": "Open"}})))
            .await,
    );
    forbidden(
        "patch a Volcano queue's spec",
        Api::<DynamicObject>::all_with(muster.clone(), &volcano_queues)
            .patch("team-a", &PatchParams::default(), &merge_patch(json!({"spec": {"weight": 9}})))
            .await,
    );

    // Pods: the retry annotation, binding, eviction.
    let pods = Api::<Pod>::namespaced(muster.clone(), ns);
    let annotation = merge_patch(json!({"metadata": {"annotations": {"muster.dev/retry": "2025-01-01T00:00:00Z"}}}));
    let patched =
        allowed("patch a pod's annotations", pods.patch("pending", &PatchParams::default(), &annotation).await);
    assert_eq!(patched.metadata.annotations.unwrap_or_default()["muster.dev/retry"], "2025-01-01T00:00:00Z");
    allowed("get a pod", pods.get("pending").await);
    // A Spark driver's configuration, read by name.
    let config_maps = Api::<ConfigMap>::namespaced(admin.clone(), ns);
    let conf: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "spark-drv-1-conf-map"}, "data": {"spark.properties": "spark.executor.cores=2\n"}
    }))
    .expect("a ConfigMap");
    config_maps.create(&PostParams::default(), &conf).await.expect("the admin creates a ConfigMap");
    let read = allowed(
        "get a Spark driver's ConfigMap",
        Api::<ConfigMap>::namespaced(muster.clone(), ns).get("spark-drv-1-conf-map").await,
    );
    assert_eq!(read.data.unwrap_or_default()["spark.properties"], "spark.executor.cores=2\n");
    // ... and the SparkApplication of an operator-launched driver. The Spark Operator's CRD is not installed
    // here: authorized, the API server answers 404 (forbidden, it would answer 403).
    let resource = muster::api::spark_application_resource();
    let apps = Api::<kube::api::DynamicObject>::namespaced_with(muster.clone(), ns, &resource);
    match apps.get("etl-daily-orders").await {
        Err(Error::Api(e)) if e.code == 404 => {}
        other => panic!("get a SparkApplication: expected 404 (allowed, no such resource), got {other:?}"),
    }
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

    // Leader election, as the lease manager does it in muster's namespace: read the Lease (absent at first), create
    // it, take it (server-side apply), renew and release it (strategic merge), and delete it.
    let leases = Api::<Lease>::namespaced(muster.clone(), MUSTER_NAMESPACE);
    assert!(allowed("get its lease", leases.get_opt(LEASE_NAME).await).is_none(), "no Lease before muster makes it");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": LEASE_NAME, "namespace": MUSTER_NAMESPACE}}))
        .expect("a Lease");
    allowed("create its lease", leases.create(&PostParams::default(), &lease).await);
    let take = Patch::Apply(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"holderIdentity": "muster-0", "leaseDurationSeconds": 15,
                 "acquireTime": "2025-01-01T00:00:00.000000Z", "renewTime": "2025-01-01T00:00:00.000000Z"},
    }));
    let taken = allowed("take its lease", leases.patch(LEASE_NAME, &PatchParams::apply("muster-0"), &take).await);
    assert_eq!(taken.spec.and_then(|s| s.holder_identity).as_deref(), Some("muster-0"));
    let renew = Patch::Strategic(json!({"spec": {"renewTime": "2025-01-01T00:00:10.000000Z", "leaseTransitions": 1}}));
    allowed("renew its lease", leases.patch(LEASE_NAME, &PatchParams::default(), &renew).await);
    let release = Patch::Strategic(json!({"spec": {"holderIdentity": null, "renewTime": null, "acquireTime": null}}));
    allowed("release its lease", leases.patch(LEASE_NAME, &PatchParams::default(), &release).await);
    allowed("read its lease", leases.get(LEASE_NAME).await);
    allowed("delete its lease", leases.delete(LEASE_NAME, &DeleteParams::default()).await);

    // The admission webhook's certificate: its Secret read (absent at first), made, renewed; the shipped
    // configuration read and its caBundle patched (a strategic merge by webhook name, as muster does).
    assert!(allowed("get its webhook Secret", webhook_secrets.get_opt(WEBHOOK_SECRET).await).is_none());
    let tls_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": WEBHOOK_SECRET, "namespace": MUSTER_NAMESPACE}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "", "tls.key": "", "ca.crt": ""},
    }))
    .expect("a Secret");
    let made = allowed("create its webhook Secret", webhook_secrets.create(&PostParams::default(), &tls_secret).await);
    allowed("renew its webhook Secret", webhook_secrets.replace(WEBHOOK_SECRET, &PostParams::default(), &made).await);
    let configuration = deploy_documents()
        .into_iter()
        .find(|d| kind_of(d) == "MutatingWebhookConfiguration")
        .expect("deploy/ ships the webhook's configuration");
    apply(&admin, &configuration).await;
    let configurations = Api::<MutatingWebhookConfiguration>::all(muster.clone());
    let read = allowed("get its webhook configuration", configurations.get(WEBHOOK_CONFIGURATION).await);
    let names: Vec<String> = read.webhooks.iter().flatten().map(|w| w.name.clone()).collect();
    let bundle = Patch::Strategic(json!({"webhooks": names.iter().map(|name| json!({
        "name": name, "clientConfig": {"caBundle": "Y2E="},
    })).collect::<Vec<_>>()}));
    allowed(
        "patch its webhook configuration's caBundle",
        configurations.patch(WEBHOOK_CONFIGURATION, &PatchParams::default(), &bundle).await,
    );
    forbidden("list secrets in its namespace", webhook_secrets.list(&ListParams::default()).await);
    forbidden("read another secret in its namespace", webhook_secrets.get(SERVER_TLS_SECRET).await);
    forbidden("delete its webhook Secret", webhook_secrets.delete(WEBHOOK_SECRET, &DeleteParams::default()).await);
    forbidden("list webhook configurations", configurations.list(&ListParams::default()).await);
    forbidden("read another webhook configuration", configurations.get("someone-elses").await);
    forbidden(
        "delete its webhook configuration",
        configurations.delete(WEBHOOK_CONFIGURATION, &DeleteParams::default()).await,
    );

    // /state (stateAccess: kubernetes): who a caller's bearer token belongs to, then whether that identity may list
    // PodGroups in the namespace asked for.
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": control_plane.admin_token()}})).expect("a TokenReview");
    let reviewed = allowed(
        "create a tokenreview",
        Api::<TokenReview>::all(muster.clone()).create(&PostParams::default(), &review).await,
    );
    let user = reviewed.status.and_then(|s| s.user).and_then(|u| u.username);
    assert_eq!(user.as_deref(), Some(support::ADMIN_USER), "the API server names the token's user");
    let access: SubjectAccessReview = serde_json::from_value(json!({"spec": {
        "user": support::ADMIN_USER, "groups": ["system:masters"],
        "resourceAttributes": {
            "group": "scheduling.muster.dev", "resource": "podgroups", "verb": "list", "namespace": ns,
        },
    }}))
    .expect("a SubjectAccessReview");
    let decided = allowed(
        "create a subjectaccessreview",
        Api::<SubjectAccessReview>::all(muster.clone()).create(&PostParams::default(), &access).await,
    );
    assert!(decided.status.is_some_and(|s| s.allowed), "the admin may list PodGroups");

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
    forbidden(
        "watch configmaps",
        Api::<ConfigMap>::all(muster.clone()).watch(&WatchParams::default().timeout(1), "0").await.map(|_| ()),
    );
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
    // Leases: only its own, only in its namespace. (Creating one of another name there is allowed: RBAC cannot
    // restrict a create by name.)
    let other: Lease =
        serde_json::from_value(json!({"metadata": {"name": "someone-else", "namespace": MUSTER_NAMESPACE}}))
            .expect("a Lease");
    allowed(
        "(admin) create another lease",
        Api::<Lease>::namespaced(admin.clone(), MUSTER_NAMESPACE).create(&PostParams::default(), &other).await,
    );
    forbidden("read another lease", leases.get("someone-else").await);
    let hijack = Patch::Strategic(json!({"spec": {"holderIdentity": "muster-0"}}));
    forbidden("take another lease", leases.patch("someone-else", &PatchParams::default(), &hijack).await);
    forbidden("delete another lease", leases.delete("someone-else", &DeleteParams::default()).await);
    forbidden("list leases", leases.list(&ListParams::default()).await);
    let elsewhere = Api::<Lease>::namespaced(muster.clone(), ns);
    let lease_elsewhere: Lease =
        serde_json::from_value(json!({"metadata": {"name": LEASE_NAME, "namespace": ns}})).expect("a Lease");
    forbidden("create a lease outside its namespace", elsewhere.create(&PostParams::default(), &lease_elsewhere).await);
    forbidden("read a lease of its name outside its namespace", elsewhere.get(LEASE_NAME).await);
    forbidden(
        "read the cluster scheduler's lease",
        Api::<Lease>::namespaced(muster.clone(), "kube-system").get("kube-scheduler").await,
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
    identity: String,
    child: Child,
    log_path: PathBuf,
}

impl MusterProcess {
    /// Runs `muster serve --config <config>` with its three listeners on the given loopback ports, the test's URL
    /// prefix and scheduler name, and the environment the Deployment gives each replica from the downward API: its
    /// identity (`POD_NAME`) and namespace (`POD_NAMESPACE`, where the leader-election Lease lives).
    fn spawn(config: &Path, kubeconfig: &Path, ports: ReplicaPorts, log_dir: &Path, identity: &str) -> MusterProcess {
        let log_path = log_dir.join(format!("muster-serve-{identity}.log"));
        let log = std::fs::File::create(&log_path).expect("cannot create the muster log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{}", ports.extender)])
            .args(["--health-listen", &format!("127.0.0.1:{}", ports.health)])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", ports.metrics)])
            .args(["--url-prefix", "/muster", "--scheduler-name", "muster"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", MUSTER_NAMESPACE)
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
        MusterProcess { identity: identity.to_owned(), child, log_path }
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
            panic!("muster serve {} exited ({status}); its log:\n{}", self.identity, self.log());
        }
    }

    /// SIGKILL: no lease release, no goodbye (what a node failure or the OOM killer does).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `/readyz` answers 200 on the health `port`, failing if the process exits or `timeout` passes.
    async fn wait_ready(&mut self, port: u16, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.assert_running();
            let last = match http_get(port, "/readyz").await {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            assert!(
                start.elapsed() < timeout,
                "/readyz of muster {} never answered 200 within {timeout:?}; last: {last}",
                self.identity
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that nothing the process logged is an authorization failure.
    fn assert_never_refused(&self) {
        let log = self.log();
        let refused = forbidden_lines(&log);
        assert!(refused.is_empty(), "muster {} was refused by RBAC:\n{}", self.identity, refused.join("\n"));
    }
}

impl Drop for MusterProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("\n----- last lines of muster serve {} -----", self.identity);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("----- end of muster serve {} -----", self.identity);
        }
        self.kill();
    }
}

/// Where one replica's listeners are: the extender verbs (mutual TLS), /healthz and /readyz, /metrics and /state.
#[derive(Debug, Clone, Copy)]
struct ReplicaPorts {
    extender: u16,
    health: u16,
    metrics: u16,
}

impl ReplicaPorts {
    fn free() -> ReplicaPorts {
        ReplicaPorts { extender: free_loopback_port(), health: free_loopback_port(), metrics: free_loopback_port() }
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

/// Stands in for the Service `muster` on loopback: each connection is forwarded, as raw TCP (the TLS handshake is
/// kube-scheduler's and muster's), to the extender port of a backend whose `/readyz` on its health port answers
/// 200 when the connection arrives (a Service routes only to Ready endpoints, and only the leader is Ready, as the
/// kubelet's readiness probe says), and closed at once when none is, as a connection to a Service without ready
/// endpoints is refused.
struct ReadyEndpointsService {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyEndpointsService {
    /// `backends`: (extender port, health port) of each replica.
    async fn start(backends: Vec<(u16, u16)>) -> ReadyEndpointsService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("a bound listener has an address").port();
        let backends = Arc::new(backends);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let backends = backends.clone();
                tokio::spawn(async move {
                    for &(extender, health) in backends.iter() {
                        if !matches!(http_get(health, "/readyz").await, Ok((200, _))) {
                            continue;
                        }
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", extender)).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                    // No ready backend: dropping the connection closes it.
                });
            }
        });
        ReadyEndpointsService { port, task }
    }
}

impl Drop for ReadyEndpointsService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The holder of a Lease, read as the admin (`None` when the Lease does not exist or nobody holds it).
async fn lease_holder(admin: &Client, namespace: &str, name: &str) -> Result<Option<String>, String> {
    let lease = Api::<Lease>::namespaced(admin.clone(), namespace).get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

async fn wait_for_lease_holder(admin: &Client, namespace: &str, name: &str, holder: &str) {
    wait_until(&format!("Lease {namespace}/{name} is held by {holder}"), DEFAULT_TIMEOUT, || async {
        match lease_holder(admin, namespace, name).await? {
            Some(h) if h == holder => Ok(()),
            other => Err(format!("held by {other:?}")),
        }
    })
    .await;
}

/// Creates a PodGroup of `members` identical members (template `w`) and its pods, scheduled by muster, and waits
/// until every pod is bound and muster has recorded the gang's phase in its status.
async fn run_gang(admin: &Client, namespace: &str, name: &str, members: u32, cpu: &str, memory: &str) {
    let group: PodGroup = serde_json::from_value(json!({
        "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minMember": members, "memberTemplates": [
            {"name": "w", "minMember": members, "resources": {"cpu": cpu, "memory": memory}},
        ]},
    }))
    .expect("a PodGroup");
    let groups = Api::<PodGroup>::namespaced(admin.clone(), namespace);
    groups.create(&PostParams::default(), &group).await.expect("create the PodGroup");
    let pods = Api::<Pod>::namespaced(admin.clone(), namespace);
    for i in 0..members {
        let mut pod = test_pod(&format!("{name}-{i}"), cpu, memory);
        pod.metadata.labels = Some(BTreeMap::from([("muster.dev/pod-group".to_owned(), name.to_owned())]));
        pod.metadata.annotations = Some(BTreeMap::from([("muster.dev/member-template".to_owned(), "w".to_owned())]));
        pod.spec.as_mut().expect("test_pod has a spec").scheduler_name = Some("muster".to_owned());
        pods.create(&PostParams::default(), &pod).await.expect("create a gang member");
    }
    let selector = format!("muster.dev/pod-group={name}");
    let what = format!("are {members} bound pods");
    let bound = wait_for_pods(admin, namespace, &selector, &what, |pods| {
        pods.len() == members as usize && pods.iter().all(|p| bound_node(p).is_some())
    })
    .await;
    assert_eq!(bound.len(), members as usize);
    // muster wrote what its RBAC is for: the gang's status (podgroups/status). Read back as the admin: muster itself
    // never reads single objects (it watches).
    wait_until(&format!("muster records the phase of gang {name}"), DEFAULT_TIMEOUT, || async {
        let group = groups.get(name).await.map_err(|e| e.to_string())?;
        group.status.as_ref().and_then(|s| s.phase).map(|_| ()).ok_or_else(|| format!("{:?}", group.status))
    })
    .await;
}

/// How long a standby gets to take over after the leader is killed: the killed leader's Lease must expire
/// (leaderElection.leaseDuration, 15 s by default, from its last renewal), then the standby takes it, syncs and
/// restores admissions from PodGroup status; with room for a loaded machine.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);

/// The whole product with the shipped deploy/ (RBAC, both configurations, leader election on both sides, mutual
/// TLS with certificates from `muster certs` in place of the Secrets): two `muster serve` replicas elect a leader
/// on the Lease in muster's namespace, a kube-scheduler with the configuration from the ConfigMap (electing its own
/// leader on its Lease there) reaches the leader's extender port through a stand-in for the Service that follows
/// the replicas' readiness on their health ports, and a gang of two is admitted and bound. Then the leader is
/// killed: the standby takes the Lease, becomes Ready, and the next gang binds through the same scheduler,
/// untouched. No authorization failure on any side.
///
/// The scheduler acts as the pod's ServiceAccount, with every shipped binding. muster acts as a user bound to
/// muster's own roles alone (the shipped ClusterRole and Role bindings with their subject replaced): the
/// ServiceAccount also holds kube-scheduler's roles (pods/binding and leases among them), which would hide a rule
/// muster's own roles lack.
#[tokio::test(flavor = "multi_thread")]
async fn muster_serve_and_its_sidecar_scheduler_bind_gangs_across_a_failover_with_only_the_shipped_rbac() {
    let mut control_plane =
        ControlPlane::builder().rbac().user(MUSTER_USER, MUSTER_GROUPS).user(MUSTER_ROLE_ONLY_USER, &[]).start().await;
    let admin = control_plane.client();
    // The install, as the README gives it: the CRDs, then deploy/ (no controller-manager runs, so the Deployment
    // stays inert; the test runs its two containers' programs itself).
    install_crds(&admin).await;
    for doc in deploy_documents() {
        apply(&admin, &doc).await;
    }
    // The single-replica setup is valid too (strict validation, dry run: its objects have deploy/'s names).
    for doc in documents("deploy/single-replica/muster.yaml") {
        apply_with(&admin, &doc, true).await;
    }
    for doc in muster_role_documents() {
        if !matches!(kind_of(&doc), "ClusterRoleBinding" | "RoleBinding") {
            continue;
        }
        let mut binding = doc.clone();
        binding["metadata"]["name"] = format!("{}-role-only", name_of(&doc)).into();
        binding["subjects"] =
            json!([{"kind": "User", "name": MUSTER_ROLE_ONLY_USER, "apiGroup": "rbac.authorization.k8s.io"}]);
        apply(&admin, &binding).await;
    }
    let muster_client = control_plane.client_for_user(MUSTER_ROLE_ONLY_USER).await;
    wait_until_muster_can_list_nodes(&muster_client).await;
    wait_until_muster_can_read_its_lease(&muster_client).await;
    wait_until_muster_can_list_nodes(&control_plane.client_for_user(MUSTER_USER).await).await;
    forbidden(
        "delete pods with muster's roles alone",
        Api::<Pod>::namespaced(muster_client.clone(), "default")
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
    );
    control_plane.create_node(&TestNode::new("node-a", "2", "4Gi")).await;
    control_plane.create_node(&TestNode::new("node-b", "2", "4Gi")).await;

    // The certificates the Secrets hold, made the way deploy/README.md gives for a cluster without cert-manager,
    // for the address the stand-in Service listens on.
    let certs = control_plane.dir().join("certs");
    let made = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["certs", "--host", "127.0.0.1", "--out"])
        .arg(&certs)
        .output()
        .expect("cannot run muster certs");
    assert!(made.status.success(), "muster certs failed: {}", String::from_utf8_lossy(&made.stderr));
    let cert = |name: &str| certs.join(name).display().to_string();

    // Two replicas with the shipped configuration file: the Secret's files where this test made them, and the
    // flags overriding where they listen, as on a laptop.
    let docs = deploy_documents();
    let mut muster_config = config_map_entry(&docs, "muster-config", "muster.yaml");
    let tls = &mut muster_config["extender"]["tls"];
    for (field, file) in [("certFile", "tls.crt"), ("keyFile", "tls.key"), ("clientCAFile", "ca.crt")] {
        let shipped = tls[field].as_str().unwrap_or_else(|| panic!("extender.tls.{field} is set"));
        assert_eq!(shipped, format!("{SERVER_TLS_DIR}/{file}"), "the mounted Secret's {file}");
        tls[field] = cert(file).into();
    }
    let config_path = control_plane.dir().join("muster.yaml");
    std::fs::write(&config_path, serde_norway::to_string(&muster_config).expect("YAML serialises"))
        .expect("write the config");
    let kubeconfig = control_plane.kubeconfig_for_user(MUSTER_ROLE_ONLY_USER).to_owned();
    let (ports_a, ports_b) = (ReplicaPorts::free(), ReplicaPorts::free());
    let service =
        ReadyEndpointsService::start(vec![(ports_a.extender, ports_a.health), (ports_b.extender, ports_b.health)])
            .await;
    let mut muster_a = MusterProcess::spawn(&config_path, &kubeconfig, ports_a, control_plane.dir(), "muster-a");
    muster_a.wait_ready(ports_a.health, Duration::from_secs(60)).await;
    wait_for_lease_holder(&admin, MUSTER_NAMESPACE, LEASE_NAME, "muster-a").await;

    // The sidecar's configuration as shipped, pointed at this Service over mutual TLS with the client Secret's
    // files, acting as the pod's ServiceAccount.
    let mut config = config_map_entry(&docs, "muster-kube-scheduler-config", "kube-scheduler.yaml");
    let extender = &mut config["extenders"][0];
    let shipped_url = extender["urlPrefix"].as_str().expect("urlPrefix");
    assert!(shipped_url.starts_with("https://"), "kube-scheduler calls muster over TLS: {shipped_url}");
    extender["urlPrefix"] = format!("https://127.0.0.1:{}/muster", service.port).into();
    let tls = &mut extender["tlsConfig"];
    for (field, file) in [("caFile", "ca.crt"), ("certFile", "client.crt"), ("keyFile", "client.key")] {
        assert!(tls[field].as_str().is_some(), "tlsConfig.{field} is set");
        tls[field] = cert(file).into();
    }
    let scheduler_kubeconfig = control_plane.kubeconfig_for_user(MUSTER_USER).display().to_string();
    config.as_mapping_mut().expect("a mapping").insert(
        "clientConnection".into(),
        serde_norway::to_value(BTreeMap::from([("kubeconfig", scheduler_kubeconfig)])).expect("a mapping serialises"),
    );
    control_plane.start_scheduler(&serde_norway::to_string(&config).expect("YAML serialises")).await;

    let ns = "gang";
    control_plane.create_namespace(ns).await;
    run_gang(&admin, ns, "train", 2, "1", "1Gi").await;
    // muster created the default queue (queues create).
    let queues = Api::<Queue>::all(admin.clone());
    wait_until("muster creates the default queue", DEFAULT_TIMEOUT, || async {
        queues.get_opt("default").await.map_err(|e| e.to_string())?.map(|_| ()).ok_or_else(|| "absent".to_owned())
    })
    .await;

    // The scheduler elected itself on its Lease in muster's namespace, not on the cluster scheduler's.
    wait_until("the sidecar scheduler holds its Lease in muster's namespace", DEFAULT_TIMEOUT, || async {
        lease_holder(&admin, MUSTER_NAMESPACE, "kube-scheduler").await?.map(|_| ()).ok_or_else(|| "no holder".into())
    })
    .await;
    assert_eq!(
        lease_holder(&admin, "kube-system", "kube-scheduler").await.expect("read kube-system"),
        None,
        "the sidecar must never take the cluster scheduler's Lease"
    );
    let (_, metrics) = http_get(ports_a.metrics, "/metrics").await.expect("muster-a serves /metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("muster_leader") && l.trim_end().ends_with(" 1")),
        "the leader reports muster_leader 1:\n{}",
        metrics.lines().filter(|l| l.contains("muster_leader")).collect::<Vec<_>>().join("\n")
    );

    // A second replica is a standby: it serves, is not Ready, and leaves the Lease to the leader.
    let mut muster_b = MusterProcess::spawn(&config_path, &kubeconfig, ports_b, control_plane.dir(), "muster-b");
    let start = Instant::now();
    while !matches!(http_get(ports_b.health, "/healthz").await, Ok((200, _))) {
        muster_b.assert_running();
        assert!(start.elapsed() < Duration::from_secs(60), "the standby never served /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watched_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watched_until {
        muster_b.assert_running();
        let (status, body) = http_get(ports_b.health, "/readyz").await.expect("the standby answers /readyz");
        assert_ne!(status, 200, "a standby must not be Ready while the leader holds the Lease: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lease_holder(&admin, MUSTER_NAMESPACE, LEASE_NAME).await.expect("read the Lease").as_deref(),
        Some("muster-a")
    );
    muster_a.assert_running();
    muster_a.assert_never_refused();

    // The leader dies without releasing the Lease. The standby takes over once it expires, and kube-scheduler,
    // untouched, reaches it through the Service: the next gang binds.
    muster_a.kill();
    muster_b.wait_ready(ports_b.health, FAILOVER_TIMEOUT).await;
    wait_for_lease_holder(&admin, MUSTER_NAMESPACE, LEASE_NAME, "muster-b").await;
    run_gang(&admin, ns, "infer", 2, "500m", "512Mi").await;

    muster_b.assert_running();
    muster_b.assert_never_refused();
    let scheduler_log_path = control_plane.dir().join("kube-scheduler-1.log");
    let scheduler_log = std::fs::read_to_string(&scheduler_log_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", scheduler_log_path.display()));
    let refused = forbidden_lines(&scheduler_log);
    assert!(refused.is_empty(), "the sidecar kube-scheduler was refused by RBAC:\n{}", refused.join("\n"));
}
