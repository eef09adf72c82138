//! HTTPS on the HTTP listener (`[http] tls`): the certificate, made or loaded, behind a
//! resolver that a reload (SIGHUP) swaps without dropping connections.
//!
//! - `self-signed`: a certificate for `localhost`, the advertised IPs and `tls_names` is
//!   made at first start and kept in `[catalog] state_dir/tls/`; later starts reuse it
//!   while it covers the same names and has a month left. Its SHA-256 fingerprint and
//!   SPKI hash are printed, so an operator can pin it in station browsers
//!   (`--ignore-certificate-errors-spki-list`) or compare what a browser shows.
//! - `files`: `tls_cert` (chain) and `tls_key` (PEM), re-read on [`Tls::reload`]; a
//!   reload that fails keeps the certificate being served and says why.
//!
//! Only HTTP/1.1 is offered over ALPN, as on plain HTTP.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::{HttpConfig, TlsMode};

/// Why TLS could not be set up; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM block.
    #[error(
        "TLS {what} {path} is not a PEM {what}: {reason} (expected a file starting with -----BEGIN {block}-----)"
    )]
    NotPem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM header expected.
        block: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The key is of an unsupported kind or does not belong to the certificate.
    #[error("TLS private key {key} does not fit certificate {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// Making or storing the self-signed certificate failed.
    #[error("cannot make the self-signed certificate in {dir}: {reason}")]
    SelfSigned {
        /// The state folder.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where the served certificate comes from.
#[derive(Debug, Clone)]
enum Origin {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// The certificate being served and how to read it again.
pub struct Tls {
    origin: Origin,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

/// Identifies the served certificate for people and for browsers' pinning flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-256 of the certificate, `AB:CD:...` as browsers show it.
    pub sha256: String,
    /// Base64 SHA-256 of the SubjectPublicKeyInfo
    /// (Chromium's `--ignore-certificate-errors-spki-list`, HPKP-style pins).
    pub spki_sha256: String,
}

#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Never held across an await; a poisoned lock still holds a valid key.
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        Some(current.clone())
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("origin", &self.origin).finish()
    }
}

impl Tls {
    /// Sets TLS up as `http` says, or `None` when it is off. `advertised` are the names and
    /// addresses a self-signed certificate must cover besides `tls_names`; `state_dir`
    /// is where it is kept.
    pub fn from_config(
        http: &HttpConfig,
        advertised: &[String],
        state_dir: &Path,
    ) -> Result<Option<Tls>, TlsError> {
        let origin = match http.tls {
            TlsMode::Off => return Ok(None),
            TlsMode::Files => match (&http.tls_cert, &http.tls_key) {
                (Some(cert), Some(key)) => Origin::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                // `Config::validate` rejects this; say so again rather than panic.
                _ => {
                    return Err(TlsError::Read {
                        what: "certificate",
                        path: PathBuf::from("(http.tls_cert unset)"),
                        source: std::io::Error::other("tls = \"files\" needs tls_cert and tls_key"),
                    });
                }
            },
            TlsMode::SelfSigned => {
                let mut names = vec!["localhost".to_string()];
                for name in advertised.iter().chain(&http.tls_names) {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                Origin::SelfSigned {
                    dir: state_dir.join("tls"),
                    names,
                }
            }
        };
        let key = origin.load()?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::SelfSigned {
            dir: state_dir.to_path_buf(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Tls {
            origin,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// What accepts TLS connections; it always serves the latest loaded certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the certificate again (after certbot renewed the files, say). On error the
    /// certificate being served stays.
    pub fn reload(&self) -> Result<Fingerprints, TlsError> {
        let key = Arc::new(self.origin.load()?);
        let prints = fingerprints(&key);
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = key;
        Ok(prints)
    }

    /// Fingerprints of the certificate being served.
    pub fn fingerprints(&self) -> Fingerprints {
        let current = self
            .resolver
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        fingerprints(&current)
    }

    /// Where the certificate comes from, for logs: the file, or the self-signed one's.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Files { cert, .. } => cert.display().to_string(),
            Origin::SelfSigned { dir, names } => format!(
                "self-signed {} for {}",
                dir.join(SELF_CERT).display(),
                names.join(", ")
            ),
        }
    }
}

const SELF_CERT: &str = "self-signed-cert.pem";
const SELF_KEY: &str = "self-signed-key.pem";
const SELF_NAMES: &str = "self-signed-names.txt";
/// Days a self-signed certificate is valid: under Apple's 825-day limit for certificates
/// a user trusts by hand. It is made again when fewer than [`RENEW_DAYS`] are left.
const VALID_DAYS: i64 = 800;
const RENEW_DAYS: i64 = 30;

impl Origin {
    fn load(&self) -> Result<CertifiedKey, TlsError> {
        match self {
            Origin::Files { cert, key } => load_files(cert, key),
            Origin::SelfSigned { dir, names } => {
                let (cert, key) = (dir.join(SELF_CERT), dir.join(SELF_KEY));
                let current = std::fs::read_to_string(dir.join(SELF_NAMES))
                    .is_ok_and(|stored| stored.lines().eq(names.iter().map(String::as_str)));
                if current && let Ok(loaded) = load_files(&cert, &key) {
                    let expiry = std::fs::read_to_string(dir.join("self-signed-expires.txt"))
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .unwrap_or(0);
                    if expiry - chrono::Utc::now().timestamp() > RENEW_DAYS * 86_400 {
                        return Ok(loaded);
                    }
                }
                make_self_signed(dir, names)?;
                load_files(&cert, &key)
            }
        }
    }
}

fn load_files(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("certificate", cert_path)?;
    let key_pem = read("private key", key_path)?;
    let not_pem = |what, path: &Path, block, reason: String| TlsError::NotPem {
        what,
        path: path.to_path_buf(),
        block,
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("certificate", cert_path, "CERTIFICATE", e.to_string()))?;
    if chain.is_empty() {
        return Err(not_pem(
            "certificate",
            cert_path,
            "CERTIFICATE",
            "no certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        not_pem(
            "private key",
            key_path,
            "PRIVATE KEY",
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => "no private key found".into(),
                other => other.to_string(),
            },
        )
    })?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        reason,
    };
    let signing = any_supported_type(&key).map_err(|e| mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(certified)
}

fn make_self_signed(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    let fail = |reason: String| TlsError::SelfSigned {
        dir: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "feiyan (self-signed)");
    let now = chrono::Utc::now();
    let day = |t: chrono::DateTime<chrono::Utc>| {
        use chrono::Datelike;
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    params.not_before = day(now - chrono::Duration::days(1));
    let expires = now + chrono::Duration::days(VALID_DAYS);
    params.not_after = day(expires);
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    write_private(&dir.join(SELF_KEY), key.serialize_pem().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let write = |file: &str, text: String| {
        std::fs::write(dir.join(file), text).map_err(|e| fail(e.to_string()))
    };
    write(SELF_CERT, cert.pem())?;
    write("self-signed-expires.txt", expires.timestamp().to_string())?;
    write(SELF_NAMES, names.join("\n"))?;
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

fn fingerprints(key: &CertifiedKey) -> Fingerprints {
    let leaf = key.end_entity_cert().map(|c| c.as_ref()).unwrap_or(&[]);
    let sha256 = Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let spki = key
        .key
        .public_key()
        .map(|spki| Sha256::digest(spki.as_ref()))
        .unwrap_or_default();
    Fingerprints {
        sha256,
        spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(tls: TlsMode) -> HttpConfig {
        HttpConfig {
            tls,
            ..HttpConfig::default()
        }
    }

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["192.0.2.7".to_string()];
        let first = Tls::from_config(&http(TlsMode::SelfSigned), &names, dir.path())
            .unwrap()
            .unwrap();
        let again = Tls::from_config(&http(TlsMode::SelfSigned), &names, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(first.fingerprints(), again.fingerprints());
        assert_eq!(first.fingerprints().spki_sha256.len(), 44);
        // Other names: a new certificate.
        let mut more = http(TlsMode::SelfSigned);
        more.tls_names = vec!["station.lan".into()];
        let other = Tls::from_config(&more, &names, dir.path())
            .unwrap()
            .unwrap();
        assert_ne!(first.fingerprints(), other.fingerprints());
        assert!(
            other.describe().contains("station.lan"),
            "{}",
            other.describe()
        );
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let files = |cert: &Path, key: &Path| HttpConfig {
            tls: TlsMode::Files,
            tls_cert: Some(cert.to_path_buf()),
            tls_key: Some(key.to_path_buf()),
            ..HttpConfig::default()
        };
        let err = Tls::from_config(&files(&cert, &key), &[], dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("cert.pem") && err.to_string().contains("No such file"),
            "{err}"
        );
        std::fs::write(&cert, "hello, not a certificate\n").unwrap();
        std::fs::write(&key, "nor a key\n").unwrap();
        let err = Tls::from_config(&files(&cert, &key), &[], dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("cert.pem") && err.to_string().contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        // A real certificate with someone else's key.
        let made = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let err = Tls::from_config(&files(&cert, &key), &[], dir.path()).unwrap_err();
        assert!(err.to_string().contains("key.pem"), "{err}");
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let err = Tls::from_config(&files(&cert, &key), &[], dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let tls = Tls::from_config(&files(&cert, &key), &[], dir.path())
            .unwrap()
            .unwrap();
        // A reload that fails keeps serving the loaded certificate.
        let before = tls.fingerprints();
        std::fs::write(&cert, "broken").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.fingerprints(), before);
    }
}
