//! The "may use" table of `docs/ARCHITECTURE.md`, read from its markdown.

use std::collections::BTreeMap;

pub(crate) const TABLE_HEADING: &str = "## Who may use whom";

/// One row of the table: a top-level module and the paths it may use (`health` allows all
/// of `health`, `refresh::state` only that submodule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) may_use: BTreeMap<String, Vec<Vec<String>>>,
}

/// Reads the first markdown table after [`TABLE_HEADING`]: `| `module` | `a`, `b::c` |`, the
/// first two columns; `nothing` stands for an empty list.
pub(crate) fn parse_table(markdown: &str) -> Result<Rules, String> {
    let after = markdown
        .split_once(TABLE_HEADING)
        .ok_or_else(|| format!("no heading {TABLE_HEADING:?}"))?
        .1;
    let mut may_use = BTreeMap::new();
    let mut in_table = false;
    for line in after.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 || cells[0].starts_with("---") || cells[0] == "module" {
            continue;
        }
        let module = unquote(cells[0]);
        if module.is_empty() || module.contains("::") {
            return Err(format!(
                "row {line:?}: the first cell names a top-level module"
            ));
        }
        let allowed = if cells[1] == "nothing" {
            Vec::new()
        } else {
            cells[1]
                .split(',')
                .map(|entry| unquote(entry).split("::").map(str::to_string).collect())
                .collect()
        };
        if may_use.insert(module.clone(), allowed).is_some() {
            return Err(format!("`{module}` has two rows"));
        }
    }
    if may_use.is_empty() {
        return Err(format!("no table after {TABLE_HEADING:?}"));
    }
    Ok(Rules { may_use })
}

pub(crate) fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').trim().to_string()
}
