//! An endpoint's `filter`, `transform` and `transform_file`: read and compiled once at load
//! (and again on every reload), an invalid one refused naming the endpoint, the key and the
//! position in the expression; and `transform_file` paths resolved against the directory of
//! the config file, where the file is usually shipped beside it.

use std::path::{Path, PathBuf};

use super::endpoint::Keys;
use crate::config::raw::{RawConfig, RawEndpoint};
use crate::config::{ConfigError, SecurityConfig};
use crate::expr::{ExprError, Filter, Limits, Transform};

/// What an endpoint's expression keys compile to.
pub(super) struct Expressions {
    pub(super) filter: Option<Filter>,
    pub(super) transform: Option<Transform>,
    pub(super) transform_file: Option<PathBuf>,
}

/// Makes each relative `transform_file` relative to `dir`, the config file's directory, so
/// that a config and its transforms can move together; absolute paths stay as they are.
pub(in crate::config) fn resolve_transform_files(raw: &mut RawConfig, dir: &Path) {
    for ep in &mut raw.endpoints {
        if let Some(file) = &mut ep.transform_file
            && !file.trim().is_empty()
            && Path::new(file.as_str()).is_relative()
        {
            *file = dir.join(file.as_str()).display().to_string();
        }
    }
}

/// The endpoint's filter and transform, compiled with the bounds every run is held to (a
/// transform's output may be as large as `security.max_payload_bytes`, the largest message
/// the bridge takes).
pub(super) fn expressions(
    at: &Keys,
    ep: &RawEndpoint,
    security: &SecurityConfig,
) -> Result<Expressions, ConfigError> {
    let limits = Limits {
        max_output_bytes: security.max_payload_bytes,
        ..Limits::default()
    };
    let refused =
        |key: &str, what: String| at.invalid(key, format!("endpoint `{}`: {what}", ep.name));
    let filter = match ep.filter.as_deref() {
        None => None,
        Some(src) => {
            not_blank(src).map_err(|why| refused("filter", why))?;
            let f = Filter::compile(src)
                .map_err(|e| refused("filter", format!("the filter {}", compile_error(&e))))?;
            Some(f.with_limits(limits))
        }
    };
    let (src, transform_file) = match (ep.transform.as_deref(), ep.transform_file.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(refused(
                "transform_file",
                "set `transform` or `transform_file`, not both".into(),
            ));
        }
        (Some(src), None) => (Some(src.to_owned()), None),
        (None, Some(file)) => {
            let path = PathBuf::from(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                refused(
                    "transform_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            (Some(text), Some(path))
        }
        (None, None) => (None, None),
    };
    let key = if transform_file.is_some() {
        "transform_file"
    } else {
        "transform"
    };
    let in_file = transform_file
        .as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default();
    let transform = match src {
        None => None,
        Some(src) => {
            not_blank(&src).map_err(|why| refused(key, format!("the transform{in_file} {why}")))?;
            let t = Transform::compile(&src).map_err(|e| {
                refused(key, format!("the transform{in_file} {}", compile_error(&e)))
            })?;
            Some(t.with_limits(limits))
        }
    };
    Ok(Expressions {
        filter,
        transform,
        transform_file,
    })
}

/// An empty expression is refused rather than read as jq's identity: a key left empty is
/// more likely a mistake than a wish to deliver every message unchanged.
fn not_blank(src: &str) -> Result<(), String> {
    let code = src
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| !l.trim().is_empty());
    if code {
        Ok(())
    } else {
        Err("is empty; remove the key to deliver every message / the message unchanged".into())
    }
}

/// "does not compile: syntax error at line 2, column 5: …" — the position is the
/// expression's own (its text is configuration, not a secret).
fn compile_error(e: &ExprError) -> String {
    format!("does not compile: {e}")
}
