//! The documents follow the layout: README.md stays what a newcomer needs first and links every
//! page of `docs/`; every relative link of README.md and `docs/*.md` reaches a file (and, with an
//! `#anchor` into a Markdown file, one of its headings); every promise of `docs/guarantees.md`
//! names a test, and every test it names exists. No service is needed: these tests read files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use integration_tests::repo_root;

/// README.md is the newcomer's page; the reference belongs in `docs/`.
const README_MAX_BYTES: usize = 12 * 1024;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every `docs/*.md`, relative to the repository root.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    pages.sort();
    pages.insert(0, PathBuf::from("README.md"));
    pages
}

/// The text outside fenced code blocks (a fence is a line starting, after indentation, with ```),
/// one string per line.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// `text` without its inline code spans (which may run over a line break). A run of n backticks
/// opens a span that the next run of exactly n backticks closes; an unclosed run stays as text.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown document, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let prose = without_code_spans(&prose_lines(markdown).join("\n"));
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        // `(target "title")`: the target is the first word.
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor of a heading: lower case, punctuation dropped (but `-` and `_`), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .replace('`', "")
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown document's headings, numbered like GitHub's when repeated (`-1`, …).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// What is wrong with the relative links of `document` (a path relative to `root`): targets that do
/// not exist, anchors that name no heading of their Markdown file.
fn broken_links(root: &Path, document: &Path, markdown: &str) -> Vec<String> {
    let dir = document.parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for target in link_targets(markdown) {
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            document.to_path_buf()
        } else {
            dir.join(path)
        };
        let full = root.join(&file);
        if !path.is_empty() && !full.exists() {
            broken.push(format!(
                "{}: `{target}`: {} does not exist",
                document.display(),
                file.display()
            ));
            continue;
        }
        let headings = || {
            if path.is_empty() {
                anchors(markdown)
            } else {
                anchors(&read(&full))
            }
        };
        if let Some(anchor) = anchor
            && file.extension().is_some_and(|ext| ext == "md")
            && !headings().contains(anchor)
        {
            broken.push(format!(
                "{}: `{target}`: no heading of {} has the anchor #{anchor}",
                document.display(),
                file.display()
            ));
        }
    }
    broken
}

#[test]
fn the_readme_is_short_and_links_every_docs_page() {
    let root = repo_root();
    let readme = read(&root.join("README.md"));
    assert!(
        readme.len() <= README_MAX_BYTES,
        "README.md is {} bytes, more than {README_MAX_BYTES}: move the reference into a docs/ page and link it",
        readme.len()
    );
    let linked: BTreeSet<String> = link_targets(&readme)
        .into_iter()
        .map(|target| target.split('#').next().unwrap().trim_start_matches("./").to_owned())
        .collect();
    let unlinked: Vec<String> = documents(&root)
        .into_iter()
        .skip(1)
        .map(|page| page.to_string_lossy().into_owned())
        .filter(|page| !linked.contains(page))
        .collect();
    assert!(unlinked.is_empty(), "docs pages README.md does not link: {unlinked:?}");
}

#[test]
fn every_relative_link_reaches_a_file_and_its_heading() {
    let root = repo_root();
    let broken: Vec<String> = documents(&root)
        .iter()
        .flat_map(|document| broken_links(&root, document, &read(&root.join(document))))
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The functions of the repository's Rust sources: file → the names after each `fn`.
struct Sources {
    root: PathBuf,
    functions: BTreeMap<PathBuf, BTreeSet<String>>,
    texts: BTreeMap<PathBuf, String>,
}

impl Sources {
    fn load(root: &Path) -> Sources {
        let mut files = Vec::new();
        collect_rust_files(root, &mut files);
        let mut sources = Sources {
            root: root.to_path_buf(),
            functions: BTreeMap::new(),
            texts: BTreeMap::new(),
        };
        for file in files {
            let text = read(&file);
            let relative = file.strip_prefix(root).unwrap().to_path_buf();
            sources.functions.insert(relative.clone(), function_names(&text));
            sources.texts.insert(relative, text);
        }
        sources
    }

    /// The source files at or under `path` (a file or a directory, relative to the root).
    fn files_under(&self, path: &Path) -> Vec<&PathBuf> {
        self.functions.keys().filter(|file| file.starts_with(path)).collect()
    }

    /// The files a module name may be: `tests/tests/it/<module>.rs`, or else any `<module>.rs` or
    /// `<module>/mod.rs` of the repository.
    fn module_files(&self, module: &str) -> Vec<&PathBuf> {
        let integration = PathBuf::from(format!("tests/tests/it/{module}.rs"));
        if let Some((file, _)) = self.functions.get_key_value(&integration) {
            return vec![file];
        }
        self.functions
            .keys()
            .filter(|file| {
                let stem = file.file_stem().and_then(|s| s.to_str());
                let parent = file.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str());
                stem == Some(module) || (stem == Some("mod") && parent == Some(module))
            })
            .collect()
    }

    fn has_tests(&self, file: &Path) -> bool {
        let text = &self.texts[file];
        text.contains("#[test]") || text.contains("#[tokio::test") || text.contains("proptest!")
    }
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The identifiers following the keyword `fn` in Rust source.
fn function_names(source: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("fn ") {
        let keyword_alone = rest[..at].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = &rest[at + 3..];
        let name: String = after.trim_start().chars().take_while(|&c| is_ident(c)).collect();
        if keyword_alone && !name.is_empty() {
            names.insert(name);
        }
        rest = after;
    }
    names
}

/// The cells of a Markdown table row; `|` inside code spans or escaped as `\|` does not split.
fn table_cells(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut code = false;
    let mut previous = ' ';
    for c in row.trim().trim_start_matches('|').chars() {
        match c {
            '`' => {
                code = !code;
                cell.push(c);
            }
            '|' if !code && previous != '\\' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
        previous = c;
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_owned());
    }
    cells
}

/// The single-backtick code spans of a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn is_test_name(span: &str) -> bool {
    let name = span.strip_suffix('…').unwrap_or(span);
    name.contains('_')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `name` (ending in `…` for a prefix) is a function of one of `files`.
fn names_a_function(sources: &Sources, files: &[&PathBuf], name: &str) -> bool {
    let (name, prefix) = match name.strip_suffix('…') {
        Some(prefix) => (prefix, true),
        None => (name, false),
    };
    files.iter().flat_map(|file| &sources.functions[*file]).any(|function| {
        if prefix {
            function.starts_with(name)
        } else {
            function == name
        }
    })
}

/// Checks one "proven by" cell. Its code spans are
/// - `module::name`, `module::inner::name`, `module::prefix_…`, `module::*`: the module is
///   `tests/tests/it/<module>.rs` (else a `<module>.rs` or `<module>/mod.rs` of the repository, or
///   a source path the cell gives) and holds a function so named (with inner modules declared); `*`
///   needs tests in the module;
/// - a path (`shared/src/app/health.rs`, `shared/src/domain/redact/`) or a function crate
///   (`claude-code-hook`): it exists and holds tests;
/// - a bare test name (`callers_share_one_probe_per_period_…`) after a path or crate: a function
///   of that path or crate.
///
/// Anything else (`FUZZ_CASES`, `make bench`) is description. Answers how many tests the cell
/// names, or what is wrong.
fn check_proof(sources: &Sources, cell: &str) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut named = 0;
    let mut context: Vec<PathBuf> = Vec::new();
    for span in code_spans(cell) {
        if span.contains("::") {
            let segments: Vec<&str> = span.split("::").collect();
            let (module, inner, name) = (
                segments[0],
                &segments[1..segments.len() - 1],
                segments[segments.len() - 1],
            );
            let mut files = sources.module_files(module);
            for path in &context {
                files.extend(sources.files_under(path));
            }
            let found = if files.is_empty() {
                problems.push(format!("`{span}`: no module file for `{module}`"));
                continue;
            } else if name == "*" {
                files.iter().any(|file| sources.has_tests(file))
            } else {
                let files: Vec<&PathBuf> = files
                    .into_iter()
                    .filter(|file| {
                        inner
                            .iter()
                            .all(|m| sources.texts[*file].contains(&format!("mod {m} ")))
                    })
                    .collect();
                names_a_function(sources, &files, name)
            };
            if found {
                named += 1;
            } else {
                problems.push(format!("`{span}`: no such test in the module `{module}`"));
            }
        } else if span.contains('/') || span.ends_with(".rs") {
            let path = PathBuf::from(span.trim_end_matches('/'));
            if !sources.root.join(&path).exists() {
                problems.push(format!("`{span}`: no such file or directory"));
            } else if !sources.files_under(&path).iter().any(|file| sources.has_tests(file)) {
                problems.push(format!("`{span}`: holds no tests"));
            } else {
                named += 1;
                context.push(path);
            }
        } else if sources.root.join("functions").join(span).is_dir() {
            context.push(Path::new("functions").join(span));
        } else if is_test_name(span) && !context.is_empty() {
            let files: Vec<&PathBuf> = context.iter().flat_map(|path| sources.files_under(path)).collect();
            if names_a_function(sources, &files, span) {
                named += 1;
            } else {
                problems.push(format!("`{span}`: no such function in {context:?}"));
            }
        }
    }
    if problems.is_empty() { Ok(named) } else { Err(problems) }
}

/// The "proven by" cells of the Guarantees table, with their promise.
fn guarantees(markdown: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in prose_lines(markdown) {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = table_cells(line);
        if cells.first().map(String::as_str) == Some("promise") {
            in_table = true;
            continue;
        }
        if !in_table || cells.iter().all(|cell| cell.chars().all(|c| c == '-' || c == ':')) {
            continue;
        }
        assert_eq!(cells.len(), 2, "a Guarantees row has a promise and its proof: {line}");
        rows.push((cells[0].clone(), cells[1].clone()));
    }
    rows
}

#[test]
fn every_guarantee_names_tests_that_exist() {
    let root = repo_root();
    let sources = Sources::load(&root);
    let rows = guarantees(&read(&root.join("docs/guarantees.md")));
    assert!(
        rows.len() >= 20,
        "the Guarantees table was not found whole: {} rows",
        rows.len()
    );
    let mut problems = Vec::new();
    for (promise, proof) in &rows {
        let promise: String = promise.chars().take(80).collect();
        match check_proof(&sources, proof) {
            Ok(0) => problems.push(format!("{promise}…: names no test")),
            Ok(_) => {}
            Err(errors) => problems.extend(errors.into_iter().map(|e| format!("{promise}…: {e}"))),
        }
    }
    assert!(problems.is_empty(), "docs/guarantees.md:\n{}", problems.join("\n"));
}

#[test]
fn the_checkers_catch_broken_links_and_unknown_tests() {
    let root = repo_root();
    let page = Path::new("docs/example.md");
    let markdown = "# A page\n\nSee [the API](api.md#sessions), [nothing](missing.md), \
                    [no heading](api.md#no-such-heading), [here](#a-page), [gone](#gone).\n\n\
                    ```sh\n[in code](missing-too.md)\n```\nand `[in a span](missing-three.md)`.\n";
    let broken = broken_links(&root, page, markdown);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(
        broken[0].contains("missing.md") && broken[1].contains("#no-such-heading"),
        "{broken:#?}"
    );
    assert!(broken[2].contains("#gone"), "{broken:#?}");

    assert_eq!(
        slug(" Durability: what \"nothing acknowledged is lost\" needs from PostgreSQL"),
        "durability-what-nothing-acknowledged-is-lost-needs-from-postgresql"
    );
    assert_eq!(slug(" `make test`"), "make-test");
    assert_eq!(
        slug(" Change an organization's rate limit (or batch size)"),
        "change-an-organizations-rate-limit-or-batch-size"
    );

    let sources = Sources::load(&root);
    assert_eq!(
        check_proof(&sources, "`faults::*`, `docs::the_checkers_catch_…`"),
        Ok(2)
    );
    assert_eq!(
        check_proof(
            &sources,
            "`shared/src/app/health.rs` `callers_share_one_probe_per_period_…`"
        ),
        Ok(2)
    );
    for wrong in [
        "`faults::no_such_test_anywhere`",
        "`faults::no_such_prefix_…`",
        "`no_such_module::*`",
        "`docs::the_checkers_catch`",
        "`shared/src/no_such_file.rs`",
        "`shared/src/app/health.rs` `no_such_function_…`",
    ] {
        assert!(check_proof(&sources, wrong).is_err(), "{wrong} was accepted");
    }
    assert_eq!(check_proof(&sources, "`make bench` (`FUZZ_CASES`)"), Ok(0));
}
