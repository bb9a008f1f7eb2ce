//! Who may read `/state`, and which part of it.
//!
//! `/state` names every namespace's gangs, so by default it answers only what its caller could read from the API
//! server itself, as kube-rbac-proxy and metrics-server do: the caller sends a bearer token (a ServiceAccount's
//! or a user's), the API server says who it is (TokenReview) and whether that identity may `list`
//! `podgroups.scheduling.muster.dev` cluster-wide, or in the namespace asked for with `?namespace=` (SubjectAccessReview).
//! Queues are cluster-wide aggregates that `/metrics` already exposes, so every authorized caller sees them.
//! Answers are cached for [`DECISION_TTL`] so a poller costs the API server two requests every ten seconds, not
//! two per poll.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use serde::Deserialize;

use kube::Resource;

use crate::api::PodGroup;

/// How long a token's identity and an authorization decision are reused.
pub const DECISION_TTL: Duration = Duration::from_secs(10);
/// Cached decisions at most (one per token and namespace); the cache is emptied when it is full.
const MAX_CACHED: usize = 10_000;

/// How `/state` decides (`metrics.stateAccess` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StateAccessMode {
    /// Bearer token, TokenReview and SubjectAccessReview: the caller sees the namespaces it may list PodGroups
    /// in.
    #[default]
    Kubernetes,
    /// Everything to anyone who reaches the metrics listener (it listens on loopback only, or something in front
    /// of it authenticates).
    Open,
}

/// The part of `/state` a caller gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateView {
    All,
    Namespace(String),
}

/// Why a caller gets nothing: the HTTP status and a message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: u16,
    pub message: String,
}

impl Denied {
    fn unauthorized(message: impl Into<String>) -> Denied {
        Denied { status: 401, message: message.into() }
    }

    fn forbidden(message: impl Into<String>) -> Denied {
        Denied { status: 403, message: message.into() }
    }

    fn unavailable(message: impl Into<String>) -> Denied {
        Denied { status: 503, message: message.into() }
    }
}

/// Who the API server says a token belongs to.
#[derive(Debug, Clone)]
struct Identity {
    user: String,
    uid: Option<String>,
    groups: Vec<String>,
}

pub struct StateAccess {
    mode: StateAccessMode,
    client: Option<kube::Client>,
    /// Token to its identity (None: not authenticated), with when it was learnt.
    identities: Mutex<HashMap<String, (Instant, Option<Identity>)>>,
    /// (user, namespace or "" for all) to whether it may list PodGroups there, with when it was learnt.
    decisions: Mutex<HashMap<(String, String), (Instant, bool)>>,
}

impl StateAccess {
    pub fn new(mode: StateAccessMode, client: kube::Client) -> StateAccess {
        StateAccess {
            mode,
            client: Some(client),
            identities: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// Everything to everyone, with no API server to ask (tests of the HTTP layer).
    pub fn open() -> StateAccess {
        StateAccess {
            mode: StateAccessMode::Open,
            client: None,
            identities: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// What the caller with this `Authorization` header, asking for `namespace` (or all), may see.
    pub async fn authorize(&self, authorization: Option<&str>, namespace: Option<&str>) -> Result<StateView, Denied> {
        let view = match namespace {
            Some(ns) => StateView::Namespace(ns.to_owned()),
            None => StateView::All,
        };
        let client = match (self.mode, &self.client) {
            (StateAccessMode::Open, _) => return Ok(view),
            (StateAccessMode::Kubernetes, Some(client)) => client,
            (StateAccessMode::Kubernetes, None) => return Err(Denied::unavailable("no API server to authorize with")),
        };
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Denied::unauthorized(
                    "/state needs `Authorization: Bearer <token>` (a ServiceAccount's or a user's); it answers the \
                     namespaces that identity may list PodGroups in",
                )
            })?;
        let identity = self
            .identity(client, token)
            .await?
            .ok_or_else(|| Denied::unauthorized("the API server did not authenticate this token"))?;
        let scope = namespace.unwrap_or_default();
        let group = PodGroup::group(&());
        if self.may_list_pod_groups(client, &identity, scope).await? {
            Ok(view)
        } else if scope.is_empty() {
            Err(Denied::forbidden(format!(
                "{} may not list podgroups.{group} in all namespaces; ask for one with /state?namespace=<name>",
                identity.user
            )))
        } else {
            Err(Denied::forbidden(format!("{} may not list podgroups.{group} in namespace {scope}", identity.user)))
        }
    }

    async fn identity(&self, client: &kube::Client, token: &str) -> Result<Option<Identity>, Denied> {
        if let Some(known) = fresh(&self.identities, token) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), ..Default::default() },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Denied::unavailable(format!("cannot review the token with the API server: {e}")))?;
        let identity = reviewed.status.filter(|s| s.authenticated == Some(true)).and_then(|s| s.user).map(|u| {
            Identity { user: u.username.unwrap_or_default(), uid: u.uid, groups: u.groups.unwrap_or_default() }
        });
        remember(&self.identities, token.to_owned(), identity.clone());
        Ok(identity)
    }

    async fn may_list_pod_groups(
        &self,
        client: &kube::Client,
        who: &Identity,
        namespace: &str,
    ) -> Result<bool, Denied> {
        let key = (format!("{}\u{0}{}", who.user, who.groups.join(",")), namespace.to_owned());
        if let Some(allowed) = fresh(&self.decisions, &key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                uid: who.uid.clone(),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(PodGroup::group(&()).into_owned()),
                    resource: Some("podgroups".to_owned()),
                    verb: Some("list".to_owned()),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Denied::unavailable(format!("cannot ask the API server for authorization: {e}")))?;
        let allowed = reviewed.status.is_some_and(|s| s.allowed);
        remember(&self.decisions, key, allowed);
        Ok(allowed)
    }
}

fn fresh<K, V, Q>(cache: &Mutex<HashMap<K, (Instant, V)>>, key: &Q) -> Option<V>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
    V: Clone,
{
    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache.get(key).filter(|(at, _)| at.elapsed() < DECISION_TTL).map(|(_, v)| v.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<HashMap<K, (Instant, V)>>, key: K, value: V) {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key, (Instant::now(), value));
}
