//! References checked against the table: what it does not allow, what it allows that no
//! code uses, and cycles.

use crate::table::Rules;
use crate::MAP;
use std::collections::BTreeSet;
use std::fmt;

/// A reference from one file to another top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) file: String,
    pub(crate) line: usize,
    /// The path as resolved from the crate root, e.g. `["refresh", "state", "State"]`.
    pub(crate) path: Vec<String>,
}

/// A reference the table does not allow, with everything a reader needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) module: String,
    pub(crate) used: String,
    pub(crate) allowed: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` uses `crate::{}`, but the map ({MAP}, \"may use\") lets `{}` use only: {}",
            self.file,
            self.line,
            self.module,
            self.used,
            self.module,
            if self.allowed.is_empty() {
                "nothing of ours".to_string()
            } else {
                self.allowed.join(", ")
            }
        )
    }
}

/// Every reference from a module to another top-level module that its row does not allow.
pub(crate) fn violations(rules: &Rules, references: &[Reference]) -> Vec<Violation> {
    let mut found = Vec::new();
    for reference in references {
        let module = top_level(&reference.file);
        let used = &reference.path[0];
        if *used == module {
            continue;
        }
        let allowed = rules.may_use.get(&module).cloned().unwrap_or_default();
        if !allowed
            .iter()
            .any(|entry| reference.path.starts_with(entry))
        {
            found.push(Violation {
                file: reference.file.clone(),
                line: reference.line,
                module: module.clone(),
                used: reference.path.join("::"),
                allowed: allowed.iter().map(|entry| entry.join("::")).collect(),
            });
        }
    }
    found
}

/// Table entries no reference needs: a permission the code does not use is a claim the map
/// makes that the code does not, so it goes.
pub(crate) fn unused_permissions(rules: &Rules, references: &[Reference]) -> Vec<String> {
    let mut unused = Vec::new();
    for (module, allowed) in &rules.may_use {
        for entry in allowed {
            let used = references.iter().any(|reference| {
                top_level(&reference.file) == *module && reference.path.starts_with(entry)
            });
            if !used {
                unused.push(format!(
                    "`{module}` may use `{}`, but nothing in it does",
                    entry.join("::")
                ));
            }
        }
    }
    unused
}

/// A cycle in the table, if any, as `a → b → a`.
pub(crate) fn cycle(rules: &Rules) -> Option<String> {
    fn visit(
        rules: &Rules,
        module: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = stack.iter().position(|m| m == module) {
            let mut path = stack[at..].to_vec();
            path.push(module.to_string());
            return Some(path.join(" → "));
        }
        if !done.insert(module.to_string()) {
            return None;
        }
        stack.push(module.to_string());
        for entry in rules.may_use.get(module).into_iter().flatten() {
            if let Some(found) = visit(rules, &entry[0], stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    rules
        .may_use
        .keys()
        .find_map(|module| visit(rules, module, &mut Vec::new(), &mut done))
}

/// `src/serve/api/mod.rs` → `serve`.
pub(crate) fn top_level(file: &str) -> String {
    let inside = file.strip_prefix("src/").unwrap_or(file);
    let first = inside.split('/').next().unwrap_or(inside);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// `src/serve/api/mod.rs` → `["serve", "api"]`.
pub(crate) fn module_path(file: &str) -> Vec<String> {
    let inside = file.strip_prefix("src/").unwrap_or(file);
    let inside = inside.strip_suffix(".rs").unwrap_or(inside);
    let mut segments: Vec<String> = inside.split('/').map(str::to_string).collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    segments
}
