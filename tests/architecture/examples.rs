//! The checker on small examples, so it can fail.

use crate::check::{cycle, module_path, unused_permissions, violations, Reference, Violation};
use crate::scan::scan;
use crate::table::{parse_table, Rules, TABLE_HEADING};

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
