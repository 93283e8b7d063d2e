//! The size rules that keep the code readable, checked so they stay: no non-test source
//! file over 600 lines, no function over 80 lines unless the comment above it says why,
//! and no allowance of clippy's lint against many arguments (a context struct reads better).
//!
//! Functions are found the way `rustfmt` lays them out: a line whose code starts with
//! `fn` (after visibility, `async`, `const`, `unsafe`, `extern`) opens one, and the first
//! later line that is only `}` at the same indentation closes it. The code is always
//! formatted (CI runs `cargo fmt --check`), so this is exact for this repository.

mod source_tree;

use std::path::{Path, PathBuf};

use source_tree::rust_files;

/// The longest a non-test source file may be.
const MAX_FILE_LINES: usize = 600;
/// The longest a function may be, counted from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 80;
/// A comment within the lines just above a longer function that contains this says why.
const LONG_BECAUSE: &str = "long because";

/// The product's sources: the crate and the benchmark. Tests are held to readability by
/// review, not by these limits.
fn product_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("src"));
    files.extend(rust_files(&root.join("examples")));
    files
}

/// Unit-test files: `tests.rs`, or any file under a `tests/` directory inside `src/`.
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// If `line` opens a function, its indentation.
fn opens_fn(line: &str) -> Option<usize> {
    let indent = line.len() - line.trim_start().len();
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    if rest.starts_with("extern ") {
        rest = rest.split_once("fn ").map_or(rest, |(_, r)| r);
        return (!rest.is_empty()).then_some(indent);
    }
    rest.starts_with("fn ").then_some(indent)
}

/// Every function longer than [`MAX_FN_LINES`] without a [`LONG_BECAUSE`] comment just
/// above it, as `(first line, length, name line)`. Code after a `#[cfg(test)]` line is a
/// test module's and is not counted.
fn long_functions(source: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.trim() == "#[cfg(test)]")
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    for (i, line) in lines[..end].iter().enumerate() {
        let Some(indent) = opens_fn(line) else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue; // a declaration in a trait, without a body
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(len) = lines[i..end].iter().position(|l| *l == close) else {
            continue; // a one-line function
        };
        let explained = lines[i.saturating_sub(12)..i]
            .iter()
            .any(|l| l.trim_start().starts_with("//") && l.contains(LONG_BECAUSE));
        if len + 1 > MAX_FN_LINES && !explained {
            found.push((i + 1, len + 1, line.trim().to_string()));
        }
    }
    found
}

#[test]
fn no_source_file_is_longer_than_six_hundred_lines() {
    let mut long = Vec::new();
    for file in product_files().iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(file).expect("readable source");
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            long.push(format!("{}: {n} lines", relative(file)));
        }
    }
    assert!(
        long.is_empty(),
        "split these files by concern (at most {MAX_FILE_LINES} lines each):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_function_is_longer_than_eighty_lines_unless_a_comment_says_why() {
    let mut long = Vec::new();
    for file in product_files() {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (line, len, name) in long_functions(&text) {
            long.push(format!("{}:{line}: {len} lines: {name}", relative(&file)));
        }
    }
    assert!(
        long.is_empty(),
        "split these functions (at most {MAX_FN_LINES} lines), or say in a comment above \
         one why it is {LONG_BECAUSE} ...:\n{}",
        long.join("\n")
    );
}

#[test]
fn nothing_allows_too_many_arguments() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = product_files();
    files.extend(rust_files(&root.join("tests")));
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("readable source")
                .contains(concat!("clippy::too_many", "_arguments"))
        })
        .map(|f| relative(f))
        .collect();
    assert!(
        offenders.is_empty(),
        "pass a context struct instead of allowing many arguments: {offenders:?}"
    );
}

#[test]
fn the_function_finder_measures_bodies_and_honours_the_reason_comment() {
    let body = "    x();\n".repeat(MAX_FN_LINES);
    let long = format!("pub async fn big() {{\n{body}}}\n");
    assert_eq!(
        long_functions(&long).len(),
        1,
        "an 82-line function is found"
    );
    let explained = format!("// This is {LONG_BECAUSE} the table reads best whole.\n{long}");
    assert!(
        long_functions(&explained).is_empty(),
        "the reason comment is honoured"
    );
    let short = "fn small() {\n    x();\n}\n";
    assert!(long_functions(short).is_empty(), "a short function passes");
    let in_tests = format!("#[cfg(test)]\nmod tests {{\n{long}}}\n");
    assert!(
        long_functions(&in_tests).is_empty(),
        "test modules are not counted"
    );
    let declared = "    fn declared(&self) -> u8;\n";
    assert!(
        long_functions(declared).is_empty(),
        "a trait declaration has no body"
    );
}
