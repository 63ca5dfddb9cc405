//! A stand-in for EventBridge schedules: runs each scheduled function of the template at its rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::BoxFuture;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

use crate::routes::template_schedules;

/// One invocation of a scheduled function.
pub type Job = Arc<dyn Fn() -> BoxFuture<'static, Result<Value, lambda_runtime::Error>> + Send + Sync>;

pub struct Scheduler {
    jobs: Vec<(String, Duration, Job)>,
}

impl Scheduler {
    /// Pairs every schedule of the template with its binary's job; a schedule without a job, or a
    /// job without a schedule, is an error.
    pub fn new(template: &str, mut jobs: HashMap<String, Job>) -> Result<Self, String> {
        let mut scheduled = Vec::new();
        for schedule in template_schedules(template)? {
            let job = jobs
                .remove(&schedule.binary)
                .ok_or_else(|| format!("schedule of {:?} has no local job", schedule.binary))?;
            scheduled.push((schedule.binary, schedule.every, job));
        }
        if let Some(binary) = jobs.keys().next() {
            return Err(format!("job {binary:?} has no schedule in template.yaml"));
        }
        Ok(Self { jobs: scheduled })
    }

    pub fn describe(&self) -> Vec<String> {
        self.jobs
            .iter()
            .map(|(binary, every, _)| format!("{binary} every {}s", every.as_secs()))
            .collect()
    }

    /// Runs every job at its rate until the task is dropped (the first run after one period).
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        for (binary, every, job) in self.jobs {
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    match job().await {
                        Ok(result) => tracing::info!(function = binary, %result, "scheduled run"),
                        Err(err) => {
                            tracing::error!(function = binary, error = %err, "scheduled run failed")
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The EventBridge "Scheduled Event" a scheduled Lambda receives.
pub fn scheduled_event() -> LambdaEvent<Value> {
    let now = chrono::Utc::now();
    let payload = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [],
        "detail": {}
    });
    LambdaEvent::new(payload, lambda_runtime::Context::default())
}
