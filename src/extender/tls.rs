//! TLS for muster's listeners: a server certificate and a client CA read from files (a Secret mounted with
//! cert-manager's names, or what `muster certs` generated for the sidecar setup), every client required to present
//! a certificate that CA signed, and the files re-read while muster runs so a rotated certificate is picked up
//! without a restart.
//!
//! A reload swaps the configuration that *new* connections handshake with; established connections keep theirs,
//! so no request in flight fails because of a rotation. A file that cannot be read or parsed (cert-manager writes
//! the key and the certificate one after the other) keeps the previous configuration and is tried again at the
//! next check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("client CA {path}: {message}")]
    BadClientCa { path: PathBuf, message: String },
    #[error("{cert} and {key} do not make a TLS configuration: {message}")]
    Config { cert: PathBuf, key: PathBuf, message: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Where a listener's certificate, key and client CA are. Defaults are the names cert-manager (and
/// `kubernetes.io/tls` Secrets) use, under `/etc/muster/tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf.
    pub key_file: PathBuf,
    /// PEM certificates of the CAs whose client certificates are accepted. Required: a client without a
    /// certificate signed by one of them is refused during the handshake.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: PathBuf,
}

impl TlsFiles {
    /// `tls.crt`, `tls.key` and `ca.crt` in `dir`: a mounted cert-manager Secret, or `muster certs --out dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key"), client_ca_file: dir.join("ca.crt") }
    }

    fn read(&self) -> Result<[Vec<u8>; 3], TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source });
        Ok([read(&self.cert_file)?, read(&self.key_file)?, read(&self.client_ca_file)?])
    }
}

/// Builds the server configuration from the three files' contents: TLS 1.2 and 1.3 with ring's safe defaults,
/// HTTP/1.1 only (what kube-scheduler's extender client speaks), client certificates required.
fn server_config(files: &TlsFiles, [cert, key, ca]: &[Vec<u8>; 3]) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate { path: files.cert_file.clone(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: files.cert_file.clone() });
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| TlsError::BadKey { path: files.key_file.clone(), message: e.to_string() })?;
    let bad_ca = |message: String| TlsError::BadClientCa { path: files.client_ca_file.clone(), message };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca) {
        roots.add(ca.map_err(|e| bad_ca(e.to_string()))?).map_err(|e| bad_ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad_ca("holds no PEM certificate".into()));
    }
    let config_error = |e: rustls::Error| TlsError::Config {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        message: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad_ca(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The configuration new connections handshake with, re-read from its files by [`TlsReloader::check`].
pub struct TlsReloader {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' contents last looked at (loaded or refused), so an unchanged file is neither re-parsed nor
    /// reported again.
    seen: Mutex<[Vec<u8>; 3]>,
}

impl TlsReloader {
    /// Loads the files; an error here stops muster from starting (there is no previous configuration to keep).
    pub fn load(files: TlsFiles) -> Result<TlsReloader, TlsError> {
        let contents = files.read()?;
        let config = server_config(&files, &contents)?;
        Ok(TlsReloader { files, current: RwLock::new(Arc::new(config)), seen: Mutex::new(contents) })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// What a connection accepted now handshakes with.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the files: `Ok(true)` when they changed and the new configuration is in use, `Ok(false)` when
    /// nothing changed (or the same refused contents are still there), an error when they changed into something
    /// that cannot be used (the previous configuration stays).
    pub fn check(&self) -> Result<bool, TlsError> {
        let contents = self.files.read()?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == contents {
            return Ok(false);
        }
        let outcome = server_config(&self.files, &contents);
        *seen = contents;
        let config = outcome?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(true)
    }
}

/// A CA with a server certificate and a client certificate it signed: what `muster certs` writes for the setup
/// where kube-scheduler runs beside muster in one pod and both read the same directory.
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

/// Validity of a generated certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clock skew between containers) until `lifetime` from now.
    pub fn from_now(lifetime: Duration) -> Validity {
        let now = SystemTime::now();
        Validity { not_before: now - Duration::from_secs(3600), not_after: now + lifetime }
    }

    fn apply(&self, params: &mut rcgen::CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

impl Pki {
    /// A new CA (ECDSA P-256), a server certificate for `hosts` (DNS names or IP addresses) and a client
    /// certificate for `client_name`, all valid for `validity`.
    pub fn generate(hosts: &[String], client_name: &str, validity: Validity) -> Result<Pki, TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        // A name of its own: a certificate from another muster CA is then refused as from an unknown issuer, not
        // as a bad signature of this one, which would be confusing to diagnose.
        let born = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        ca_params.distinguished_name.push(DnType::CommonName, format!("muster CA {}", born.as_nanos()));
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity.apply(&mut ca_params);
        let ca_cert_pem = ca_params.self_signed(&ca_key)?.pem();
        let mut pki = Pki {
            ca_cert_pem,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
            ca_params,
            ca_key,
        };
        (pki.server_cert_pem, pki.server_key_pem) =
            pki.issue(hosts, "muster", rcgen::ExtendedKeyUsagePurpose::ServerAuth, validity)?;
        (pki.client_cert_pem, pki.client_key_pem) =
            pki.issue(&[], client_name, rcgen::ExtendedKeyUsagePurpose::ClientAuth, validity)?;
        Ok(pki)
    }

    /// Another client certificate signed by this CA (PEM certificate, PEM key), e.g. one already expired.
    pub fn issue_client(&self, name: &str, validity: Validity) -> Result<(String, String), TlsError> {
        self.issue(&[], name, rcgen::ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    /// Another server certificate for `hosts` signed by this CA (PEM certificate, PEM key): a rotation.
    pub fn issue_server(&self, hosts: &[String], validity: Validity) -> Result<(String, String), TlsError> {
        self.issue(hosts, "muster", rcgen::ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    fn issue(
        &self,
        hosts: &[String],
        name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<(String, String), TlsError> {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        validity.apply(&mut params);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    }

    /// Writes `ca.crt`, `tls.crt`, `tls.key` (the server's, cert-manager's names) and `client.crt`,
    /// `client.key` (kube-scheduler's) into `dir`; keys are readable by the owner only. The CA's key is not
    /// written: nothing can sign with it once this process ends.
    pub fn write_to(&self, dir: &Path) -> Result<(), TlsError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.into(), source })?;
        let files = [
            ("ca.crt", &self.ca_cert_pem, 0o644),
            ("tls.crt", &self.server_cert_pem, 0o644),
            ("tls.key", &self.server_key_pem, 0o600),
            ("client.crt", &self.client_cert_pem, 0o644),
            ("client.key", &self.client_key_pem, 0o600),
        ];
        for (name, contents, mode) in files {
            let path = dir.join(name);
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut file =
                    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&path)?;
                file.write_all(contents.as_bytes())
            };
            write().map_err(|source| TlsError::Write { path: path.clone(), source })?;
        }
        Ok(())
    }
}
