//! `POST /otlp/v1/metrics`: Claude Code's OpenTelemetry metrics export (OTLP/HTTP, protobuf or
//! JSON, gzip allowed). The tokens, cost, lines, commits, pull requests and active time it
//! reports become the usage of the caller's summaries; what is read is in
//! `shared::domain::otlp::metrics`, the use case in `shared::app::otlp`.

use lambda_http::{Body, Error, Request, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use shared::app::otlp::OtlpApp;

/// What this function builds once per container.
pub type State = OtlpApp;

pub const ROUTE: &str = "POST /otlp/v1/metrics";

pub async fn handle(state: &OtlpApp, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .app
        .api
        .handle_otlp(
            &req,
            ROUTE,
            state.max_body_bytes,
            async |caller, export: ExportMetricsServiceRequest| Ok(state.export_metrics(&caller, &export).await?),
        )
        .await)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use lambda_http::http::HeaderValue;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use prost::Message;
    use shared::domain::ids::OrgId;
    use shared::domain::usage::UsageField;
    use shared::fakes::store::InMemoryStore;
    use shared::fakes::{a_working_service, fixture, token};
    use shared::http::otlp::RpcStatus;

    use super::*;

    const EVENT: &str = include_str!("../../../events/otlp-metrics.json");
    const RECORDED_JSON: &str = include_str!("../../../events/otlp/metrics.json");

    fn otlp_app() -> (OtlpApp, Arc<InMemoryStore>) {
        let given = a_working_service();
        let state = OtlpApp {
            app: Arc::new(given.app),
            max_body_bytes: 1 << 20,
        };
        (state, given.store)
    }

    /// The fixture (as API Gateway hands Claude Code's protobuf export over) with another body.
    fn export(body: Vec<u8>, content_type: &'static str, gzip: bool) -> Request {
        let mut req = fixture(EVENT);
        let headers = req.headers_mut();
        headers.insert("content-type", HeaderValue::from_static(content_type));
        let bearer = format!("Bearer {}", token("demo", "dev-user"));
        headers.insert("authorization", HeaderValue::from_str(&bearer).unwrap());
        let body = if gzip {
            headers.insert("content-encoding", HeaderValue::from_static("gzip"));
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).unwrap();
            encoder.finish().unwrap()
        } else {
            body
        };
        *req.body_mut() = Body::from(body);
        req
    }

    fn demo() -> OrgId {
        OrgId::parse("demo").unwrap()
    }

    fn stored_input_tokens(store: &InMemoryStore) -> f64 {
        store
            .usage_points(&demo())
            .iter()
            .filter(|p| p.field == Some(UsageField::InputTokens))
            .map(|p| p.value)
            .sum()
    }

    #[tokio::test]
    async fn the_recorded_protobuf_export_is_answered_in_protobuf_and_kept() {
        // GIVEN Claude Code's protobuf export, as API Gateway delivers it
        let (state, store) = otlp_app();
        // WHEN it arrives
        let response = handle(&state, fixture(EVENT)).await.unwrap();
        // THEN an empty ExportMetricsServiceResponse (nothing refused), in protobuf
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-protobuf");
        let answer = ExportMetricsServiceResponse::decode(response.body().as_ref()).unwrap();
        assert_eq!(answer.partial_success, None);
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
        // AND its points are kept, on the session its session.id names
        assert_eq!(store.usage_points(&demo()).len(), 7);
        assert_eq!(store.sessions(&demo()).len(), 1);
    }

    #[tokio::test]
    async fn json_and_gzip_bodies_are_read_and_a_retry_stores_nothing_twice() {
        let (state, store) = otlp_app();
        for gzip in [false, true] {
            let req = export(RECORDED_JSON.as_bytes().to_vec(), "application/json", gzip);
            let response = handle(&state, req).await.unwrap();
            assert_eq!(response.status(), 200, "gzip: {gzip}");
            assert_eq!(response.headers()["content-type"], "application/json");
            let answer: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
            assert!(answer.get("partialSuccess").is_none_or(|p| p.is_null()), "{answer}");
        }
        // The second (gzip) export was the same points: kept once.
        assert_eq!(stored_input_tokens(&store), 240.0);
    }

    #[tokio::test]
    async fn refused_points_are_reported_as_a_partial_success() {
        let (state, store) = otlp_app();
        let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                {"asDouble": 0.5, "timeUnixNano": "1796187601039000000"},
                {"asDouble": -0.5, "timeUnixNano": "1796187601039000000"}
            ]}},
            {"name": "vendor.other", "sum": {"aggregationTemporality": 1, "dataPoints": [{"asInt": "3"}]}}
        ]}]}]});
        let response = handle(&state, export(body.to_string().into_bytes(), "application/json", false))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], 1, "{answer}");
        assert!(
            answer["partialSuccess"]["errorMessage"]
                .as_str()
                .unwrap()
                .contains("not a count")
        );
        assert_eq!(store.usage_points(&demo()).len(), 1, "the good point is kept");
    }

    #[tokio::test]
    async fn bad_bodies_are_a_400_status_in_the_requests_encoding_and_other_types_a_415() {
        let (state, _) = otlp_app();
        let response = handle(
            &state,
            export(b"\xff\xff\xff".to_vec(), "application/x-protobuf", false),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 400);
        assert!(
            !response.headers().contains_key("retry-after"),
            "a 400 must not be retried"
        );
        let status = RpcStatus::decode(response.body().as_ref()).unwrap();
        assert!(status.message.starts_with("body: Not a protobuf"), "{}", status.message);
        let response = handle(&state, export(b"{}".to_vec(), "text/plain", false))
            .await
            .unwrap();
        assert_eq!(response.status(), 415);
    }

    #[tokio::test]
    async fn without_a_token_nothing_is_read() {
        let (state, store) = otlp_app();
        let mut req = fixture(EVENT);
        req.headers_mut().remove("authorization");
        let response = handle(&state, req).await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(store.usage_points(&demo()).is_empty());
    }
}
