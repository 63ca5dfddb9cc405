//! `GET /api/v1/keys` (admins): the caller's organization's API keys, newest first, revoked and
//! expired ones included with their status; never a secret or its hash. No query parameters.

use lambda_http::{Body, Error, Request, Response};
use shared::app::keys::{KeyAdmin, admin_only, list};
use shared::http::api::no_parameters;

/// What this function builds once per container: the pipeline and the key store.
pub type State = KeyAdmin;

pub const ROUTE: &str = "GET /api/v1/keys";

pub async fn handle(state: &KeyAdmin, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .api
        .handle_query(&req, ROUTE, async |caller, params| {
            admin_only(&caller)?;
            no_parameters(&params)?;
            list(state.keys.as_ref(), &caller, chrono::Utc::now()).await
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::api_keys::request::NewKeyRequest;
    use shared::domain::ids::{Caller, OrgId, Role, UserId};
    use shared::fakes::{a_key_admin, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/api-key-list.json");

    async fn listed(state: &KeyAdmin, bearer: &str) -> (u16, serde_json::Value) {
        parts(handle(state, with_bearer(EVENT, bearer, &json!(null))).await.unwrap())
    }

    #[tokio::test]
    async fn admins_list_their_organizations_keys_and_members_are_forbidden() {
        let (state, keys) = a_key_admin();
        let root = Caller {
            org: OrgId::parse("acme").unwrap(),
            user: UserId::parse("root").unwrap(),
            role: Role::Admin,
        };
        let now = chrono::Utc::now();
        for user in ["alice", "bob"] {
            let request = NewKeyRequest::from_json(&json!({"user_id": user}), now).unwrap();
            shared::app::keys::issue(keys.as_ref(), &root, &request, now)
                .await
                .unwrap();
        }
        let (status, body) = listed(&state, &token_as("acme", "root", "admin")).await;
        assert_eq!(status, 200, "{body}");
        let listed_keys = body["data"]["keys"].as_array().unwrap();
        assert_eq!(listed_keys.len(), 2);
        assert!(
            listed_keys
                .iter()
                .all(|k| k.get("key").is_none() && k["status"] == "active")
        );

        let (_, body) = listed(&state, &token_as("other", "root", "admin")).await;
        assert_eq!(
            body["data"]["keys"],
            json!([]),
            "another organization's keys are not listed"
        );
        assert_eq!(listed(&state, &token_as("acme", "alice", "member")).await.0, 403);
    }
}
