//! The batch worker fed from its queue as the local event source feeds it, in a process of its
//! own so a fault test can kill it in the middle of a batch. Configured from the environment
//! like the Lambda (`DATABASE_URL`, `BATCH_QUEUE_URL`, `AWS_ENDPOINT_URL`, ...).

use std::sync::Arc;
use std::time::Duration;

use batch_worker::Worker;
use local_front::poller::Poller;
use shared::config::Env;

#[tokio::main]
async fn main() {
    let aws = shared::app::aws_config().await;
    let worker = Worker::from_env(&Env::process(), &aws).expect("worker configuration");
    let queue_url = std::env::var("BATCH_QUEUE_URL").expect("BATCH_QUEUE_URL");
    Poller::new(
        aws_sdk_sqs::Client::new(&aws),
        queue_url,
        Arc::new(worker),
        Duration::ZERO,
    )
    .await
    .expect("the queue exists")
    .run()
    .await
}
