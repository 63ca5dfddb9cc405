//! The functions' allocator keeps to small pages (`shared::small_pages`), unless the operator
//! says otherwise.

use std::process::Command;

fn thp_enabled_with(allow_thp: Option<&str>) -> String {
    let mut probe = Command::new(env!("CARGO_BIN_EXE_allocator-probe"));
    probe.env_remove("MIMALLOC_ALLOW_THP");
    if let Some(value) = allow_thp {
        probe.env("MIMALLOC_ALLOW_THP", value);
    }
    let out = probe.output().expect("run the probe");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn functions_keep_off_transparent_huge_pages_unless_the_operator_allows_them() {
    // GIVEN a binary with the functions' allocator, WHEN it starts with nothing set,
    // THEN the kernel backs none of its memory with huge pages
    assert!(
        thp_enabled_with(None).starts_with("THP_enabled: 0"),
        "{}",
        thp_enabled_with(None)
    );
    // WHEN the operator sets MIMALLOC_ALLOW_THP=1, THEN that wins
    let allowed = thp_enabled_with(Some("1"));
    assert!(allowed.starts_with("THP_enabled: 1"), "{allowed}");
}
