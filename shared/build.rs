//! Embeds `migrations/public/*.sql` and `migrations/tenant/*.sql` into the crate, so every
//! Lambda carries the migrations it may need (a new tenant is provisioned at request time).
//! Files are named `NNNN_description.sql`; versions must be unique and start at 1.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    for scope in ["public", "tenant"] {
        let dir = root.join(scope);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        writeln!(out, "pub static {}: &[Migration] = &[", scope.to_uppercase()).unwrap();
        for (index, path) in files.iter().enumerate() {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let (number, name) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{stem}: expected NNNN_description.sql"));
            let version: i32 = number
                .parse()
                .unwrap_or_else(|_| panic!("{stem}: version {number:?} is not a number"));
            assert_eq!(
                version as usize,
                index + 1,
                "{scope} migrations must be numbered 1, 2, 3, ... without gaps"
            );
            writeln!(
                out,
                "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
                path.canonicalize().unwrap().display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
}
