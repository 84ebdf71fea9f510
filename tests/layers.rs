//! The folder layout is the architecture (src/lib.rs, `# Layout`): each layer may use
//! only itself and the layers below it. This reads the sources, so a new upward
//! import fails here rather than in review.

use std::path::Path;

/// Bottom to top; a layer may import any module at a lower or equal rank.
const RANKS: &[(&str, u8)] = &[
    ("codec", 0),
    ("card", 1),
    ("protocol", 2),
    ("sim", 2),
    ("transport", 3),
    ("bus", 4),
    ("server", 5),
    ("config", 6),
    ("cli", 7),
    ("daemon", 7),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Source text outside `#[cfg(test)]` modules and `tests.rs` files: tests may
/// reach up (e.g. card tests drive the simulators).
fn production_code(path: &Path, text: &str) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_layer_imports_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .expect("a name");
        let Some(own) = rank(&top) else { continue };
        checked += 1;
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in production_code(&path, &text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let target: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(r) = rank(&target)
                    && r > own
                {
                    violations.push(format!(
                        "{}:{}: {top} uses crate::{target}",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} source files found");
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}
