//! The local front: serves `template.yaml`'s HTTP API routes on 127.0.0.1 by calling each
//! function's handler in process, the way API Gateway and the Lambda runtime would.

pub mod gateway;
pub mod provision;
pub mod routes;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;

use gateway::Handler;
use shared::App;

/// `template.yaml`, compiled in, so the routes served are the routes deployed.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");

/// Wraps a function crate's `handle(&App, Request)` as a [`Handler`].
macro_rules! handler {
    ($app:expr, $handle:path) => {{
        let app = $app.clone();
        Arc::new(move |req| {
            let app = app.clone();
            Box::pin(async move { $handle(&app, req).await }) as lambda_http::BoxFuture<'static, _>
        }) as Handler
    }};
}

/// Every function's handler, by binary name.
pub fn handlers(app: Arc<App>) -> HashMap<String, Handler> {
    HashMap::from([(
        "command-execution".to_owned(),
        handler!(app, command_execution::handle),
    )])
}
