//! Structured JSON logs, one object per line, as CloudWatch Logs expects them.
//! Nothing here ever logs a request's headers or body, so tokens never reach the logs.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber; `RUST_LOG` sets the level (default `info`).
/// Calling it twice is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// Logs why a container cannot start; the error is then returned from `main`.
pub fn startup_failed(err: &crate::config::ConfigError) {
    tracing::error!(
        variable = err.variable,
        problem = err.problem,
        "invalid configuration; not starting"
    );
}
