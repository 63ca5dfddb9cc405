//! Everything the functions share: one place for each rule.
//!
//! A function crate only parses its event, calls into this crate and maps the outcome to a
//! response; the modules below hold configuration, authentication, validation, sanitising,
//! rate limiting, storage and the response envelope.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
#[cfg(any(test, feature = "testing"))]
pub mod fakes;
pub mod http;
pub mod ports;
pub mod telemetry;

pub use app::App;
pub use mimalloc::MiMalloc;

/// Installs mimalloc as the binary's allocator (used by every function's `main`): the AWS SDK
/// allocates a lot on each call, and mimalloc measurably lowers the CPU time per request. On
/// Linux it also registers [`small_pages`] to run before anything allocates.
#[macro_export]
macro_rules! fast_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::MiMalloc = $crate::MiMalloc;

        // Priority 100 runs before mimalloc's own start-up (101 when built by clang, unnumbered by gcc).
        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array.00100")]
        static SMALL_PAGES: extern "C" fn() = $crate::small_pages;
    };
}

/// Keeps mimalloc off transparent huge pages unless `MIMALLOC_ALLOW_THP` says otherwise. On a
/// host whose THP setting is `always` (common), each arena mimalloc commits is backed by 2 MiB
/// pages as soon as it is touched: a function that uses 4 MB held 28 (measured by `make bench`,
/// see docs/performance.md), with no gain for a process this small. mimalloc reads the variable
/// once, when the process starts, so this runs as a constructor before it; `setenv` allocates
/// with the C library, not the Rust allocator.
pub extern "C" fn small_pages() {
    // SAFETY: runs before `main`, on the only thread; both strings are NUL-terminated literals.
    unsafe {
        libc::setenv(c"MIMALLOC_ALLOW_THP".as_ptr(), c"0".as_ptr(), 0);
    }
}
pub use http::error::ApiError;

/// A mutex's guard; a panic elsewhere while it was held leaves data still worth using.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `main` of a function that serves one HTTP route. A Lambda container handles one event at
/// a time, so a current-thread runtime serves it with no cross-thread hand-offs. JSON logs, then
/// the SDK configuration, the secrets the environment names by ARN (see [`adapters::secrets`])
/// and the function's state (`$state`, an [`app::FromEnv`]; [`App`] when omitted) built once per
/// container — a bad setting stops the start — then the Lambda runtime calling
/// `$handle(&state, request)` for every event. When the state publishes live updates, an
/// internal extension sends them after each response (see [`app::lambda::after_response`]).
#[macro_export]
macro_rules! lambda_http_main {
    ($handle:path) => {
        $crate::lambda_http_main!($crate::App, $handle);
    };
    ($state:ty, $handle:path) => {
        $crate::fast_allocator!();

        #[tokio::main(flavor = "current_thread")]
        async fn main() -> Result<(), lambda_http::Error> {
            $crate::telemetry::init();
            let aws = $crate::app::aws_config().await;
            let env = $crate::adapters::secrets::resolve($crate::config::Env::process(), &aws)
                .await
                .inspect_err($crate::telemetry::startup_failed)?;
            let state = <$state as $crate::app::FromEnv>::from_env(&env, &aws)
                .inspect_err($crate::telemetry::startup_failed)?;
            let (after, extension) = $crate::app::lambda::after_response($crate::app::FromEnv::live(&state)).await?;
            let serve = lambda_http::run(lambda_http::service_fn(|req| async {
                let _handled = after.on_drop();
                $handle(&state, req).await
            }));
            tokio::try_join!(serve, extension)?;
            Ok(())
        }
    };
}
