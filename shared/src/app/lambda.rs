//! Lambda glue for live updates: an internal extension that keeps the container awake after a
//! response until the pending pushes are sent, and the signal a handler gives when it is done.

use crate::app::live::Broadcaster;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long a Lambda container stays awake after a response to finish its pushes.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(2);

/// Signals the end of each invocation's handler, so the flush can start.
#[derive(Clone)]
pub struct AfterResponse {
    done: Option<tokio::sync::mpsc::UnboundedSender<()>>,
}

impl AfterResponse {
    /// Signals the end of the handler when dropped — also when the handler panics, so the
    /// extension never waits for a signal that will not come.
    pub fn on_drop(&self) -> Handled {
        Handled(self.done.clone())
    }
}

pub struct Handled(Option<tokio::sync::mpsc::UnboundedSender<()>>);

impl Drop for Handled {
    fn drop(&mut self) {
        if let Some(done) = &self.0 {
            let _ = done.send(());
        }
    }
}

pub type Extension = Pin<Box<dyn Future<Output = Result<(), lambda_extension::Error>> + Send>>;

/// For a Lambda function that publishes live updates: registers an internal extension that,
/// on every invocation, waits for the handler to finish and then for the pending deliveries
/// (at most [`FLUSH_BUDGET`]). Lambda returns the response to the caller as soon as the
/// handler's response is posted, and freezes the container only once the extension is done.
/// Without live updates, nothing is registered and the extension future never ends.
pub async fn after_response(
    live: Option<Arc<Broadcaster>>,
) -> Result<(AfterResponse, Extension), lambda_extension::Error> {
    let Some(live) = live else {
        return Ok((AfterResponse { done: None }, Box::pin(std::future::pending())));
    };
    let (done, handled) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handled = Arc::new(tokio::sync::Mutex::new(handled));
    let extension = lambda_extension::Extension::new()
        // Internal extensions receive only INVOKE events.
        .with_events(&["INVOKE"])
        .with_events_processor(lambda_extension::service_fn(
            move |_event: lambda_extension::LambdaEvent| {
                let (live, handled) = (live.clone(), handled.clone());
                async move {
                    handled.lock().await.recv().await;
                    live.flush(FLUSH_BUDGET).await;
                    Ok::<(), lambda_extension::Error>(())
                }
            },
        ))
        .register()
        .await?;
    Ok((AfterResponse { done: Some(done) }, Box::pin(extension.run())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_handler_is_signalled_even_when_it_panics() {
        let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
        let after = AfterResponse { done: Some(done) };
        drop(after.on_drop());
        assert!(handled.try_recv().is_ok());
        let panicked = std::panic::catch_unwind(|| {
            let _handled = after.on_drop();
            panic!("handler bug");
        });
        assert!(panicked.is_err());
        assert!(handled.try_recv().is_ok(), "the flush is not left waiting");
        assert!(handled.try_recv().is_err(), "one signal per invocation");
    }
}
