//! The webhook's serving certificate, which muster manages itself: a CA and a certificate for the webhook's hosts
//! in one `kubernetes.io/tls` Secret shared by every replica, and the CA put into the MutatingWebhookConfiguration
//! as its `caBundle` so the API server trusts the webhook.
//!
//! Replicas race safely: the Secret is created (a 409 means another replica created it first: its Secret is used)
//! or replaced with the resourceVersion it was read at (a 409 means another replica renewed it: read again). A
//! renewed Secret's `ca.crt` keeps the CA it replaces beside the new one, so the replicas still serving the old
//! certificate stay trusted until they read the new one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::json;

use super::WebhookError;
use crate::api::errors::{is_conflict, is_not_found};
use crate::extender::tls::{Pki, Validity};

/// A new certificate is valid this long.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate that expires within this is renewed (checked at start and at every re-check).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Reads and writes of the Secret before giving up when other replicas keep changing it.
const ATTEMPTS: usize = 5;

const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const CA_KEY: &str = "ca.crt";

/// A serving certificate (PEM chain, leaf first), its key (PEM) and the CAs that verify it (PEM, the current one
/// first): what the Secret holds.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServingCert").field("cert_pem", &self.cert_pem).field("ca_pem", &self.ca_pem).finish()
    }
}

impl ServingCert {
    /// A new CA and a certificate it signs for `hosts` (DNS names or IP addresses), valid for a year. The first
    /// certificate of `previous_ca` (the CA being replaced) is kept in the bundle after the new CA.
    pub fn generate(hosts: &[String], previous_ca: Option<&str>) -> Result<ServingCert, WebhookError> {
        // Pki also makes a client certificate, which the webhook has no use for and drops.
        let pki = Pki::generate(hosts, "muster-webhook", Validity::from_now(VALIDITY))?;
        let mut ca_pem = pki.ca_cert_pem;
        let previous = previous_ca.and_then(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()).next());
        if let Some(Ok(previous)) = previous {
            ca_pem.push_str(&pem_certificate(&previous));
        }
        Ok(ServingCert { cert_pem: pki.server_cert_pem, key_pem: pki.server_key_pem, ca_pem })
    }

    /// The three entries of a Secret, when present and text; whether they are any good is [`ServingCert::check`]'s.
    fn from_secret(secret: &Secret) -> Option<ServingCert> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
        Some(ServingCert { cert_pem: text(CERT_KEY)?, key_pem: text(KEY_KEY)?, ca_pem: text(CA_KEY)? })
    }

    fn data(&self) -> std::collections::BTreeMap<String, ByteString> {
        [(CERT_KEY, &self.cert_pem), (KEY_KEY, &self.key_pem), (CA_KEY, &self.ca_pem)]
            .into_iter()
            .map(|(key, pem)| (key.to_owned(), ByteString(pem.as_bytes().to_vec())))
            .collect()
    }

    /// Whether the API server, trusting `ca_pem`, would accept the certificate for every one of `hosts` at time
    /// `at` (chain, validity, names, usage), and the key is the certificate's. The reason when not.
    pub fn check(&self, hosts: &[String], at: SystemTime) -> Result<(), String> {
        let chain = self.chain().map_err(|e| e.to_string())?;
        let (leaf, intermediates) = chain.split_first().ok_or("tls.crt holds no certificate")?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.map_err(|e| format!("ca.crt: {e}"))?).map_err(|e| format!("ca.crt: {e}"))?;
        }
        if roots.is_empty() {
            return Err("ca.crt holds no certificate".into());
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("ca.crt: {e}"))?;
        let at = UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
        for host in hosts {
            let name = ServerName::try_from(host.as_str()).map_err(|e| format!("{host:?}: {e}"))?;
            verifier
                .verify_server_cert(leaf, intermediates, &name, &[], at)
                .map_err(|e| format!("not valid for {host}: {e}"))?;
        }
        self.server_config().map(|_| ()).map_err(|e| e.to_string())
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, WebhookError> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebhookError::Certificate(format!("tls.crt: {e}")))
    }

    /// Server-only TLS with this certificate (the API server presents no client certificate), HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, WebhookError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| WebhookError::Certificate(format!("{what}: {e}"));
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| bad("tls.key", &e))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", &e))?
            .with_no_client_auth()
            // Also checks that the key is the certificate's.
            .with_single_cert(self.chain()?, key)
            .map_err(|e| bad("tls.crt and tls.key", &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM text of one DER certificate, 64 columns as PEM wants.
fn pem_certificate(der: &CertificateDer<'_>) -> String {
    let encoded = serde_json::to_value(ByteString(der.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Where the certificate lives and who must trust it.
#[derive(Debug, Clone)]
pub struct CertSettings {
    pub namespace: String,
    pub secret: String,
    pub configuration: String,
    pub hosts: Vec<String>,
}

/// What [`CertManager::patch_ca_bundle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaBundle {
    /// Every webhook of the configuration had the CA already.
    Current,
    /// This many webhooks were given it.
    Patched(usize),
    /// The configuration does not exist (not applied yet, or deleted).
    Missing,
}

/// Reads and writes the Secret and the configuration's `caBundle`.
pub struct CertManager {
    secrets: Api<Secret>,
    configurations: Api<MutatingWebhookConfiguration>,
    settings: CertSettings,
}

impl CertManager {
    pub fn new(client: kube::Client, settings: CertSettings) -> CertManager {
        CertManager {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configurations: Api::all(client),
            settings,
        }
    }

    pub fn settings(&self) -> &CertSettings {
        &self.settings
    }

    /// The certificate the Secret holds, after making the Secret anew when it is absent, unusable, not valid for
    /// every host or expiring within [`RENEW_BEFORE`].
    pub async fn ensure_secret(&self) -> Result<ServingCert, WebhookError> {
        let s = &self.settings;
        let secret_error =
            |source| WebhookError::Secret { namespace: s.namespace.clone(), name: s.secret.clone(), source };
        for _ in 0..ATTEMPTS {
            let existing = self.secrets.get_opt(&s.secret).await.map_err(secret_error)?;
            let current = existing.as_ref().and_then(ServingCert::from_secret);
            let renew_by = SystemTime::now() + RENEW_BEFORE;
            let why = match &current {
                None if existing.is_none() => "absent".to_owned(),
                None => "missing tls.crt, tls.key or ca.crt".to_owned(),
                Some(cert) => match cert.check(&s.hosts, renew_by) {
                    Ok(()) => return Ok(current.expect("matched Some")),
                    Err(why) => why,
                },
            };
            tracing::info!(secret = %format!("{}/{}", s.namespace, s.secret), reason = %why,
                "making a new webhook certificate");
            let cert = ServingCert::generate(&s.hosts, current.as_ref().map(|c| c.ca_pem.as_str()))?;
            let written = match existing {
                None => self.secrets.create(&PostParams::default(), &self.new_secret(&cert, None)).await,
                Some(old) => {
                    // Replace at the version read (a renewal by another replica in between is a 409), keeping the
                    // Secret's type: it cannot be changed.
                    let mut secret = self.new_secret(&cert, old.type_.clone());
                    secret.metadata = old.metadata;
                    self.secrets.replace(&s.secret, &PostParams::default(), &secret).await
                }
            };
            match written {
                Ok(_) => return Ok(cert),
                // Another replica wrote it first: use theirs.
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(secret_error(e)),
            }
        }
        Err(WebhookError::Contended { namespace: s.namespace.clone(), name: s.secret.clone(), attempts: ATTEMPTS })
    }

    fn new_secret(&self, cert: &ServingCert, type_: Option<String>) -> Secret {
        let mut secret = Secret {
            type_: type_.or_else(|| Some("kubernetes.io/tls".into())),
            data: Some(cert.data()),
            ..Secret::default()
        };
        secret.metadata.name = Some(self.settings.secret.clone());
        secret.metadata.namespace = Some(self.settings.namespace.clone());
        secret.metadata.labels =
            Some([("app.kubernetes.io/managed-by".to_owned(), "muster".to_owned())].into_iter().collect());
        secret
    }

    /// Puts `ca_pem` as the `caBundle` of every webhook of the configuration that has another (or none).
    pub async fn patch_ca_bundle(&self, ca_pem: &str) -> Result<CaBundle, WebhookError> {
        let name = &self.settings.configuration;
        let configuration_error = |source| WebhookError::Configuration { name: name.clone(), source };
        let Some(configuration) = self.configurations.get_opt(name).await.map_err(configuration_error)? else {
            return Ok(CaBundle::Missing);
        };
        let wanted = ByteString(ca_pem.as_bytes().to_vec());
        // A strategic merge patch merges webhooks by name: only the stale ones are named, and should one of them
        // be removed meanwhile, the patch would add a webhook of a name alone, which the API server refuses.
        let stale: Vec<_> = configuration
            .webhooks
            .iter()
            .flatten()
            .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&wanted))
            .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": wanted}}))
            .collect();
        if stale.is_empty() {
            return Ok(CaBundle::Current);
        }
        let patched = stale.len();
        let patch = Patch::Strategic(json!({"webhooks": stale}));
        match self.configurations.patch(name, &PatchParams::default(), &patch).await {
            Ok(_) => Ok(CaBundle::Patched(patched)),
            Err(e) if is_not_found(&e) => Ok(CaBundle::Missing),
            Err(e) => Err(configuration_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn a_new_certificate_is_valid_for_its_hosts_for_a_year() {
        let hosts = names(&["muster-webhook.muster-system.svc", "127.0.0.1"]);
        let cert = ServingCert::generate(&hosts, None).expect("generated");
        let now = SystemTime::now();
        cert.check(&hosts, now).expect("valid now");
        cert.check(&hosts, now + RENEW_BEFORE).expect("not due for renewal");
        let expired = cert.check(&hosts, now + VALIDITY + Duration::from_secs(60)).expect_err("expired by then");
        assert!(expired.contains("127.0.0.1") || expired.contains("svc"), "{expired}");
        let other = cert.check(&names(&["other.muster-system.svc"]), now).expect_err("not its name");
        assert!(other.contains("other.muster-system.svc"), "{other}");
        assert!(cert.check(&names(&["10.0.0.1"]), now).is_err(), "not its address");
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"), "the key is never printed");
    }

    #[test]
    fn unusable_secrets_are_told_apart_from_good_ones() {
        let hosts = names(&["127.0.0.1"]);
        let cert = ServingCert::generate(&hosts, None).expect("generated");
        let other = ServingCert::generate(&hosts, None).expect("generated");
        let now = SystemTime::now();
        let wrong_ca = ServingCert { ca_pem: other.ca_pem.clone(), ..cert.clone() };
        assert!(wrong_ca.check(&hosts, now).is_err(), "signed by another CA");
        let wrong_key = ServingCert { key_pem: other.key_pem.clone(), ..cert.clone() };
        assert!(wrong_key.check(&hosts, now).is_err(), "the key of another certificate");
        let garbage = ServingCert { cert_pem: "not PEM".into(), ..cert.clone() };
        assert!(garbage.check(&hosts, now).is_err());
        // Round trip through a Secret's data.
        let secret = Secret { data: Some(cert.data()), ..Secret::default() };
        assert_eq!(ServingCert::from_secret(&secret), Some(cert));
        let partial =
            Secret { data: Some([(CERT_KEY.to_owned(), ByteString(b"x".to_vec()))].into()), ..Secret::default() };
        assert_eq!(ServingCert::from_secret(&partial), None);
    }

    #[test]
    fn a_renewal_keeps_trusting_the_certificates_of_the_ca_it_replaces() {
        let hosts = names(&["127.0.0.1"]);
        let old = ServingCert::generate(&hosts, None).expect("generated");
        let new = ServingCert::generate(&hosts, Some(&old.ca_pem)).expect("generated");
        let now = SystemTime::now();
        new.check(&hosts, now).expect("the new certificate is valid");
        // A replica still serving the old certificate is trusted through the new bundle.
        ServingCert { ca_pem: new.ca_pem.clone(), ..old.clone() }.check(&hosts, now).expect("old one trusted");
        assert_eq!(new.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        // Only one predecessor is kept: the next renewal drops the oldest.
        let newer = ServingCert::generate(&hosts, Some(&new.ca_pem)).expect("generated");
        assert_eq!(newer.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(ServingCert { ca_pem: newer.ca_pem.clone(), ..old }.check(&hosts, now).is_err());
    }
}
