//! TLS client material named in the config (a CA to trust, a client certificate and key),
//! read and checked once at load so that a wrong file fails the start (exit 78), not the
//! first delivery.
//!
//! Checks: each file is readable; the CA file holds at least one PEM certificate usable as a
//! trust anchor; the client certificate file holds a PEM chain and the key file one PEM
//! private key (PKCS#8, PKCS#1 or SEC1) that rustls can load; certificate and key belong
//! together. The key's bytes are kept as a [`Secret`]: redacted in `Debug`, zeroed on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{ConfigError, Secret};

/// The config keys that name the three files, for error messages
/// (e.g. `endpoints[0].tls.ca_file` or `redis.tls_ca_file`).
#[derive(Debug, Clone, Copy)]
pub struct TlsKeys<'a> {
    /// Key of the CA file.
    pub ca: &'a str,
    /// Key of the client certificate file.
    pub cert: &'a str,
    /// Key of the client key file.
    pub key: &'a str,
}

/// PEM bytes of a CA bundle and/or a client identity, already checked.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Option<Arc<[u8]>>,
    client: Option<ClientIdentity>,
}

#[derive(Clone)]
struct ClientIdentity {
    cert_pem: Arc<[u8]>,
    key_pem: Secret,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("client_identity", &self.client.as_ref().map(|_| "***"))
            .finish()
    }
}

impl TlsMaterial {
    /// Reads and checks the files; `None` when no file is named. `cert` and `key` must be
    /// given together.
    pub fn load(
        keys: TlsKeys<'_>,
        ca_file: Option<&Path>,
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<Option<Self>, ConfigError> {
        let ca_pem = match ca_file {
            Some(path) => Some(load_ca(keys.ca, path)?),
            None => None,
        };
        let client = match (cert_file, key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    keys.key,
                    format!(
                        "{} is set but {} is not; a client certificate needs its private key",
                        keys.cert, keys.key
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    keys.cert,
                    format!(
                        "{} is set but {} is not; a client key needs its certificate",
                        keys.key, keys.cert
                    ),
                ));
            }
            (Some(cert), Some(key)) => Some(load_identity(keys, cert, key)?),
        };
        if ca_pem.is_none() && client.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { ca_pem, client }))
    }

    /// `sha256:<hex>` over the contents of every file (CA, certificate, key): it changes
    /// whenever a file does, so `check-config` and a reload can tell a renewed certificate
    /// at the same path from the old one. A hash of high-entropy key material reveals
    /// nothing usable.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.ca_pem(), self.client_cert_pem(), self.client_key_pem()] {
            let part = part.unwrap_or_default();
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Whether both hold the same bytes (a reload that re-read changed files is a change).
    pub fn same_as(&self, other: &TlsMaterial) -> bool {
        self.ca_pem() == other.ca_pem()
            && self.client_cert_pem() == other.client_cert_pem()
            && self.client_key_pem() == other.client_key_pem()
    }

    /// The CA bundle (PEM), if one was configured.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The client certificate chain (PEM), if mTLS is configured.
    pub fn client_cert_pem(&self) -> Option<&[u8]> {
        self.client.as_ref().map(|c| &*c.cert_pem)
    }

    /// The client private key (PEM), if mTLS is configured. Only for building TLS clients.
    pub fn client_key_pem(&self) -> Option<&[u8]> {
        self.client.as_ref().map(|c| c.key_pem.expose())
    }

    /// Key then certificate chain in one PEM buffer (what `reqwest::Identity::from_pem`
    /// takes); zeroed when dropped.
    pub fn client_identity_pem(&self) -> Option<Zeroizing<Vec<u8>>> {
        let c = self.client.as_ref()?;
        let mut pem = Zeroizing::new(Vec::with_capacity(
            c.key_pem.expose().len() + c.cert_pem.len() + 1,
        ));
        pem.extend_from_slice(c.key_pem.expose());
        pem.push(b'\n');
        pem.extend_from_slice(&c.cert_pem);
        Some(pem)
    }
}

/// Largest TLS file read: a CA bundle with every public root is about 250 KiB.
const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        ConfigError::invalid(
            key,
            format!(
                "cannot read {}: {e}; check the path (relative paths start at the working directory) and the file's permissions",
                path.display()
            ),
        )
    };
    let mut data = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_TLS_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(cannot)?;
    if data.len() as u64 > MAX_TLS_FILE_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{} is larger than 1 MiB; expected a PEM file",
                path.display()
            ),
        ));
    }
    Ok(data)
}

fn load_ca(key: &str, path: &Path) -> Result<Arc<[u8]>, ConfigError> {
    let pem = read(key, path)?;
    let not_pem = |why: String| {
        ConfigError::invalid(
            key,
            format!(
                "{} is not a PEM CA certificate ({why}); expected one or more `-----BEGIN CERTIFICATE-----` blocks",
                path.display()
            ),
        )
    };
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| not_pem(e.to_string()))?;
        store
            .add(cert)
            .map_err(|e| not_pem(format!("not usable as a trust anchor: {e}")))?;
    }
    if store.is_empty() {
        return Err(not_pem("no certificate found".into()));
    }
    Ok(pem.into())
}

fn load_identity(
    keys: TlsKeys<'_>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<ClientIdentity, ConfigError> {
    let cert_pem = read(keys.cert, cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                keys.cert,
                format!(
                    "{} is not a PEM certificate chain ({e})",
                    cert_path.display()
                ),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::invalid(
            keys.cert,
            format!(
                "{} is not a PEM certificate chain (no `-----BEGIN CERTIFICATE-----` block)",
                cert_path.display()
            ),
        ));
    }
    let key_pem = Zeroizing::new(read(keys.key, key_path)?);
    // The PEM parser's error text can quote the file (a malformed `BEGIN` line, a base64
    // symbol): it is left out, the file may hold key material.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        ConfigError::invalid(
            keys.key,
            format!(
                "{} is not a PEM private key; expected PKCS#8, PKCS#1 (RSA) or SEC1 (EC)",
                key_path.display()
            ),
        )
    })?;
    crate::util::net::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => {
                "does not belong to the certificate".to_string()
            }
            other => format!("cannot be used: {other}"),
        };
        ConfigError::invalid(
            keys.key,
            format!(
                "the private key in {} {why} in {} ({}); give the key that was issued with this certificate",
                key_path.display(),
                cert_path.display(),
                keys.cert
            ),
        )
    })?;
    Ok(ClientIdentity {
        cert_pem: cert_pem.into(),
        key_pem: Secret::from_bytes(key_pem.to_vec()),
    })
}

/// `Some(PathBuf)` for a non-empty path string.
pub(super) fn path_opt(s: &Option<String>) -> Option<PathBuf> {
    s.as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: TlsKeys<'static> = TlsKeys {
        ca: "t.ca_file",
        cert: "t.client_cert_file",
        key: "t.client_key_file",
    };

    fn cert_and_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.test")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn message(r: Result<Option<TlsMaterial>, ConfigError>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn nothing_configured_is_none() {
        assert!(TlsMaterial::load(KEYS, None, None, None).unwrap().is_none());
    }

    #[test]
    fn a_matching_certificate_and_key_load_and_debug_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = cert_and_key(dir.path(), "a");
        let m = TlsMaterial::load(KEYS, Some(&c), Some(&c), Some(&k))
            .unwrap()
            .unwrap();
        assert!(m.ca_pem().is_some());
        let id = m.client_identity_pem().unwrap();
        assert!(String::from_utf8_lossy(&id).contains("PRIVATE KEY"));
        let shown = format!("{m:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = cert_and_key(dir.path(), "a");
        let (_, k) = cert_and_key(dir.path(), "b");
        let m = message(TlsMaterial::load(KEYS, None, Some(&c), Some(&k)));
        assert!(m.contains("t.client_key_file"), "{m}");
        assert!(m.contains(&k.display().to_string()), "{m}");
        assert!(m.contains("does not belong"), "{m}");
        assert!(!m.contains("PRIVATE KEY"), "{m}");
    }

    #[test]
    fn cert_and_key_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = cert_and_key(dir.path(), "a");
        let m = message(TlsMaterial::load(KEYS, None, Some(&c), None));
        assert!(m.contains("t.client_key_file"), "{m}");
        let m = message(TlsMaterial::load(KEYS, None, None, Some(&k)));
        assert!(m.contains("t.client_cert_file"), "{m}");
    }

    #[test]
    fn unreadable_and_non_pem_files_name_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let m = message(TlsMaterial::load(KEYS, Some(&missing), None, None));
        assert!(m.contains("t.ca_file") && m.contains("missing.pem"), "{m}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let m = message(TlsMaterial::load(KEYS, Some(&junk), None, None));
        assert!(m.contains("not a PEM CA certificate"), "{m}");
        let (c, _) = cert_and_key(dir.path(), "a");
        let m = message(TlsMaterial::load(KEYS, None, Some(&c), Some(&junk)));
        assert!(
            m.contains("t.client_key_file") && m.contains("not a PEM private key"),
            "{m}"
        );
        let m = message(TlsMaterial::load(KEYS, None, Some(&junk), Some(&c)));
        assert!(m.contains("t.client_cert_file"), "{m}");
    }
}
