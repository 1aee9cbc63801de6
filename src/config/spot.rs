//! Where a configuration error points, so that its message reads `file:line: key …`
//! (`docs/DESIGN.md`, "Configuration"). Lines come from the spans toml keeps for every key
//! and value ([`DeTable`]), not from scanning the text: inline tables, dotted keys and
//! comments cannot mislead them.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where a cross-key error points: an entry of an array table (`[[file]]` number `index`),
/// or a key of a plain table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spot {
    Entry(&'static str, usize),
    /// A key of an entry of an array table: `mode` of `[[file]]` number `index`.
    EntryKey(&'static str, usize, &'static str),
    Key(&'static str, &'static str),
    /// A key of an entry of an array table inside a table: `name` of `[[container.client]]`
    /// number `index` is `SubEntryKey("container", "client", index, "name")`.
    SubEntryKey(&'static str, &'static str, usize, &'static str),
}

impl Spot {
    /// The line to name in the message, if the text has it: the key's own line, else the
    /// header of its table or entry.
    pub(super) fn line(self, text: &str) -> Option<usize> {
        let (root, _) = DeTable::parse_recoverable(text);
        let root = root.get_ref();
        let offset = match self {
            Spot::Entry(table, index) => entry(root, table, index)?.span().start,
            Spot::EntryKey(table, index, key) => {
                let entry = entry(root, table, index)?;
                key_in(entry, key).unwrap_or(entry.span()).start
            }
            Spot::Key(table, key) => {
                let table = value_of(root, table)?;
                key_in(table, key).unwrap_or(table.span()).start
            }
            Spot::SubEntryKey(table, sub, index, key) => {
                let table = value_of(root, table)?.get_ref().as_table()?;
                let entry = entry(table, sub, index)?;
                key_in(entry, key).unwrap_or(entry.span()).start
            }
        };
        Some(line_at(text, offset))
    }

    /// How a flag-made error names the place (there is no line to point at).
    pub(super) fn describe(self) -> String {
        match self {
            Spot::Entry(table, index) | Spot::EntryKey(table, index, _) => {
                format!("[[{table}]] #{}", index + 1)
            }
            Spot::Key(table, _) => format!("[{table}]"),
            Spot::SubEntryKey(table, sub, index, _) => format!("[[{table}.{sub}]] #{}", index + 1),
        }
    }
}

/// 1-based line number of a byte offset.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key at `offset`, tables named as in their header (so `before_expiry = "x"`
/// under `[refresh]` reads `refresh.before_expiry`, and `mode` in a `[[file]]` entry
/// `file.mode`); `None` when no key covers it.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let (root, _) = DeTable::parse_recoverable(text);
    path_to(root.get_ref(), offset)
}

fn path_to(table: &DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = key.get_ref();
        if key.span().contains(&offset) {
            return Some(name.to_string());
        }
        let inner = match value.get_ref() {
            DeValue::Table(inner) => path_to(inner, offset),
            DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(inner) => path_to(inner, offset),
                _ => None,
            }),
            _ => None,
        };
        if let Some(inner) = inner {
            return Some(format!("{name}.{inner}"));
        }
        // The value itself: a scalar after `key =`, an array, or a table's header.
        let covered = (key.span().start..value.span().end).contains(&offset)
            || value.span().contains(&offset)
            || value
                .get_ref()
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item.span().contains(&offset)));
        covered.then(|| name.to_string())
    })
}

fn value_of<'d, 'i>(table: &'d DeTable<'i>, name: &str) -> Option<&'d Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(key, _)| key.get_ref() == name)
        .map(|(_, value)| value)
}

/// The `index`-th entry of the array table `name`.
fn entry<'d, 'i>(
    root: &'d DeTable<'i>,
    name: &str,
    index: usize,
) -> Option<&'d Spanned<DeValue<'i>>> {
    value_of(root, name)?.get_ref().as_array()?.get(index)
}

/// The span of `key` in the table `table`, if it is a table that has the key.
fn key_in(table: &Spanned<DeValue<'_>>, key: &str) -> Option<std::ops::Range<usize>> {
    table
        .get_ref()
        .as_table()?
        .iter()
        .find(|(name, _)| name.get_ref() == key)
        .map(|(name, _)| name.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[log]\nlevel = \"info\"\n\n[[file]]\npath = \"/a\"\n\n[[file]]\npath = \"/b\"\nmode = \"0644\"\nsignal = { pid_file = \"/p\" }\n[socket]\nmode = \"0666\"\n";

    #[test]
    fn spots_name_the_line_of_the_key_or_of_its_header() {
        assert_eq!(Spot::Entry("file", 1).line(TEXT), Some(7));
        assert_eq!(Spot::EntryKey("file", 1, "mode").line(TEXT), Some(9));
        assert_eq!(Spot::EntryKey("file", 0, "mode").line(TEXT), Some(4));
        assert_eq!(Spot::Key("socket", "mode").line(TEXT), Some(12));
        assert_eq!(Spot::Key("socket", "path").line(TEXT), Some(11));
        assert_eq!(Spot::Key("container", "listen").line(TEXT), None);
        assert_eq!(Spot::Entry("file", 2).line(TEXT), None);
        let clients = "[container]\nlisten = \"127.0.0.1:1\"\n[[container.client]]\nname = \"a\"\n[[container.client]]\nname = \"b\"\nprofile = \"p\"\n";
        assert_eq!(
            Spot::SubEntryKey("container", "client", 1, "profile").line(clients),
            Some(7)
        );
        assert_eq!(
            Spot::SubEntryKey("container", "client", 0, "profile").line(clients),
            Some(3)
        );
        assert_eq!(
            Spot::SubEntryKey("container", "client", 2, "name").line(clients),
            None
        );
    }

    #[test]
    fn the_key_at_an_offset_is_dotted_from_its_table() {
        let at = |needle: &str| key_at(TEXT, TEXT.find(needle).unwrap());
        assert_eq!(at("\"info\"").as_deref(), Some("log.level"));
        assert_eq!(at("\"0644\"").as_deref(), Some("file.mode"));
        assert_eq!(at("\"/p\"").as_deref(), Some("file.signal.pid_file"));
        assert_eq!(at("[socket]").as_deref(), Some("socket"));
        assert_eq!(key_at(TEXT, TEXT.len()), None);
    }
}
