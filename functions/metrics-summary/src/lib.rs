//! `GET /api/v1/metrics/summary`: the caller's organization's rolling aggregates; query
//! parameters `since`, `until` (RFC 3339), `group_by` (`user`, `command`, `agent`, `hour`,
//! `day`) and `limit`; the answer also counts the sessions started in the span. Members read
//! the organization's totals and only their own per-user rows;
//! admins everything (`SummaryQuery::as_seen_by`). See `shared::domain::summary`.

use lambda_http::{Body, Error, Request, Response};
use shared::app::Reader;
use shared::domain::summary::{SummaryQuery, summary_data};
use shared::http::error::ApiError;

/// What this function builds once per container: it only reads, so it publishes nothing.
pub type State = Reader;

pub const ROUTE: &str = "GET /api/v1/metrics/summary";

pub async fn handle(app: &Reader, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_query(&req, ROUTE, async |caller, params| {
            let pairs = params.iter().map(|(name, value)| (name.as_str(), value.as_str()));
            let query = SummaryQuery::parse(pairs, chrono::Utc::now())?
                .as_seen_by(&caller)
                .map_err(ApiError::Forbidden)?;
            let rows = app.store.aggregates(&caller, &query).await?;
            Ok(summary_data(&query, &rows))
        })
        .await)
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use serde_json::json;
    use shared::domain::identified::Identify;
    use shared::domain::ids::{Caller, OrgId, UserId};
    use shared::domain::metrics::CommandExecution;
    use shared::fakes::{a_working_service, admin_request, error_fields, parts, request};
    use shared::ports::store::MetricStore;

    use super::*;

    const EVENT: &str = include_str!("../../../events/metrics-summary.json");

    /// A summary request of alice, a member of acme.
    fn with_query(pairs: &[(&str, &str)]) -> Request {
        with_params(request(EVENT, "acme", "alice", &json!(null)), pairs)
    }

    /// A summary request of an admin of acme.
    fn as_admin(pairs: &[(&str, &str)]) -> Request {
        with_params(admin_request(EVENT, "acme", "boss", &json!(null)), pairs)
    }

    fn with_params(req: Request, pairs: &[(&str, &str)]) -> Request {
        let query: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        req.with_query_string_parameters(QueryMap::from(query))
    }

    async fn store_command(store: &dyn MetricStore, user: &str, name: &str, ms: f64, status: &str) {
        let caller = Caller::member(OrgId::parse("acme").unwrap(), UserId::parse(user).unwrap());
        let metric = CommandExecution::from_json(
            &json!({"command_name": name, "execution_time_ms": ms, "status": status}),
            "",
        )
        .unwrap()
        .identified();
        store.insert_command_execution(&caller, &metric).await.unwrap();
    }

    #[tokio::test]
    async fn commands_are_summarised_per_user() {
        let given = a_working_service();
        store_command(given.store.as_ref(), "alice", "build", 10.0, "success").await;
        store_command(given.store.as_ref(), "alice", "test", 30.0, "error").await;
        store_command(given.store.as_ref(), "bob", "build", 5.0, "success").await;
        let reader = Reader::from(given.app);
        let (status, body) = parts(handle(&reader, as_admin(&[("group_by", "user")])).await.unwrap());
        assert_eq!(status, 200, "{body}");
        let groups = body["data"]["groups"].as_array().unwrap();
        assert_eq!(groups[0]["key"], "alice");
        assert_eq!(groups[0]["commands"]["count"], 2);
        assert_eq!(groups[0]["commands"]["error_count"], 1);
        assert_eq!(groups[0]["commands"]["avg_execution_time_ms"], 20.0);
        assert_eq!(groups[1]["key"], "bob");
        assert_eq!(body["data"]["truncated"], false);
        assert_eq!(body["data"]["per_user_rows"], "all");
    }

    #[tokio::test]
    async fn a_member_reads_the_organizations_totals_and_only_its_own_per_user_rows() {
        // GIVEN alice's and bob's commands
        let given = a_working_service();
        store_command(given.store.as_ref(), "alice", "build", 10.0, "success").await;
        store_command(given.store.as_ref(), "bob", "build", 5.0, "success").await;
        let reader = Reader::from(given.app);
        let ask = async |pairs: &[(&str, &str)]| parts(handle(&reader, with_query(pairs)).await.unwrap());
        // WHEN alice (a member) groups by user THEN she gets her own row only
        let (status, body) = ask(&[("group_by", "user")]).await;
        assert_eq!(status, 200, "{body}");
        let keys: Vec<&str> = body["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["alice"]);
        assert_eq!(body["data"]["per_user_rows"], "own");
        // AND by command she gets the organization's totals
        let (_, body) = ask(&[("group_by", "command")]).await;
        assert_eq!(body["data"]["groups"][0]["commands"]["count"], 2);
        // AND naming bob is forbidden, naming herself is not
        let (status, body) = ask(&[("group_by", "model"), ("user", "bob")]).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().contains("user="), "{body}");
        assert_eq!(ask(&[("group_by", "day"), ("user", "alice")]).await.0, 200);
    }

    #[tokio::test]
    async fn bad_parameters_are_named() {
        let reader = Reader::from(a_working_service().app);
        let (status, body) = parts(
            handle(&reader, with_query(&[("group_by", "team"), ("since", "monday")]))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["group_by", "since"], "sorted by parameter");
    }
}
