//! The binary's help, through the real binary: every command has examples, offers only the
//! flags it uses, names its placeholders, and agrees with the README's commands table.

mod common;

use clap::CommandFactory as _;
use common::*;
use redis_webhook_bridge::cli::Cli;

/// Every command path of the binary (`["run"]`, `["dlq", "list"]`, …), from its definition.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

/// `redis-webhook-bridge PATH… --help`, which must succeed.
fn help(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = run_cli(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The README's `## Commands` table: (command forms in the first column, description).
fn readme_commands() -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## Commands\n")
        .nth(1)
        .expect("README has a Commands section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let forms = cells[0]
                .trim_start_matches("| ")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (forms, cells.get(1).unwrap_or(&"").to_lowercase())
        })
        .collect()
}

/// Words of five letters or more, lower-case, cut to five letters (a crude stem).
fn stems(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 5)
        .map(|w| w.to_lowercase()[..5].to_string())
        .collect()
}

#[test]
fn every_command_in_the_readme_table_exists_with_its_flags_examples_and_description() {
    let rows = readme_commands();
    assert!(rows.len() >= 8, "the table was found: {rows:?}");
    let paths = command_paths();
    for (forms, description) in rows {
        for form in forms {
            let words: Vec<&str> = form.split_whitespace().collect();
            let path: Vec<String> = words
                .iter()
                .take_while(|w| {
                    !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                })
                .map(|w| w.to_string())
                .collect();
            assert!(
                paths.contains(&path),
                "README lists `{form}`, but the binary has no command {path:?}"
            );
            let text = help(&path);
            for flag in words.iter().filter_map(|w| {
                let w = w.trim_start_matches('[').trim_end_matches(']');
                w.starts_with("--").then_some(w)
            }) {
                assert!(
                    text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                    "README lists {flag} for `{form}`, its help does not:\n{text}"
                );
            }
            // The description says what the help's first line says (the command's own, or
            // for a subcommand its group's).
            let readme_stems = stems(&description);
            let matches = |about: &str| {
                let about = stems(about);
                let shared = about.iter().filter(|s| readme_stems.contains(s)).count();
                !about.is_empty() && shared * 2 >= about.len()
            };
            let own = text.lines().next().unwrap_or("").to_string();
            let group = if path.len() > 1 {
                help(&path[..1]).lines().next().unwrap_or("").to_string()
            } else {
                String::new()
            };
            assert!(
                matches(&own) || matches(&group),
                "README's description of `{form}` does not match its help's `{own}`: {description}"
            );
        }
    }
}

#[test]
fn every_command_has_examples_and_no_raw_placeholders() {
    for path in command_paths() {
        if path.last().is_some_and(|p| p == "help") {
            continue;
        }
        let text = help(&path);
        assert!(
            text.contains("\nExamples:\n  redis-webhook-bridge "),
            "{path:?} --help has an Examples section:\n{text}"
        );
        // `--metrics-emf-interval <METRICS_EMF_INTERVAL>` is clap's default; a value name
        // says what to give.
        for line in text.lines() {
            let Some(at) = line.find("--") else { continue };
            let mut parts = line[at + 2..].split_whitespace();
            let (Some(flag), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let flag = flag.trim_end_matches(',');
            if flag.contains('-') && value.starts_with('<') {
                let raw = format!("<{}>", flag.to_uppercase().replace('-', "_"));
                assert_ne!(value, raw, "{path:?}: `{line}` needs a value name");
            }
        }
    }
}

#[test]
fn commands_that_read_no_config_do_not_offer_the_config_flags() {
    for command in ["sign", "verify", "receive"] {
        let text = help(&[command.to_string()]);
        for flag in ["--redis-url", "--config", "--log-level", "--log-format"] {
            assert!(
                !text.contains(flag),
                "{command} --help offers {flag}:\n{text}"
            );
        }
    }
    for command in ["run", "check-config"] {
        let text = help(&[command.to_string()]);
        assert!(text.contains("--log-format <json|text>"), "{text}");
        assert!(text.contains("--redis-url <URL>"), "{text}");
    }
    // The flags still work before the command, as they always did.
    let out = run_cli(
        &["--redis-url", "redis://elsewhere:6390", "sign", "--help"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn pause_help_and_the_readme_agree_on_how_fast_replicas_see_a_pause() {
    let text = help(&["pause".to_string()]);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let pausing = readme
        .split("\n### Pausing\n")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("README has a Pausing section");
    let interval = format!("{} ms", redis_webhook_bridge::pause::POLL_EVERY.as_millis());
    assert!(
        text.contains(&interval),
        "pause --help says {interval}:\n{text}"
    );
    assert!(
        pausing.contains(&interval),
        "README's Pausing says {interval}:\n{pausing}"
    );
}
