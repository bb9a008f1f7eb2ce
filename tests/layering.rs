//! The crate's modules depend on each other in one direction only.
//!
//! Every `crate::<module>` path in `src/` (in `use` lines and inline) is checked against the table below. A
//! module that is not in the table fails the test, so a new module gets a deliberate place in the layering.
//!
//! From the inside out: `core` (pure model) ← `api` (CRDs) ← `index` (objects into the model) ← `controller`
//! (owns the model, writes to the cluster) → `plan` (what it publishes) ← `extender` (reads only what is
//! published). `serve` wires them together; `sim` drives the core offline; `cli` parses arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each module and the crate modules it may use. `lib` and `main` are the roots and may use anything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("duration", &[]),
    ("metrics", &[]),
    ("plan", &[]),
    ("api", &[]),
    ("index", &["api", "core"]),
    ("controller", &["api", "core", "duration", "index", "metrics", "plan"]),
    ("extender", &["api", "metrics", "plan"]),
    ("sim", &["core", "duration"]),
    ("webhook", &["api", "extender", "metrics"]),
    ("serve", &["api", "controller", "core", "duration", "extender", "index", "metrics", "plan", "webhook"]),
    ("explain", &["api", "core", "index"]),
    ("cli", &["explain", "serve", "sim"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/core/cluster.rs` and `src/core.rs` both belong to `core`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("file under src");
    let first = relative.components().next().expect("non-empty path").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level crate modules a file names: `crate::a::...`, and every top-level name in `use crate::{a, b::c}`.
fn crate_modules_used(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
    let mut used = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // A grouped import: top-level names at brace depth zero.
            let mut depth = 0;
            let mut name = String::new();
            let mut expect_name = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if depth == 0 && expect_name && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if !name.is_empty() {
                            used.insert(std::mem::take(&mut name));
                            expect_name = false;
                        }
                    }
                }
            }
            if !name.is_empty() {
                used.insert(name);
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
        rest = after;
    }
    used
}

#[test]
fn the_parser_sees_plain_grouped_and_inline_paths() {
    let text = "use crate::core::Cluster;\nuse crate::{api::{self, Queue}, plan};\n// crate::sim in a comment\n\
                fn f(x: &crate::index::Index) {}\n";
    let used: Vec<String> = crate_modules_used(text).into_iter().collect();
    assert_eq!(used, ["api", "core", "index", "plan"]);
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(m, deps)| (*m, deps.iter().copied().collect())).collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} files under {}", files.len(), src.display());

    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(may_use) = allowed.get(module.as_str()) else {
            violations.push(format!("{}: module `{module}` has no place in the layering table", file.display()));
            continue;
        };
        let text = fs::read_to_string(file).expect("readable source");
        for used in crate_modules_used(&text) {
            if used != module && !may_use.contains(used.as_str()) {
                violations.push(format!("{}: `{module}` must not use `crate::{used}`", file.display()));
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}
