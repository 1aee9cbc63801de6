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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

const MAP: &str = "docs/ARCHITECTURE.md";
const TABLE_HEADING: &str = "## Who may use whom";

/// One row of the table: a top-level module and the paths it may use (`health` allows all
/// of `health`, `refresh::state` only that submodule).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    may_use: BTreeMap<String, Vec<Vec<String>>>,
}

/// A reference from one file to another top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    file: String,
    line: usize,
    /// The path as resolved from the crate root, e.g. `["refresh", "state", "State"]`.
    path: Vec<String>,
}

/// A reference the table does not allow, with everything a reader needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    module: String,
    used: String,
    allowed: Vec<String>,
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

// ---------------------------------------------------------------------------------------------
// The table

/// Reads the first markdown table after [`TABLE_HEADING`]: `| `module` | `a`, `b::c` |`, the
/// first two columns; `nothing` stands for an empty list.
fn parse_table(markdown: &str) -> Result<Rules, String> {
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

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// The code

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Blanks comments, strings and char literals (keeping newlines, so lines still count).
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"')
                .chain((0..hashes).map(|_| '#'))
                .collect();
            let body_start = j + 1;
            let rest: String = chars[body_start..].iter().collect();
            let body_len = rest
                .find(&closing)
                .map_or(rest.len(), |at| rest[..at].chars().count());
            let end = (body_start + body_len + closing.chars().count()).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                chars
                    .get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == '\''))
                    .map(|at| i + 3 + at + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(chars[i..end].iter().map(|&c| blank(c)));
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether `chars[i]` continues an identifier (`br"…"` is still a raw string).
fn ident_before(chars: &[char], i: usize) -> bool {
    let continues = |at: usize| chars[at].is_alphanumeric() || chars[at] == '_';
    i > 0 && continues(i - 1) && !(chars[i - 1] == 'b' && (i == 1 || !continues(i - 2)))
}

/// Identifiers, `::` and single punctuation, each with its line.
fn tokenize(stripped: &str) -> Vec<(usize, Token)> {
    let mut tokens = Vec::new();
    for (index, text) in stripped.lines().enumerate() {
        let line = index + 1;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push((line, Token::Ident(chars[start..i].iter().collect())));
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                tokens.push((line, Token::PathSep));
                i += 2;
            } else if c.is_whitespace() || c.is_numeric() {
                i += 1;
            } else {
                tokens.push((line, Token::Punct(c)));
                i += 1;
            }
        }
    }
    tokens
}

fn is_ident(token: Option<&(usize, Token)>, name: &str) -> bool {
    matches!(token, Some((_, Token::Ident(found))) if found == name)
}

fn is_punct(token: Option<&(usize, Token)>, wanted: char) -> bool {
    matches!(token, Some((_, Token::Punct(found))) if *found == wanted)
}

/// Whether the attribute starting at `tokens[at]` (`#`) is `#[cfg(test)]` or
/// `#[cfg(all(test, …))]`: code only unit tests build. Returns the index after it.
fn test_only_attribute(tokens: &[(usize, Token)], at: usize) -> Option<usize> {
    if !is_punct(tokens.get(at), '#') || !is_punct(tokens.get(at + 1), '[') {
        return None;
    }
    let words: Vec<&Token> = tokens[at + 2..].iter().take(5).map(|(_, t)| t).collect();
    let ident = |i: usize, name: &str| matches!(words.get(i), Some(Token::Ident(n)) if n == name);
    let punct = |i: usize, c: char| matches!(words.get(i), Some(Token::Punct(p)) if *p == c);
    let plain = ident(0, "cfg") && punct(1, '(') && ident(2, "test") && punct(3, ')');
    let all =
        ident(0, "cfg") && punct(1, '(') && ident(2, "all") && punct(3, '(') && ident(4, "test");
    (plain || all).then(|| attribute_end(tokens, at))
}

/// The index after the attribute `#[…]` starting at `tokens[at]`.
fn attribute_end(tokens: &[(usize, Token)], at: usize) -> usize {
    balanced_end(tokens, at + 1, ('[', ']'), false)
}

/// Where a brace-balanced item starting at `at` ends (after its `}` or `;`).
fn item_end(tokens: &[(usize, Token)], at: usize) -> usize {
    balanced_end(tokens, at, ('{', '}'), true)
}

/// The index after the `close` that balances the first `open` from `tokens[at]` on, or
/// after a `;` outside any pair when `semicolon_ends`.
fn balanced_end(
    tokens: &[(usize, Token)],
    at: usize,
    (open, close): (char, char),
    semicolon_ends: bool,
) -> usize {
    let mut depth = 0;
    for (i, (_, token)) in tokens.iter().enumerate().skip(at) {
        match token {
            Token::Punct(c) if *c == open => depth += 1,
            Token::Punct(c) if *c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            Token::Punct(';') if semicolon_ends && depth == 0 => return i + 1,
            _ => {}
        }
    }
    tokens.len()
}

/// What one file says about others: the paths it names from the crate root, and the child
/// files that only unit tests build (`#[cfg(test)] mod name;`).
#[derive(Debug, Default, PartialEq, Eq)]
struct FileScan {
    references: Vec<(usize, Vec<String>)>,
    test_only_children: Vec<String>,
}

/// Scans one file whose module path is `module` (e.g. `["serve", "api"]` for
/// `src/serve/api/mod.rs`).
fn scan(source: &str, module: &[String]) -> FileScan {
    let tokens = tokenize(&strip(source));
    let mut result = FileScan::default();
    // The inline modules we are in: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = test_only_attribute(&tokens, i) {
            let mut item = after;
            while is_punct(tokens.get(item), '#') {
                item = attribute_end(&tokens, item);
            }
            let end = item_end(&tokens, item);
            let pub_offset = usize::from(is_ident(tokens.get(item), "pub"));
            if is_ident(tokens.get(item + pub_offset), "mod") && is_punct(tokens.get(end - 1), ';')
            {
                if let Some((_, Token::Ident(name))) = tokens.get(item + pub_offset + 1) {
                    result.test_only_children.push(name.clone());
                }
            }
            i = end;
            continue;
        }
        let (line, token) = &tokens[i];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, closes)| *closes == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some((_, Token::Ident(name))), true) =
                    (tokens.get(i + 1), is_punct(tokens.get(i + 2), '{'))
                {
                    inline.push((name.clone(), depth));
                }
            }
            Token::Ident(word)
                if word == "crate" && matches!(tokens.get(i + 1), Some((_, Token::PathSep))) =>
            {
                let (paths, next) = path_tree(&tokens, i + 2);
                result
                    .references
                    .extend(paths.into_iter().map(|path| (*line, path)));
                i = next;
                continue;
            }
            Token::Ident(word)
                if word == "super" && matches!(tokens.get(i + 1), Some((_, Token::PathSep))) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let mut j = i;
                let mut climbed_out = false;
                while is_ident(tokens.get(j), "super")
                    && matches!(tokens.get(j + 1), Some((_, Token::PathSep)))
                {
                    climbed_out |= here.pop().is_none();
                    j += 2;
                }
                let (paths, next) = path_tree(&tokens, j);
                if here.is_empty() && !climbed_out {
                    result
                        .references
                        .extend(paths.into_iter().map(|path| (*line, path)));
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    result
}

/// Reads a path (or a `use` tree) starting at `tokens[at]`, just after a `::`, expanding
/// `{a, b::{c, d}}` into every path. Returns the paths and the index after them.
fn path_tree(tokens: &[(usize, Token)], at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = at;
    loop {
        match tokens.get(i) {
            Some((_, Token::Ident(segment))) => {
                prefix.push(segment.clone());
                i += 1;
                if matches!(tokens.get(i), Some((_, Token::PathSep))) {
                    i += 1;
                    continue;
                }
                return (vec![prefix], i);
            }
            Some((_, Token::Punct('{'))) => {
                let mut paths = Vec::new();
                i += 1;
                while i < tokens.len() && !is_punct(tokens.get(i), '}') {
                    if is_punct(tokens.get(i), ',') {
                        i += 1;
                        continue;
                    }
                    let (inner, next) = path_tree(tokens, i);
                    for tail in inner {
                        let mut path = prefix.clone();
                        path.extend(tail.into_iter().filter(|segment| segment != "self"));
                        paths.push(path);
                    }
                    // Skip `as alias` and anything else up to the next `,` or `}`.
                    i = next;
                    while i < tokens.len()
                        && !is_punct(tokens.get(i), ',')
                        && !is_punct(tokens.get(i), '}')
                    {
                        i += 1;
                    }
                }
                return (paths, i + 1);
            }
            _ => {
                return (
                    if prefix.is_empty() {
                        Vec::new()
                    } else {
                        vec![prefix]
                    },
                    i,
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The check

/// Every reference from a module to another top-level module that its row does not allow.
fn violations(rules: &Rules, references: &[Reference]) -> Vec<Violation> {
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
fn unused_permissions(rules: &Rules, references: &[Reference]) -> Vec<String> {
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
fn cycle(rules: &Rules) -> Option<String> {
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
fn top_level(file: &str) -> String {
    let inside = file.strip_prefix("src/").unwrap_or(file);
    let first = inside.split('/').next().unwrap_or(inside);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// `src/serve/api/mod.rs` → `["serve", "api"]`.
fn module_path(file: &str) -> Vec<String> {
    let inside = file.strip_prefix("src/").unwrap_or(file);
    let inside = inside.strip_suffix(".rs").unwrap_or(inside);
    let mut segments: Vec<String> = inside.split('/').map(str::to_string).collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    segments
}

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

// ---------------------------------------------------------------------------------------------
// The tree against its map

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
            if line.starts_with("#![cfg") {
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
                ["const", "static", "fn", "struct", "enum", "type", "trait"]
                    .iter()
                    .any(|kind| source.contains(&format!("pub {kind} {item}")))
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

// ---------------------------------------------------------------------------------------------
// The checker on small examples, so it can fail

const EXAMPLE_MAP: &str = "# Map\n\n## Who may use whom\n\n\
| module | may use | why |\n\
|---|---|---|\n\
| `refresh` | `imds`, `health::metrics` | asks IMDS |\n\
| `imds` | nothing | the bottom |\n\
| `health` | nothing | |\n\n\
Text after the table.\n| `ignored` | `refresh` |\n";

fn example_rules() -> Rules {
    parse_table(EXAMPLE_MAP).expect("the example map parses")
}

fn example_references(file: &str, source: &str) -> Vec<Reference> {
    scan(source, &module_path(file))
        .references
        .into_iter()
        .map(|(line, path)| Reference {
            file: file.to_string(),
            line,
            path,
        })
        .collect()
}

fn example_violations(file: &str, source: &str) -> Vec<Violation> {
    violations(&example_rules(), &example_references(file, source))
}

#[test]
fn the_table_is_read_from_its_section() {
    let rules = example_rules();
    assert_eq!(rules.may_use.len(), 3);
    assert_eq!(
        rules.may_use["refresh"],
        vec![
            vec!["imds".to_string()],
            vec!["health".to_string(), "metrics".to_string()]
        ]
    );
    assert!(rules.may_use["imds"].is_empty());
    assert!(parse_table("# no table here").is_err());
    let twice = format!("{TABLE_HEADING}\n| `a` | nothing |\n| `a` | nothing |\n");
    assert_eq!(parse_table(&twice), Err("`a` has two rows".to_string()));
}

#[test]
fn a_forbidden_import_names_the_file_the_line_and_the_rule() {
    let source = "//! A policy.\nuse crate::imds::Client;\n\nuse crate::{health::metrics::Counter, config::Config};\n";
    let found = example_violations("src/refresh/policy.rs", source);
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "src/refresh/policy.rs:4: `refresh` uses `crate::config::Config`, but the map \
             (docs/ARCHITECTURE.md, \"may use\") lets `refresh` use only: imds, health::metrics"
                .to_string()
        ]
    );
}

#[test]
fn a_submodule_permission_does_not_open_its_siblings() {
    let source = "fn f() { let _ = crate::health::heartbeat::beat(); }\n";
    let found = example_violations("src/refresh/engine.rs", source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].used, "health::heartbeat::beat");
    assert_eq!(found[0].line, 1);
}

#[test]
fn paths_in_code_nested_groups_and_aliases_are_all_read() {
    let source = "use crate::a::{b::{c, d as e}, self, f::*};\n\
                  fn g() -> crate::h::I { crate::j::k(pub_crate()) }\n\
                  pub(crate) fn pub_crate() {}\n";
    let paths: Vec<String> = scan(source, &["m".to_string()])
        .references
        .into_iter()
        .map(|(_, path)| path.join("::"))
        .collect();
    assert_eq!(
        paths,
        vec!["a::b::c", "a::b::d", "a", "a::f", "h::I", "j::k"]
    );
}

#[test]
fn comments_strings_and_unit_tests_are_not_uses() {
    let source = "/// See [`crate::config::Config`].\n\
                  // crate::config::Config\n\
                  /* crate::config /* nested */ crate::config */\n\
                  const S: &str = \"crate::config::Config\";\n\
                  const R: &str = r#\"crate::config \" crate::config\"#;\n\
                  fn lifetime<'a>(c: &'a char) -> char { '\"' }\n\
                  #[cfg(test)]\nmod tests { use crate::config::Config; }\n\
                  #[cfg(all(test, target_os = \"linux\"))]\n#[allow(dead_code)]\nmod more { use crate::config::Config; }\n\
                  #[cfg(test)]\nmod test_support;\n\
                  use crate::imds::Client;\n";
    let scanned = scan(source, &["refresh".to_string(), "policy".to_string()]);
    assert_eq!(
        scanned.references,
        vec![(14, vec!["imds".to_string(), "Client".to_string()])]
    );
    assert_eq!(scanned.test_only_children, vec!["test_support".to_string()]);
}

#[test]
fn super_counts_only_when_it_climbs_out_of_the_top_level_module() {
    let source = "use super::sibling::X;\n\
                  use super::super::config::Config;\n\
                  mod inner { use super::super::super::imds::Client; use super::super::Y; }\n";
    let paths: Vec<(usize, String)> = scan(source, &["refresh".to_string(), "engine".to_string()])
        .references
        .into_iter()
        .map(|(line, path)| (line, path.join("::")))
        .collect();
    assert_eq!(
        paths,
        vec![
            (2, "config::Config".to_string()),
            (3, "imds::Client".to_string())
        ]
    );
}

#[test]
fn unused_permissions_and_cycles_are_reported() {
    let rules = example_rules();
    let used = example_references("src/refresh/engine.rs", "use crate::imds::Client;\n");
    assert_eq!(
        unused_permissions(&rules, &used),
        vec!["`refresh` may use `health::metrics`, but nothing in it does".to_string()]
    );
    assert_eq!(cycle(&rules), None);
    let looped = parse_table(&format!(
        "{TABLE_HEADING}\n| `a` | `b` |\n| `b` | `c::d` |\n| `c` | `a` |\n"
    ))
    .expect("parses");
    assert_eq!(cycle(&looped), Some("a → b → c → a".to_string()));
}
