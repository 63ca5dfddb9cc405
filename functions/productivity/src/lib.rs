//! `POST /api/v1/metrics/productivity`: validates one productivity metric (a value over a
//! period) and stores it in the caller's organization.

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::domain::identified::Identify;
use shared::domain::metrics::ProductivityMetric;

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "POST /api/v1/metrics/productivity";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::CREATED, async |caller, body| {
            let metric = ProductivityMetric::from_json(&body, "")?.identified();
            let stored = app.store.insert_productivity_metric(&caller, &metric).await?;
            Ok(stored.data())
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::fakes::{a_working_service, error_fields, fixture, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/productivity.json");

    #[tokio::test]
    async fn the_specification_example_is_stored() {
        let given = a_working_service();
        let (status, body) = parts(handle(&given.app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 201, "{body}");
        let stored = given.store.productivity_metrics(&OrgId::parse("demo").unwrap());
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].value, stored[0].unit.as_str()), (8.5, "tasks_per_hour"));
    }

    #[tokio::test]
    async fn the_period_must_end_after_it_starts() {
        let given = a_working_service();
        let body = json!({
            "metric_type": "error_rate", "value": 3, "unit": "percent",
            "period_start": "2025-09-08T10:00:00Z", "period_end": "2025-09-08T09:00:00Z"
        });
        let (status, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &body))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["period_end"]);
    }

    #[tokio::test]
    async fn values_are_checked_against_their_metric_type() {
        let given = a_working_service();
        let body = json!({
            "metric_type": "efficiency_score", "value": 140, "unit": "index",
            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"
        });
        let (status, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &body))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["value"]);
        let body = json!({"metric_type": "code_quality", "value": 1, "unit": "x",
            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"});
        let (_, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &body))
                .await
                .unwrap(),
        );
        assert_eq!(error_fields(&body), ["metric_type"]);
    }
}
