//! The source tree's shape: imports between top-level modules run one way, and files stay small.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may import from its own layer or a lower one, never
/// from a higher one (cli → sweep → execute → report/store/track → train → data/plan → manifest, with
/// identity, numerics, file writing, fault injection and the ONNX runtime below everything).
const LAYERS: [(&str, u8); 16] = [
    ("cli", 7),
    ("sweep", 6),
    ("execute", 5),
    ("report", 4),
    ("store", 4),
    ("track", 4),
    ("train", 3),
    ("data", 2),
    ("plan", 2),
    ("manifest", 1),
    ("identity", 0),
    ("numerics", 0),
    ("atomic", 0),
    ("fault", 0),
    ("onnx", 0),
    ("tokenizer", 0),
];

fn sources() -> Vec<PathBuf> {
    walkdir::WalkDir::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .into_iter()
        .map(|e| e.expect("src/ is readable").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

/// The top-level module a file belongs to (`src/train/net.rs` → `train`).
fn module_of(path: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = path.strip_prefix(&src).expect("under src/");
    let first = rel.components().next().expect("a file").as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// `crate::X` paths in code (not comments), before the file's `#[cfg(test)]` module; test files
/// are left out, as tests may reach anywhere.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let path = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    // `use crate::{a, b::c}` names several modules at once.
    let grouped = regex::Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let first = regex::Regex::new(r"(?:^|[,{\s])([a-z_]+)(?:::|\s*[,}]|\s*$)").unwrap();
    let mut out: BTreeSet<String> = path
        .captures_iter(&code)
        .map(|c| c[1].to_string())
        .collect();
    for g in grouped.captures_iter(&code) {
        out.extend(first.captures_iter(&g[1]).map(|c| c[1].to_string()));
    }
    out
}

#[test]
fn imports_between_top_level_modules_run_one_way() {
    let layer: BTreeMap<&str, u8> = LAYERS.into_iter().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources() {
        let from = module_of(&file);
        if from == "lib" || from == "main" || file.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for to in imports(&text) {
            if to == from {
                continue;
            }
            let (Some(a), Some(b)) = (layer.get(from.as_str()), layer.get(to.as_str())) else {
                panic!(
                    "{} imports `crate::{to}`: add `{from}` and `{to}` to LAYERS",
                    file.display()
                );
            };
            assert!(
                a >= b,
                "{} (`{from}`, layer {a}) imports `crate::{to}` (layer {b}), against the flow",
                file.display()
            );
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    // Within a layer, no circle either.
    for (a, tos) in &edges {
        for b in tos {
            assert!(
                !edges.get(b).is_some_and(|back| back.contains(a)),
                "`{a}` and `{b}` import each other"
            );
        }
    }
}

#[test]
fn files_stay_under_about_500_lines_unless_their_opening_comment_says_why() {
    let mut long = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        let opening: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        // Code generated from a schema (src/track/proto) is the schema's size, not an idea's.
        let generated = text
            .lines()
            .next()
            .is_some_and(|l| l.contains("@generated"));
        if lines > 500
            && !file.ends_with("tests.rs")
            && !generated
            && !opening.contains("Long because")
        {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or say in their opening comment why one idea needs the room (\"Long because ...\"): {long:#?}"
    );
}
