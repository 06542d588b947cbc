//! Tidy checks on plugin-host's source: no import cycle between its modules, and one place
//! that hands a context to plugin code.
//!
//! The module graph is read from the source text: every `crate::a::b` and `super::x` path a
//! file names is an edge from the file's module to the module it names. Between two
//! modules with the same parent (two top-level modules, or `isolate::process` and
//! `isolate::supervisor`), the edges must form no cycle, so each layer can be read, tested
//! and replaced on its own. A module and its own parent may name each other (a parent
//! re-exports its children's items; a child uses its parent's).
//!
//! One exception: the crate's [`Error`](plugin_host::Error) is the vocabulary every module
//! returns, and it wraps their own error types, so an edge *into* `error` (or to an item of
//! the crate root, such as `crate::ABI_CRATE_VERSION`) is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `isolate/process.rs` is `["isolate", "process"]`,
/// `isolate/mod.rs` is `["isolate"]`, `lib.rs` is `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source with comments and string literals blanked, so a path in a doc comment or a
/// message is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut in_string = false;
        let mut escaped = false;
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
                out.push(' ');
            } else {
                if c == '"' {
                    in_string = true;
                }
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The paths after `prefix::` in `code`, each split into its segments, with `{a, b::c}`
/// groups expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let take = |s: &str| -> Vec<String> {
            s.split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let path = take(item.trim());
                if !path.is_empty() {
                    found.push(path);
                }
            }
        } else {
            let path = take(rest);
            if !path.is_empty() {
                found.push(path);
            }
        }
    }
    found
}

/// The crate root's re-exports (`pub use context::{CancelHandle, Context};`): item name to
/// the module it comes from, so `crate::Context` counts as naming `context`.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in code_only(lib).split(';') {
        let statement = statement.trim();
        let Some(path) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    map
}

/// The edges between sibling modules: for each parent, the set of (from, to) children.
fn sibling_edges() -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let modules: BTreeSet<Vec<String>> = all.iter().map(|f| module_of(f)).collect();
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &all {
        let from = module_of(file);
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut targets = Vec::new();
        for path in paths_after(&code, "crate") {
            let path = match reexported.get(&path[0]) {
                Some(module) if !modules.contains(&vec![path[0].clone()]) => {
                    vec![module.clone()]
                }
                _ => path,
            };
            targets.push(path);
        }
        // `super::x` from `a/b.rs` (module a::b) names a::x; from `a/b/mod.rs` the same.
        for path in paths_after(&code, "super") {
            let mut target = from[..from.len().saturating_sub(1)].to_vec();
            target.extend(path);
            targets.push(target);
        }
        for target in targets {
            // The longest prefix of the path that is a module of the crate.
            let Some(target) = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue; // an item of the crate root
            };
            if target == ["error"] {
                continue;
            }
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            // A module and its ancestor or descendant: not an edge between siblings.
            if common == from.len() || common == target.len() {
                continue;
            }
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .insert((from[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for to in next.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(to, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in next.keys() {
        if let Some(cycle) = visit(node, &next, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_import_cycle_between_sibling_modules() {
    let edges = sibling_edges();
    // The graph is really read: the layers named in the docs are in it.
    let root = &edges[&Vec::<String>::new()];
    for (from, to) in [
        ("manager", "load"),
        ("load", "backend"),
        ("backend", "module"),
    ] {
        assert!(
            root.contains(&(from.to_owned(), to.to_owned())),
            "expected an edge {from} -> {to}; found {root:?}"
        );
    }
    let cycles: Vec<String> = edges
        .iter()
        .filter_map(|(parent, edges)| {
            find_cycle(edges).map(|cycle| {
                let parent = if parent.is_empty() {
                    "crate".to_owned()
                } else {
                    parent.join("::")
                };
                format!("in {parent}: {}", cycle.join(" -> "))
            })
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between modules of plugin-host:\n  {}\nMove what both sides need \
         into a module of its own, or pass it in (a function, a trait), so the dependency \
         runs one way.",
        cycles.join("\n  ")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("a", "c")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}

#[test]
fn one_production_site_hands_a_context_to_plugin_code() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut sites = Vec::new();
    for file in &all {
        // Tests (a `tests.rs` file, or a `#[cfg(test)] mod tests` at the end of a file)
        // may build their own.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let production = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (n, line) in code_only(production).lines().enumerate() {
            if line.contains("HostContext_TO::from_ptr") {
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                sites.push(format!("{rel}:{}", n + 1));
            }
        }
    }
    assert_eq!(sites.len(), 1, "sites that wrap a context: {sites:?}");
    assert!(sites[0].starts_with("module.rs:"), "{sites:?}");
}
