//! The repository is self-contained: nothing in it (build, tests, scripts, CI, docs) reads a
//! path outside the checkout, so a plain clone builds and tests on its own.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files git tracks (a plain `git ls-files`), or, outside a git checkout, every file
/// under the root except build output.
fn tracked_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output();
    if let Ok(out) = out
        && out.status.success()
    {
        return out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect();
    }
    let mut files = Vec::new();
    walk(Path::new(ROOT), Path::new(""), &mut files);
    files
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == ".git" || name == "target" {
            continue;
        }
        let rel = rel.join(&name);
        if entry.path().is_dir() {
            walk(root, &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// Where a relative path starting with `../` lands, from `dir` (relative to the root); None
/// when it climbs above the root.
fn resolve(dir: &Path, relative: &str) -> Option<PathBuf> {
    let mut parts: Vec<Component> = dir.components().collect();
    for c in Path::new(relative).components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// The problems of one file's text: each names the line and what leaves the repository.
fn escapes(file: &Path, text: &str) -> Vec<String> {
    // Built from pieces so that this file does not match itself.
    let machine_paths = [["/wo", "rk/"].concat(), ["../sha", "red"].concat()];
    let manifest_dir = ["CARGO_MANIFEST", "_DIR"].concat();
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{}:{}", file.display(), n + 1);
        for p in &machine_paths {
            if line.contains(p.as_str()) {
                found.push(format!(
                    "{at}: `{p}` is a path outside the repository: {line}"
                ));
            }
        }
        // The manifest dir followed by `"/../…"` (in `concat!`) or `.join("..")`.
        if let Some(i) = line.find(&manifest_dir) {
            let rest = &line[i..];
            if rest.contains("\"/..") || rest.contains("\"..") {
                found.push(format!("{at}: climbs out of the manifest dir: {line}"));
            }
        } else if line.trim_start().starts_with("\"/..") || line.trim_start().starts_with("\"..") {
            // The continuation line of a multi-line `concat!(env!(…), "/../…")`.
            let prev = text.lines().nth(n.wrapping_sub(1)).unwrap_or("");
            if prev.contains(&manifest_dir) {
                found.push(format!("{at}: climbs out of the manifest dir: {line}"));
            }
        }
        // Relative paths (links in docs, `$(dirname "$0")/..` in scripts) resolve from the
        // file's own directory and stay inside the root.
        let mut rest = line;
        while let Some(i) = rest.find("../") {
            let start = rest[..i]
                .rfind(|c: char| c.is_whitespace() || "([\"'`<=,".contains(c))
                .map_or(0, |s| s + 1);
            let token: String = rest[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !")]\"'`>,".contains(*c))
                .collect();
            let relative = token.trim_start_matches("./");
            if relative.starts_with("..") && resolve(dir, relative).is_none() {
                found.push(format!("{at}: `{token}` leaves the repository: {line}"));
            }
            rest = &rest[i + 3..];
        }
    }
    found
}

#[test]
fn no_tracked_file_reads_a_path_outside_the_repository() {
    let files = tracked_files();
    assert!(
        files.iter().any(|f| f == Path::new("Cargo.toml")),
        "the file list of {ROOT} has no Cargo.toml: {files:?}"
    );
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(file)) else {
            continue; // binary, or deleted in the work tree
        };
        problems.extend(escapes(file, &text));
    }
    assert!(
        problems.is_empty(),
        "files refer to paths outside the repository (a clone has nothing there; copy what is \
         needed into the repository, e.g. tests/fixtures/):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_escape_check_catches_each_kind_of_path_out() {
    let manifest = ["env!(\"CARGO_MANIFEST", "_DIR\")"].concat();
    let escaping = [
        (
            "src/a.rs",
            format!("include_str!(concat!({manifest}, \"/../x/y.json\"));"),
        ),
        (
            "src/a.rs",
            format!("let p = concat!(\n    {manifest},\n    \"/../x/y.json\"\n);"),
        ),
        ("tests/a.rs", ["let p = \"/wo", "rk/x/y.json\";"].concat()),
        (
            "docs/A.md",
            ["see [the fixture](../", "../x/y.json)"].concat(),
        ),
        (
            "scripts/a.sh",
            ["cat \"$root/../sha", "red/y.json\""].concat(),
        ),
        ("README.md", "[y](../y.json)".to_string()),
    ];
    for (file, text) in &escaping {
        assert!(
            !escapes(Path::new(file), text).is_empty(),
            "{file}: not caught: {text}"
        );
    }
    let staying = [
        ("docs/A.md", "see [bench](../examples/bench.rs)"),
        ("scripts/a.sh", "cd \"$(dirname \"${BASH_SOURCE[0]}\")/..\""),
        (
            "tests/a.rs",
            "Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"tests/fixtures\")",
        ),
    ];
    for (file, text) in staying {
        assert!(
            escapes(Path::new(file), text).is_empty(),
            "{file}: wrongly flagged: {text}: {:?}",
            escapes(Path::new(file), text)
        );
    }
}
