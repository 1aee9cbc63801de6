//! The code map checks itself: every `crate::` path in `src/` (in a `use` or in code, brace
//! groups expanded) and every `super::` that climbs out of a top-level module is checked
//! against the "may use" table in `docs/ARCHITECTURE.md`. The table is this test's input, so
//! the map cannot drift from the code: a use the table does not allow fails, and so does a
//! permission the code no longer needs, a module without a row and a cycle. It also checks
//! the map's platform rule: a one-platform module is gated on its `mod` line, not from
//! inside its file (`#![cfg]`) nor item by item.
//!
//! Unit tests (`#[cfg(test)]` modules and files) may reach further, as the map says; the
//! crate root (`lib.rs`, `main.rs`) only declares modules and is not checked.

mod check;
mod examples;
mod scan;
mod table;

use check::{cycle, module_path, unused_permissions, violations, Reference};
use scan::{scan, strip};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use table::parse_table;

/// The map, relative to the crate root.
pub(crate) const MAP: &str = "docs/ARCHITECTURE.md";

/// Every `.rs` file under `src/`, as `src/…` paths, sorted.
fn source_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join("src"), root, &mut files);
    files.sort();
    files
}

/// The references of every non-test file in the tree, and the top-level modules found.
fn tree_references(root: &Path) -> (Vec<Reference>, BTreeSet<String>) {
    let files = source_files(root);
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut references = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        if file == "src/lib.rs" || file == "src/main.rs" {
            continue;
        }
        let module = module_path(file);
        modules.insert(module[0].clone());
        let source = std::fs::read_to_string(root.join(file)).expect("read a source file");
        let scanned = scan(&source, &module);
        let dir = Path::new(file).parent().expect("a folder").to_path_buf();
        let own_dir = if file.ends_with("/mod.rs") {
            dir
        } else {
            dir.join(Path::new(file).file_stem().expect("a name"))
        };
        for child in scanned.test_only_children {
            test_only.insert(own_dir.join(format!("{child}.rs")));
            test_only.insert(own_dir.join(&child));
        }
        references.extend(
            scanned
                .references
                .into_iter()
                .map(|(line, path)| Reference {
                    file: file.clone(),
                    line,
                    path,
                }),
        );
    }
    references.retain(|reference| {
        !test_only
            .iter()
            .any(|skip| Path::new(&reference.file).starts_with(skip))
    });
    (references, modules)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_module_uses_only_what_the_map_allows() {
    let root = root();
    let rules = parse_table(&std::fs::read_to_string(root.join(MAP)).expect("read the map"))
        .unwrap_or_else(|problem| panic!("{MAP}: {problem}"));
    let (references, modules) = tree_references(&root);
    assert!(
        references.len() > 100,
        "the scan found only {} references",
        references.len()
    );

    let mut problems: Vec<String> = Vec::new();
    for module in &modules {
        if !rules.may_use.contains_key(module) {
            problems.push(format!(
                "`src/{module}` has no row in the \"may use\" table"
            ));
        }
    }
    for (module, allowed) in &rules.may_use {
        if !modules.contains(module) {
            problems.push(format!(
                "the table has a row for `{module}`, which is not a module in src/"
            ));
        }
        for entry in allowed {
            if !names_a_module(&root, entry) {
                problems.push(format!(
                    "`{module}` may use `{}`, which is not a module or a public item of one",
                    entry.join("::")
                ));
            }
        }
    }
    problems.extend(
        violations(&rules, &references)
            .iter()
            .map(ToString::to_string),
    );
    problems.extend(unused_permissions(&rules, &references));
    problems.extend(cycle(&rules).map(|cycle| format!("the table has a cycle: {cycle}")));
    assert!(
        problems.is_empty(),
        "the code and its map disagree:\n{}",
        problems.join("\n")
    );
}

/// The map's platform rule: a module that exists on one platform only is gated on its
/// `mod` line, so the parent shows every platform split; never from inside its own file
/// (`#![cfg]`), and nothing inside it is gated by platform again.
#[test]
fn platform_only_modules_are_gated_on_their_mod_line() {
    let root = root();
    let files = source_files(&root);
    let stripped: Vec<(String, String)> = files
        .iter()
        .map(|file| {
            let source = std::fs::read_to_string(root.join(file)).expect("read a source file");
            (file.clone(), strip(&source))
        })
        .collect();
    let gated: Vec<PathBuf> = stripped
        .iter()
        .flat_map(|(file, text)| platform_gated_children(file, text))
        .collect();
    assert!(
        gated.len() >= 5,
        "found only {} platform-gated modules",
        gated.len()
    );
    let mut problems = Vec::new();
    for (file, text) in &stripped {
        let inside_gated = gated.iter().any(|module| {
            Path::new(file).starts_with(module) || Path::new(file) == module.with_extension("rs")
        });
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("#![cfg(") {
                problems.push(format!(
                    "{file}:{}: {line} (gate it on its `mod` line)",
                    index + 1
                ));
            } else if inside_gated && is_platform_cfg(line) {
                problems.push(format!(
                    "{file}:{}: {line} (the module is gated on its `mod` line already)",
                    index + 1
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the platform rule ({MAP}, \"Platforms\") is broken:\n{}",
        problems.join("\n")
    );
}

/// `#[cfg(…)]` naming a platform (`target_os`, `windows`, `unix`, `target_family`).
fn is_platform_cfg(line: &str) -> bool {
    line.starts_with("#[cfg(")
        && ["target_os", "windows", "unix", "target_family"]
            .iter()
            .any(|word| line.contains(word))
}

/// The child modules `file` declares under a platform `#[cfg]` (`mod name;`), as the folder
/// path of each (`src/serve/socket`; its file is that path with `.rs`, or a folder).
fn platform_gated_children(file: &str, stripped: &str) -> Vec<PathBuf> {
    let dir = Path::new(file).parent().expect("a folder").to_path_buf();
    let own_dir = if file.ends_with("/mod.rs") || file == "src/lib.rs" {
        dir
    } else {
        dir.join(Path::new(file).file_stem().expect("a name"))
    };
    let lines: Vec<&str> = stripped.lines().map(str::trim).collect();
    let mut children = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if !is_platform_cfg(line) {
            continue;
        }
        let item = lines[index + 1..]
            .iter()
            .find(|next| !next.starts_with("#["));
        let name = item.and_then(|item| {
            let declaration = match item.strip_prefix("pub") {
                Some(rest) if rest.starts_with('(') => rest.split_once(") ")?.1,
                Some(rest) => rest.trim_start(),
                None => item,
            };
            declaration.strip_prefix("mod ")?.strip_suffix(';')
        });
        if let Some(name) = name {
            children.push(own_dir.join(name));
        }
    }
    children
}

/// `refresh::state` names `src/refresh/state.rs` or `src/refresh/state/mod.rs`;
/// `sink::RESYNC_INTERVAL` a public item of `sink`.
fn names_a_module(root: &Path, entry: &[String]) -> bool {
    module_file(root, entry).is_some()
        || entry.split_last().is_some_and(|(item, parent)| {
            module_file(root, parent).is_some_and(|file| {
                let source = std::fs::read_to_string(file).expect("read a source file");
                let declared = ["const", "static", "fn", "struct", "enum", "type", "trait"]
                    .iter()
                    .any(|kind| source.contains(&format!("pub {kind} {item}")));
                // A re-export (`pub use child::{item, …};`) is a public item of the parent too.
                let re_exported = source.lines().any(|line| {
                    line.trim_start().starts_with("pub use ")
                        && line
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .any(|word| word == item)
                });
                declared || re_exported
            })
        })
}

fn module_file(root: &Path, module: &[String]) -> Option<PathBuf> {
    if module.is_empty() {
        return None;
    }
    let base = root.join("src").join(module.join("/"));
    [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|file| file.is_file())
}
