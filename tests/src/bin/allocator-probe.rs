//! A binary with the functions' allocator set-up (`shared::fast_allocator!`, as every
//! `lambda_http_main!` has) that prints whether the kernel may back its memory with transparent
//! huge pages: `allocator::…` runs it.

shared::fast_allocator!();

fn main() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("THP_enabled:"))
        .unwrap_or("THP_enabled: unknown");
    // Something allocated, so the allocator is surely started.
    let words: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    println!(
        "{} ({} words)",
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        words.len()
    );
}
