//! The layout stays as drawn: a top-level module of `src/` may import only
//! from modules in layers below its own (docs/architecture.md, "Layers").
//! Given the sources, when every `crate::<module>` path is collected per
//! top-level module, then none points at the module's own layer or above.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first. Modules in one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    &["clock", "testing"],
    &["sqlite"],
    &["error"],
    &["id", "fsutil", "background", "retry"],
    &["durability", "catalog"],
    &["journal"],
    &["pitr"],
    &["cluster"],
    &["ship"],
    &["config"],
    &["object"],
    &["store"],
    &["runtime"],
    &["server", "capi"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules each file of `module` names as `crate::<name>`,
/// in code (comments are skipped), with the line that names them.
fn imports(module: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(module, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    group[..end]
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or("").trim())
                        .collect()
                } else {
                    vec![rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")]
                };
                for name in names.into_iter().filter(|s| !s.is_empty()) {
                    out.entry(name.to_owned())
                        .or_insert_with(|| format!("{}:{}", f.display(), n + 1));
                }
            }
        }
    }
    out
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        // The crate root wires modules together; the binary is its own
        // crate and can only use the public API.
        if name == "lib" || name == "bin" {
            continue;
        }
        let Some(own) = layer_of(&name) else {
            violations.push(format!(
                "src/{name} is in no layer: add it to LAYERS and docs/architecture.md"
            ));
            continue;
        };
        seen.push(name.clone());
        for (dep, at) in imports(&path) {
            if dep == name || dep == "self" || dep == "super" {
                continue;
            }
            match layer_of(&dep) {
                Some(l) if l < own => {}
                Some(_) => {
                    violations.push(format!("{name} imports {dep} (above or beside it) at {at}"))
                }
                // A crate-root item (a re-export such as crate::Error).
                None => {}
            }
        }
    }
    // Every layer names modules that exist, so the table cannot rot.
    for layer in LAYERS {
        for m in *layer {
            assert!(
                seen.iter().any(|s| s == m),
                "LAYERS names src/{m}, which does not exist"
            );
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_grouped_and_plain_imports() {
    let dir = std::env::temp_dir().join(format!("amber-layering-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("m.rs"),
        "use crate::{store::Store, object};\n// crate::runtime in a comment\nfn f() { crate::ship::go(); }\n",
    )
    .unwrap();
    let got: Vec<String> = imports(&dir).into_keys().collect();
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, ["object", "ship", "store"]);
}
