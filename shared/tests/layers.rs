//! The layers' import rules, checked on the sources: what each folder of `shared/src` may use
//! (see each layer's `mod.rs`). One crate keeps builds fast; this test keeps the rules.

use std::path::{Path, PathBuf};

/// `(layer folder, paths its non-test code must not mention, files allowed an exception)`.
const RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "domain",
        &[
            "crate::http",
            "crate::adapters",
            "crate::app",
            "crate::ports",
            "crate::fakes",
            "crate::config",
            "tokio_postgres",
            "aws_",
            "lambda_http",
            "hyper",
        ],
        &[],
    ),
    (
        "ports",
        &[
            "crate::http",
            "crate::adapters",
            "crate::app",
            "crate::fakes",
            "tokio_postgres",
            "aws_",
            "lambda_http",
        ],
        &[],
    ),
    (
        "adapters",
        &["crate::http", "crate::app", "crate::fakes", "lambda_http"],
        &[],
    ),
    // `Api::from_env` builds the rate limiter from configuration; JWKS keys are fetched over TLS.
    (
        "http",
        &["crate::app", "crate::fakes", "crate::adapters"],
        &["api.rs", "jwks.rs"],
    ),
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("layer folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The file's code before its unit tests, without comments.
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (layer, forbidden, allowed) in RULES {
        for file in rust_files(&src.join(layer)) {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let code = production_code(&file);
            for path in forbidden.iter().filter(|_| !allowed.contains(&name)) {
                if code.contains(path) {
                    found.push(format!("{} uses {path}", file.display()));
                }
            }
        }
    }
    found
}

#[test]
fn each_layer_imports_only_what_its_rules_allow() {
    let found = violations();
    assert!(found.is_empty(), "layer rules broken:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_forbidden_import() {
    let code = "use crate::http::error::ApiError;\n// crate::adapters in a comment is fine";
    let file = std::env::temp_dir().join(format!("layers-{}.rs", std::process::id()));
    std::fs::write(&file, code).unwrap();
    let seen = production_code(&file);
    std::fs::remove_file(&file).unwrap();
    assert!(seen.contains("crate::http") && !seen.contains("crate::adapters"));
}
