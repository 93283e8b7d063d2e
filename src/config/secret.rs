//! Secret values: literal, `env:NAME` or `file:PATH`, resolved once at load, never printed.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Largest `file:` secret read. A signing secret is tens of bytes; a reference to a large
/// (or endless, like `/dev/zero`) file is a mistake, refused rather than read into memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A resolved secret. `Debug`, `Display` and `Serialize` show `***`; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
}

/// Why a secret reference could not be resolved. Never contains the secret itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `env:NAME` names a variable that is not set (or not UTF-8).
    #[error("environment variable {0} is not set (secret reference env:{0})")]
    MissingEnv(String),
    /// `file:PATH` could not be read.
    #[error("cannot read secret file {path}: {reason}")]
    File {
        /// The file named by the reference.
        path: String,
        /// The I/O error, without file contents.
        reason: String,
    },
    /// The secret resolved to nothing.
    #[error("secret is empty")]
    Empty,
    /// `file:PATH` names a file larger than [`MAX_SECRET_FILE_BYTES`].
    #[error(
        "secret file {0} is larger than 64 KiB; point file: at the file that holds only the secret"
    )]
    TooLarge(String),
}

impl Secret {
    /// Resolves a reference: `env:NAME`, `file:PATH` (one trailing newline trimmed) or a literal.
    pub fn resolve(reference: &str) -> Result<Self, SecretError> {
        let bytes = if let Some(name) = reference.strip_prefix("env:") {
            let value =
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_string()))?;
            value.into_bytes()
        } else if let Some(path) = reference.strip_prefix("file:") {
            let file_err = |e: std::io::Error| SecretError::File {
                path: path.to_string(),
                reason: e.kind().to_string(),
            };
            let mut data = Vec::new();
            std::fs::File::open(Path::new(path))
                .map_err(file_err)?
                .take(MAX_SECRET_FILE_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(file_err)?;
            if data.len() as u64 > MAX_SECRET_FILE_BYTES {
                data.iter_mut().for_each(|b| *b = 0);
                return Err(SecretError::TooLarge(path.to_string()));
            }
            if data.last() == Some(&b'\n') {
                data.pop();
                if data.last() == Some(&b'\r') {
                    data.pop();
                }
            }
            data
        } else {
            reference.as_bytes().to_vec()
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self {
            bytes: Zeroizing::new(bytes),
        })
    }

    /// Builds a secret from bytes already in hand (tests, `sign --secret`).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes.into()),
        }
    }

    /// The secret's bytes, for signing and verification only.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let reference = String::deserialize(d)?;
        Secret::resolve(&reference).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from_bytes("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }

    #[test]
    fn file_reference_trims_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        let s = Secret::resolve(&format!("file:{}", p.display())).unwrap();
        assert_eq!(s.expose(), b"abc");
    }

    #[test]
    fn missing_env_reference_names_the_variable() {
        let e = Secret::resolve("env:RWB_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert_eq!(
            e,
            SecretError::MissingEnv("RWB_TEST_SURELY_UNSET_VAR".into())
        );
        assert!(e.to_string().contains("RWB_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn an_endless_or_huge_secret_file_is_refused_not_read() {
        let e = Secret::resolve("file:/dev/zero").unwrap_err();
        assert_eq!(e, SecretError::TooLarge("/dev/zero".into()));
    }

    #[test]
    fn empty_secret_is_rejected() {
        assert_eq!(Secret::resolve("").unwrap_err(), SecretError::Empty);
    }
}
