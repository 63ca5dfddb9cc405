//! `DELETE /api/v1/organization/users/{user_id}` (admins): removes every row of that user in
//! the caller's organization — command executions, agent interactions, sessions, productivity
//! metrics, hook events, OTLP points, events and series, and the user's hourly and daily
//! aggregate and usage rows — in one transaction, and answers the rows removed per table.
//! Other users' rows are untouched; the organization's totals, being sums of per-user rows,
//! stay consistent with what remains.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, RequestExt, Response};
use serde_json::{Value, json};
use shared::adapters::postgres::lifecycle::PgLifecycle;
use shared::app::FromEnv;
use shared::app::KeyAccess;
use shared::config::{ConfigError, Env};
use shared::domain::ids::{Caller, UserId};
use shared::http::api::Api;
use shared::http::error::ApiError;
use shared::ports::lifecycle::DataLifecycle;

/// What this function builds once per container: the pipeline and the lifecycle store.
pub type State = Eraser;

pub const ROUTE: &str = "DELETE /api/v1/organization/users/{user_id}";

pub struct Eraser {
    pub api: Api,
    pub lifecycle: Arc<dyn DataLifecycle>,
}

impl FromEnv for Eraser {
    const API_KEYS: KeyAccess = KeyAccess::Read;

    fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(
            shared::app::api_from_env(env, aws)?,
            Arc::new(PgLifecycle::from_env(env)?),
        ))
    }
}

impl Eraser {
    /// The erasure's state: its work has its own time bound (`ERASE_TIMEOUT_MS`, one
    /// transaction), and only a key that is not revoked now may erase.
    pub fn new(api: Api, lifecycle: Arc<dyn DataLifecycle>) -> Self {
        Self {
            api: api.without_deadline().reading_keys_fresh(),
            lifecycle,
        }
    }
}

pub async fn handle(state: &Eraser, req: Request) -> Result<Response<Body>, Error> {
    let raw_user = req
        .path_parameters_ref()
        .and_then(|params| params.first("user_id"))
        .map(str::to_owned);
    Ok(state
        .api
        .handle_query(&req, ROUTE, async |caller, params| {
            shared::http::api::no_parameters(&params)?;
            erase(state.lifecycle.as_ref(), &caller, raw_user.as_deref()).await
        })
        .await)
}

/// Checks the role, then the id, then erases.
pub async fn erase(lifecycle: &dyn DataLifecycle, caller: &Caller, raw_user: Option<&str>) -> Result<Value, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("erasing a user's data needs the admin role"));
    }
    let user =
        UserId::parse(raw_user.unwrap_or_default()).map_err(|problem| ApiError::validation("user_id", &problem))?;
    let erased = lifecycle.erase_user(&caller.org, &user).await?;
    let total: u64 = erased.values().sum();
    tracing::info!(org = %caller.org, by = %caller.user, erased_user = %user, total, "user erased");
    Ok(json!({ "user_id": user.as_str(), "deleted": erased, "total": total }))
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use shared::fakes::lifecycle::InMemoryLifecycle;
    use shared::fakes::{a_working_service, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/user-erase.json");

    fn eraser(lifecycle: InMemoryLifecycle) -> (Eraser, Arc<InMemoryLifecycle>) {
        let lifecycle = Arc::new(lifecycle);
        let state = Eraser::new(a_working_service().app.api, lifecycle.clone());
        (state, lifecycle)
    }

    async fn erased(state: &Eraser, bearer: &str, user: &str) -> (u16, Value) {
        let params = QueryMap::from(std::collections::HashMap::from([(
            "user_id".to_owned(),
            user.to_owned(),
        )]));
        let req = with_bearer(EVENT, bearer, &json!(null)).with_path_parameters(params);
        parts(handle(state, req).await.unwrap())
    }

    #[tokio::test]
    async fn an_admin_erases_a_user_of_its_own_organization_and_a_member_is_forbidden() {
        let (state, lifecycle) = eraser(InMemoryLifecycle::default());
        let (status, body) = erased(&state, &token_as("acme", "alice", "member"), "bob").await;
        assert_eq!(status, 403, "{body}");
        assert!(lifecycle.erasures.lock().unwrap().is_empty());

        let (status, body) = erased(&state, &token_as("acme", "root", "admin"), "bob").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["user_id"], "bob");
        assert_eq!(body["data"]["deleted"]["command_executions"], 0);
        assert_eq!(body["data"]["deleted"].as_object().unwrap().len(), 14);
        let erasures = lifecycle.erasures.lock().unwrap().clone();
        assert_eq!(erasures.len(), 1);
        assert_eq!((erasures[0].0.as_str(), erasures[0].1.as_str()), ("acme", "bob"));
    }

    #[tokio::test]
    async fn a_bad_user_id_is_a_400_naming_it_and_an_outage_a_503_without_detail() {
        let (state, _) = eraser(InMemoryLifecycle::default());
        let (status, body) = erased(&state, &token_as("acme", "root", "admin"), &"x".repeat(300)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(shared::fakes::error_fields(&body), ["user_id"]);

        let (state, _) = eraser(InMemoryLifecycle::unavailable());
        let (status, body) = erased(&state, &token_as("acme", "root", "admin"), "bob").await;
        assert_eq!(status, 503, "{body}");
        assert!(!body.to_string().contains("in-memory outage"), "{body}");
    }

    #[tokio::test]
    async fn a_parameter_the_route_does_not_take_is_refused_and_nothing_is_erased() {
        // GIVEN an admin who believes `dry_run` is honoured
        let (state, lifecycle) = eraser(InMemoryLifecycle::default());
        let path = QueryMap::from(std::collections::HashMap::from([(
            "user_id".to_owned(),
            "bob".to_owned(),
        )]));
        let query = QueryMap::from(std::collections::HashMap::from([(
            "dry_run".to_owned(),
            "true".to_owned(),
        )]));
        let req = with_bearer(EVENT, &token_as("acme", "root", "admin"), &json!(null))
            .with_path_parameters(path)
            .with_query_string_parameters(query);
        // WHEN the erasure is asked with it
        let (status, body) = parts(handle(&state, req).await.unwrap());
        // THEN it is a 400 naming the parameter, and nothing is erased
        assert_eq!(status, 400, "{body}");
        assert_eq!(shared::fakes::error_fields(&body), ["dry_run"]);
        assert!(lifecycle.erasures.lock().unwrap().is_empty());
    }
}
