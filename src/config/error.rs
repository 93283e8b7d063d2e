//! How a configuration error is told: the key, the file with line and column (or the
//! environment variable), and what is wrong — never a value from the file or the
//! environment, which may be a password, a signing secret or a header such as
//! `Authorization: Bearer …`.
//!
//! The `toml` and `serde` messages do not follow that rule: a TOML syntax error quotes the
//! offending line, and `invalid type: found string "…"` quotes the value. So this module
//! renders both from their parts — the span of a syntax error turned into line and column
//! plus the parser's description; a serde error's kind with the found value reduced to its
//! type — and every error of [`Config::load`](super::Config::load) goes through it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::providers::Format as _;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use toml::de::{DeTable, DeValue};

/// Everything that can be wrong with a configuration. Each message names the key (or
/// variable, or file) and never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key has a wrong value (or is unknown).
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        /// The dotted key, e.g. `endpoints[0].url`, or an environment variable's name.
        key: String,
        /// Where the value came from (` (in file x.toml)`), or empty.
        origin: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A command-line flag has a wrong value.
    #[error("flag `{flag}`: {message}")]
    Flag {
        /// The flag, e.g. `--log-level`.
        flag: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] without an origin yet (`load` adds where the value came from).
    pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            origin: String::new(),
            message: message.into(),
        }
    }
}

/// The config file, read once: figment reads it through this provider (so errors are
/// attributed to the file) and errors are placed at a line and column in its text.
pub(super) struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads `path` and checks its TOML syntax.
    pub(super) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: format!(
                "{e}; pass an existing, readable UTF-8 file with --config or BRIDGE_CONFIG"
            ),
        })?;
        if let Err(e) = DeTable::parse(&text) {
            return Err(syntax_error(path, &text, &e));
        }
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Toml::string(&self.text).data()
    }
}

/// A TOML syntax error: file, line, column and the parser's description of what it found
/// and expected — not the line itself.
pub(super) fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let place = e
        .span()
        .map(|s| {
            let (line, column) = line_col(text, s.start);
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default();
    ConfigError::File {
        path: path.to_path_buf(),
        reason: format!("TOML syntax error{place}: {}", e.message()),
    }
}

/// Turns a figment error into one that names the key and where its value came from: the
/// file with line and column, or the environment variable. The value itself is described
/// by its type only.
pub(super) fn from_figment(e: figment::Error, file: Option<&ConfigFile>) -> ConfigError {
    let key = display_key(&e.path);
    let unknown_key = matches!(e.kind, Kind::UnknownField(..));
    let origin = match &e.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(p)) => {
                let place = file
                    .filter(|f| f.path == *p)
                    .and_then(|f| locate(&f.text, &e.path, unknown_key))
                    .map(|(line, column)| format!(", line {line}, column {column}"))
                    .unwrap_or_default();
                format!(" (in file {}{place})", p.display())
            }
            Some(_) | None if md.name.contains("environment") => {
                let var = format!("BRIDGE_{}", e.path.join("__").to_uppercase());
                format!(" (from environment variable {var})")
            }
            _ => String::new(),
        },
        None => String::new(),
    };
    ConfigError::Invalid {
        key: if key.is_empty() { "(file)".into() } else { key },
        origin,
        message: describe(&e.kind),
    }
}

/// Adds where the value of an error's key came from (` (in file x.toml, line 3, column 8)`)
/// to an error found after extraction; keys as [`display_key`] writes them
/// (`endpoints[0].url`). A key the file does not set (a required key left out) is placed at
/// the nearest enclosing table the file does write. Values from the environment, the flags
/// or the defaults get no origin: the key alone names them.
pub(super) fn with_origin(e: ConfigError, fig: &Figment, file: Option<&ConfigFile>) -> ConfigError {
    let ConfigError::Invalid {
        key,
        origin,
        message,
    } = e
    else {
        return e;
    };
    let path: Vec<String> = key
        .split(['.', '['])
        .map(|p| p.trim_end_matches(']').to_string())
        .collect();
    let mut value = path.first().and_then(|first| fig.find_value(first).ok());
    let mut deepest = None;
    for part in &path[1..] {
        value = match value {
            Some(figment::value::Value::Dict(tag, mut d)) => {
                deepest = Some(tag);
                d.remove(part)
            }
            Some(figment::value::Value::Array(tag, mut a)) => {
                deepest = Some(tag);
                part.parse::<usize>()
                    .ok()
                    .filter(|i| *i < a.len())
                    .map(|i| a.swap_remove(i))
            }
            _ => None,
        };
    }
    let tag = value.map(|v| v.tag()).or(deepest);
    let source = tag
        .and_then(|t| fig.get_metadata(t))
        .and_then(|md| match &md.source {
            Some(figment::Source::File(p)) => Some(p.clone()),
            _ => None,
        });
    let origin = match source {
        Some(p) if origin.is_empty() => {
            let place = file
                .filter(|f| f.path == p)
                .and_then(|f| locate(&f.text, &path, false))
                .map(|(line, column)| format!(", line {line}, column {column}"))
                .unwrap_or_default();
            format!(" (in file {}{place})", p.display())
        }
        _ => origin,
    };
    ConfigError::Invalid {
        key,
        origin,
        message,
    }
}

/// What is wrong, with any value reduced to its type.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(f, expected) => format!(
            "unknown key `{f}`; expected one of: {}",
            expected.join(", ")
        ),
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", type_of(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid {} value; expected {expected}", type_of(actual))
        }
        Kind::InvalidLength(len, expected) => format!("{len} elements; expected {expected}"),
        Kind::UnknownVariant(_, expected) => {
            format!("unknown value; use one of: {}", expected.join(", "))
        }
        Kind::MissingField(f) => format!("missing key `{f}`"),
        Kind::DuplicateField(f) => format!("key `{f}` is given more than once"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Unsupported(actual) => format!("a {} is not supported here", type_of(actual)),
        Kind::UnsupportedKey(actual, expected) => {
            format!(
                "a {} key is not supported; expected {expected}",
                type_of(actual)
            )
        }
        // Messages of the bridge's own types (durations, secret references), which never
        // hold a value; the first line only of anything else (a TOML parser's message
        // continues with the offending line).
        Kind::Message(m) => m.lines().next().unwrap_or_default().to_string(),
    }
}

/// The type of a found value, without the value.
fn type_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "integer",
        Actual::Float(_) => "float",
        Actual::Char(_) => "character",
        Actual::Str(_) => "string",
        Actual::Bytes(_) => "byte string",
        Actual::Unit | Actual::Option => "empty value",
        Actual::Seq => "array",
        Actual::Map => "table",
        _ => "value of another type",
    }
}

/// `["endpoints", "0", "url"]` → `endpoints[0].url`.
fn display_key(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Line and column (1-based, columns in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Line and column of the value at `path` in `text` (of the key itself if `at_key`); of the
/// nearest enclosing table if the path leaves the file (a key set by another layer).
fn locate(text: &str, path: &[String], at_key: bool) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let mut span: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for (i, part) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let value = if let Some(t) = table {
            let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref() == part) else {
                break;
            };
            span = Some(if last && at_key { k.span() } else { v.span() });
            v
        } else if let Some(a) = array {
            let Some(v) = part.parse::<usize>().ok().and_then(|n| a.get(n)) else {
                break;
            };
            span = Some(v.span());
            v
        } else {
            break;
        };
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(&a[..])),
            _ => (None, None),
        };
    }
    span.map(|s| line_col(text, s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_line_and_column_but_not_the_line() {
        let text = "[redis]\nurl = \"redis://:CANARY-5ecret-7f3a@h\n";
        let e = DeTable::parse(text).unwrap_err();
        let shown = syntax_error(Path::new("c.toml"), text, &e).to_string();
        assert!(
            shown.contains("c.toml") && shown.contains("line 2"),
            "{shown}"
        );
        assert!(!shown.contains("5ecret"), "{shown}");
    }

    #[test]
    fn a_key_is_located_in_nested_tables_and_arrays_of_tables() {
        let text = "[redis]\nurl = 1\n\n[[endpoints]]\nname = \"a\"\n\n[[endpoints]]\nname = \"b\"\nsecrets = \"x\"\n";
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(locate(text, &path(&["redis", "url"]), false), Some((2, 7)));
        assert_eq!(
            locate(text, &path(&["endpoints", "1", "secrets"]), false),
            Some((9, 11))
        );
        assert_eq!(
            locate(text, &path(&["endpoints", "1", "secrets"]), true),
            Some((9, 1))
        );
    }

    #[test]
    fn a_found_value_is_described_by_its_type_only() {
        let kind = Kind::InvalidType(
            Actual::Str("CANARY-5ecret-7f3a".into()),
            "a sequence".into(),
        );
        assert_eq!(describe(&kind), "expected a sequence, found string");
        let kind = Kind::UnknownVariant("CANARY-5ecret-7f3a".into(), &["a", "b"]);
        assert!(!describe(&kind).contains("5ecret"));
    }
}
