//! The command-execution function's `main` exactly as deployed (`shared::lambda_http_main!`),
//! built in the test crate so that a test can run it under a Lambda Runtime and Extensions API.

shared::lambda_http_main!(command_execution::handle);
