//! What a source file names: every `crate::` path (use trees expanded) and every `super::`
//! that climbs out of its top-level module, with comments, strings and unit tests left out.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Blanks comments, strings and char literals (keeping newlines, so lines still count).
pub(crate) fn strip(source: &str) -> String {
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
pub(crate) fn ident_before(chars: &[char], i: usize) -> bool {
    let continues = |at: usize| chars[at].is_alphanumeric() || chars[at] == '_';
    i > 0 && continues(i - 1) && !(chars[i - 1] == 'b' && (i == 1 || !continues(i - 2)))
}

/// Identifiers, `::` and single punctuation, each with its line.
pub(crate) fn tokenize(stripped: &str) -> Vec<(usize, Token)> {
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

pub(crate) fn is_ident(token: Option<&(usize, Token)>, name: &str) -> bool {
    matches!(token, Some((_, Token::Ident(found))) if found == name)
}

pub(crate) fn is_punct(token: Option<&(usize, Token)>, wanted: char) -> bool {
    matches!(token, Some((_, Token::Punct(found))) if *found == wanted)
}

/// Whether the attribute starting at `tokens[at]` (`#`) is `#[cfg(test)]` or
/// `#[cfg(all(test, …))]`: code only unit tests build. Returns the index after it.
pub(crate) fn test_only_attribute(tokens: &[(usize, Token)], at: usize) -> Option<usize> {
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
pub(crate) fn attribute_end(tokens: &[(usize, Token)], at: usize) -> usize {
    balanced_end(tokens, at + 1, ('[', ']'), false)
}

/// Where a brace-balanced item starting at `at` ends (after its `}` or `;`).
pub(crate) fn item_end(tokens: &[(usize, Token)], at: usize) -> usize {
    balanced_end(tokens, at, ('{', '}'), true)
}

/// The index after the `close` that balances the first `open` from `tokens[at]` on, or
/// after a `;` outside any pair when `semicolon_ends`.
pub(crate) fn balanced_end(
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
pub(crate) struct FileScan {
    pub(crate) references: Vec<(usize, Vec<String>)>,
    pub(crate) test_only_children: Vec<String>,
}

/// Scans one file whose module path is `module` (e.g. `["serve", "api"]` for
/// `src/serve/api/mod.rs`).
pub(crate) fn scan(source: &str, module: &[String]) -> FileScan {
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
pub(crate) fn path_tree(tokens: &[(usize, Token)], at: usize) -> (Vec<Vec<String>>, usize) {
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
