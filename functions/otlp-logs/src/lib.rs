//! `POST /otlp/v1/logs`: Claude Code's OpenTelemetry events (OTLP/HTTP log records, protobuf or
//! JSON, gzip allowed). Model requests and errors become the usage of the caller's summaries;
//! tool results, tool decisions and prompts (by length; their text only when the organization
//! keeps content, redacted) are kept. What is read is in `shared::domain::otlp::logs`.

use lambda_http::{Body, Error, Request, Response};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use shared::app::otlp::OtlpApp;

/// What this function builds once per container.
pub type State = OtlpApp;

pub const ROUTE: &str = "POST /otlp/v1/logs";

pub async fn handle(state: &OtlpApp, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .app
        .api
        .handle_otlp(
            &req,
            ROUTE,
            state.max_body_bytes,
            async |caller, export: ExportLogsServiceRequest| Ok(state.export_logs(&caller, &export).await?),
        )
        .await)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lambda_http::http::HeaderValue;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message;
    use shared::domain::hooks::HookContent;
    use shared::domain::ids::OrgId;
    use shared::fakes::store::InMemoryStore;
    use shared::fakes::{a_working_service, fixture, token};

    use super::*;

    const EVENT: &str = include_str!("../../../events/otlp-logs.json");
    const RECORDED_JSON: &str = include_str!("../../../events/otlp/logs.json");

    fn otlp_app(content: HookContent) -> (OtlpApp, Arc<InMemoryStore>) {
        let given = a_working_service();
        given.settings.set(
            &demo(),
            serde_json::json!({"content": {"hook_content": shared::domain::validation::Choice::as_str(content)}}),
        );
        let state = OtlpApp {
            app: Arc::new(given.app),
            max_body_bytes: 1 << 20,
        };
        (state, given.store)
    }

    fn demo() -> OrgId {
        OrgId::parse("demo").unwrap()
    }

    fn json_export(body: &str) -> Request {
        let mut req = fixture(EVENT);
        let headers = req.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let bearer = format!("Bearer {}", token("demo", "dev-user"));
        headers.insert("authorization", HeaderValue::from_str(&bearer).unwrap());
        *req.body_mut() = Body::from(body.to_owned());
        req
    }

    /// The recorded export, as if the user had opted into sending prompts (`OTEL_LOG_USER_PROMPTS`).
    fn with_prompt(text: &str) -> String {
        let mut export: serde_json::Value = serde_json::from_str(RECORDED_JSON).unwrap();
        let mut replaced = 0;
        for record in export["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array_mut()
            .unwrap()
        {
            for attribute in record["attributes"].as_array_mut().unwrap() {
                if attribute["key"] == "prompt" {
                    attribute["value"] = serde_json::json!({"stringValue": text});
                    replaced += 1;
                }
            }
        }
        assert_eq!(replaced, 1, "the recording has one prompt");
        export.to_string()
    }

    #[tokio::test]
    async fn the_recorded_events_are_kept_and_the_others_dropped_without_refusal() {
        // GIVEN Claude Code's protobuf logs export
        let (state, store) = otlp_app(HookContent::Metrics);
        // WHEN it arrives
        let response = handle(&state, fixture(EVENT)).await.unwrap();
        // THEN nothing is refused
        assert_eq!(response.status(), 200);
        let answer = ExportLogsServiceResponse::decode(response.body().as_ref()).unwrap();
        assert_eq!(answer.partial_success, None);
        // AND its five kept events are stored, on one session
        let events = store.usage_events(&demo());
        assert_eq!(events.len(), 5);
        assert_eq!(store.sessions(&demo()).len(), 1);
        // AND a retry stores nothing more
        handle(&state, fixture(EVENT)).await.unwrap();
        assert_eq!(store.usage_events(&demo()).len(), 5);
    }

    #[tokio::test]
    async fn prompt_text_is_never_stored_by_default() {
        let (state, store) = otlp_app(HookContent::Metrics);
        let with_text = with_prompt("refactor the billing module");
        let response = handle(&state, json_export(&with_text)).await.unwrap();
        assert_eq!(response.status(), 200);
        let stored = format!("{:?}", store.usage_events(&demo()));
        assert!(!stored.contains("billing"), "{stored}");
        assert!(stored.contains("prompt_length"));
    }

    #[tokio::test]
    async fn an_organization_that_keeps_content_keeps_prompts_redacted() {
        let (state, store) = otlp_app(HookContent::Redacted);
        let with_secret = with_prompt("use ghp_abcdefghijklmnopqrstuvwxyz0123456789 to push");
        handle(&state, json_export(&with_secret)).await.unwrap();
        let prompt = store
            .usage_events(&demo())
            .into_iter()
            .find(|e| e.name == "claude_code.user_prompt")
            .unwrap();
        let text = prompt.attributes["prompt"].as_str().unwrap().to_owned();
        assert!(text.contains("to push") && !text.contains("ghp_abc"), "{text}");
    }
}
