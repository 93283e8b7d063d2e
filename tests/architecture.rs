//! The shape of `src/`, checked from the source: which top-level module imports which.
//!
//! Dependencies point one way, in pipeline order — shared types and plumbing underneath,
//! source → ingest → queue → delivery → dlq above them, and the `run` command and the other
//! commands on top. This test reads every `crate::…` path in `src/` (outside comments),
//! builds the graph of top-level modules and fails on:
//!
//! - an import that points "up" the order in [`LAYERS`], unless it is one of
//!   [`KNOWN_UPWARD`] (the edges the code had when this check was written; each is to be
//!   removed, and the test fails when one is gone but still listed, so the list only shrinks);
//! - an import cycle among top-level modules that is not made only of known edges;
//! - a top-level module missing from [`LAYERS`] (a new module must take its place).
//!
//! Written by hand rather than with a crate: the tools that draw Rust module graphs
//! (`cargo-modules`) need a nightly-built analyser and do not judge a layering; reading
//! `crate::` paths is enough for a crate that always names its own items that way.

mod source_tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use source_tree::rust_files;

/// Top-level modules from the bottom (may be imported by everything above) to the top. A
/// module may import only modules of a lower rank: a stage depends on the stages before it
/// (the queue on ingest's batches, the dead-letter stage on the delivery it records), never
/// on those after it, which it reaches through a type or trait of its own that the later
/// stage implements.
const LAYERS: &[(&str, u8)] = &[
    // The types and plumbing every stage shares.
    ("shutdown", 0),
    ("http_server", 0),
    ("key_render", 0),
    ("expr", 0),
    ("util", 0),
    ("message", 0),
    ("endpoint_state", 0),
    ("config", 1),
    ("redis", 2),
    ("telemetry", 2),
    // The pipeline, in order.
    // The cluster-wide pause flag: read by the delivery workers, set by the commands.
    ("pause", 3),
    ("source", 4),
    ("ingest", 5),
    ("queue", 6),
    ("delivery", 7),
    ("dlq", 8),
    // Serving and commands on top.
    ("admin", 9),
    // The migration's inventory, parity check and legacy-subscriber watch.
    ("migrate", 9),
    ("console", 10),
    ("app", 11),
    ("cli", 12),
    ("commands", 13),
];

/// Upward imports that exist today, each `(from, to)`, with the shared piece that causes
/// it. The restructure of the modules removes them (the piece moves down to where both
/// sides can reach it); none may be added.
const KNOWN_UPWARD: &[(&str, &str)] = &[];

/// The top-level module a file belongs to (`src/queue/redis.rs` → `queue`), or `None` for
/// `lib.rs` and `main.rs`, which wire everything and are the top.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The text of `source` without line comments (`//`, `///`, `//!`) and block comments, so
/// that a doc link to a later stage is not an import.
fn without_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The top-level modules that `code` names through `crate::`: `crate::queue::Job`,
/// `use crate::{config, delivery::Outcome}`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at depth 0 of the group: the first identifier of each comma-separated part.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            out.insert(name);
                        }
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// `from → {to}` over the top-level modules of `src/`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = rust_files(&src)
        .iter()
        .filter_map(|f| top_module(&src, f))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let Some(from) = top_module(&src, &file) else {
            continue;
        };
        let code = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let targets = graph.entry(from.clone()).or_default();
        for to in crate_references(&without_comments(&code)) {
            // Items of the crate root (`crate::exit`, `crate::VERSION`) belong to no stage.
            if to != from && modules.contains(&to) {
                targets.insert(to);
            }
        }
    }
    graph
}

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The cycles of `graph` through edges not in `allowed`, each as a path `a → b → … → a`.
fn cycles(
    graph: &BTreeMap<String, BTreeSet<String>>,
    allowed: &BTreeSet<(String, String)>,
) -> Vec<String> {
    // Tarjan would give components; a DFS that reports each back edge's loop is enough here
    // and names the modules involved.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        allowed: &BTreeSet<(String, String)>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut path = stack[pos..].to_vec();
            let edges: Vec<(String, String)> = path
                .iter()
                .zip(path.iter().skip(1).chain(std::iter::once(&stack[pos])))
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            if !edges.iter().all(|e| allowed.contains(e)) {
                path.push(node.to_owned());
                found.push(path.join(" → "));
            }
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, allowed, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, allowed, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn every_top_level_module_has_a_place_in_the_layers() {
    let missing: Vec<String> = module_graph()
        .into_keys()
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/architecture.rs LAYERS: {missing:?}"
    );
}

#[test]
fn no_module_imports_one_that_comes_after_it() {
    let known: BTreeSet<(String, String)> = KNOWN_UPWARD
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut upward = BTreeSet::new();
    for (from, targets) in module_graph() {
        for to in targets {
            if let (Some(a), Some(b)) = (rank(&from), rank(&to))
                && b > a
            {
                upward.insert((from.clone(), to));
            }
        }
    }
    let new: Vec<_> = upward.difference(&known).collect();
    assert!(
        new.is_empty(),
        "imports that point up the pipeline (from → to): {new:?}; \
         move the shared piece down instead"
    );
    let gone: Vec<_> = known.difference(&upward).collect();
    assert!(
        gone.is_empty(),
        "KNOWN_UPWARD lists edges the code no longer has; delete them: {gone:?}"
    );
}

#[test]
fn the_modules_have_no_import_cycle() {
    let known: BTreeSet<(String, String)> = KNOWN_UPWARD
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    // A cycle is only tolerated while each of its upward edges is a known one and every
    // other edge points down; `cycles` reports a loop unless all its edges are in
    // `tolerated`.
    let graph = module_graph();
    let mut tolerated = known.clone();
    for (from, targets) in &graph {
        for to in targets {
            if let (Some(a), Some(b)) = (rank(from), rank(to))
                && b < a
            {
                tolerated.insert((from.clone(), to.clone()));
            }
        }
    }
    let found = cycles(&graph, &tolerated);
    assert!(found.is_empty(), "import cycles: {found:#?}");
}

#[test]
fn references_are_read_from_paths_and_groups_but_not_comments() {
    let code = "use crate::{config::{self, Config}, queue};\n\
                /// See [`crate::dlq`].\n\
                fn f() { crate::delivery::run(); let s = \"//\"; crate::ingest::x(); }\n";
    let refs = crate_references(&without_comments(code));
    let expected: BTreeSet<String> = ["config", "queue", "delivery", "ingest"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(refs, expected);
}
