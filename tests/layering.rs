//! The modules of the library and of the command form floors: no module
//! names one that names it back, directly or round a loop (DEVELOPERS.md).
//! This reads the sources as text, the way a reviewer reads `use` lines,
//! and fails with the loop it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`a::b`) of every `.rs` file under `root`, with its text
/// up to its unit tests (a test module may use anything).
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel: PathBuf = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                    parts.pop();
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap()
                    .split("#[cfg(all(test")
                    .next()
                    .unwrap();
                let code: String = code
                    .lines()
                    .map(|l| l.split("//").next().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n");
                out.insert(parts.join("::"), code);
            }
        }
    }
    out
}

/// The paths named after `prefix::` in `code`, with `use` groups
/// (`prefix::{a, b::c}`) opened, as `a`, `b::c`.
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let needle = format!("{prefix}::");
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(path_start(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            out.push(path_start(rest));
        }
    }
    out
}

/// The leading `a::b` of a path (two segments at most).
fn path_start(text: &str) -> String {
    let path: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    path.split("::")
        .filter(|s| !s.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join("::")
}

/// Which module names which, among the modules under `root`; `crate_path`
/// is how code there names the root (`crate` or `crate::cmd`).
fn graph(root: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(root);
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| mods.contains_key(m))
    };
    let mut out = BTreeMap::new();
    for (name, code) in &mods {
        let mut deps = BTreeSet::new();
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        for path in named_after(code, crate_path) {
            deps.extend(resolve(&path));
        }
        if !name.is_empty() {
            for path in named_after(code, "super") {
                let full = match parent {
                    "" => path,
                    parent => format!("{parent}::{path}"),
                };
                deps.extend(resolve(&full));
            }
        }
        deps.remove(name);
        // A module's own children are below it, not beside it.
        deps.retain(|d| !d.starts_with(&format!("{name}::")) && !name.is_empty());
        out.insert(name.clone(), deps);
    }
    out
}

/// A loop in `graph`, if there is one.
fn find_loop(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

fn assert_floors(dir: &str, crate_path: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let graph = graph(&root, crate_path);
    assert!(
        graph.len() > 5,
        "read too few modules under {dir}: {graph:?}"
    );
    if let Some(cycle) = find_loop(&graph) {
        panic!(
            "{dir}: modules name each other round a loop: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_library_modules_form_floors() {
    assert_floors("src/lib", "crate");
}

#[test]
fn the_command_modules_form_floors() {
    assert_floors("src/cmd", "crate::cmd");
}

// The checker itself: a loop written on purpose is found.
#[test]
fn a_loop_is_found() {
    let mut graph = BTreeMap::new();
    for (from, to) in [
        ("error", "peer"),
        ("peer", "ring"),
        ("ring", "error"),
        ("ring", "region"),
    ] {
        graph
            .entry(from.to_string())
            .or_insert_with(BTreeSet::new)
            .insert(to.to_string());
    }
    let cycle = find_loop(&graph).expect("the loop is found");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    graph.get_mut("ring").unwrap().remove("error");
    assert_eq!(find_loop(&graph), None);
    assert_eq!(
        named_after(
            "use crate::{a, b::{c, d}};\nlet x = crate::e::f(1);",
            "crate"
        ),
        ["a", "b", "e::f"].map(String::from)
    );
}
