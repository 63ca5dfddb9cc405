//! The WebSocket API's connection routes. `$connect` authenticates the same JWT as the HTTP
//! API — from the `token` query parameter (browsers cannot set headers on a WebSocket) or an
//! `Authorization: Bearer` header — and keeps the connection under the token's organization;
//! any other answer than 200 refuses the handshake. `$disconnect` forgets the connection.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use http::{HeaderMap, HeaderValue};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;
use shared::app::FromEnv;
use shared::auth::Authenticator;
use shared::config::{AuthConfig, ConfigError, Env};
use shared::live::{Connection, Connections, DynamoConnections};

pub struct LiveConnection {
    pub auth: Authenticator,
    pub connections: Arc<dyn Connections>,
}

impl FromEnv for LiveConnection {
    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: Authenticator::new(&AuthConfig::from_env(env)?)?,
            connections: Arc::new(DynamoConnections::new(aws, env.required("CONNECTIONS_TABLE_NAME")?)?),
        })
    }
}

pub async fn handle(
    state: &LiveConnection,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Error> {
    let request = event.payload;
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        return Ok(answer(400, "No connection id"));
    };
    Ok(match context.route_key.as_deref() {
        Some("$connect") => connect(state, &request, connection_id).await,
        Some("$disconnect") => disconnect(state, connection_id).await,
        other => {
            tracing::warn!(route = ?other, "unexpected WebSocket route");
            answer(400, "Unknown route")
        }
    })
}

async fn connect(
    state: &LiveConnection,
    request: &ApiGatewayWebsocketProxyRequest,
    connection_id: &str,
) -> ApiGatewayProxyResponse {
    let caller = match state.auth.authenticate(&credentials(request)).await {
        Ok(caller) => caller,
        Err(err) => {
            tracing::info!(connection = connection_id, error = %err, "WebSocket connection refused");
            return answer(401, &err.to_string());
        }
    };
    match state
        .connections
        .add(&Connection::opened_now(connection_id, &caller))
        .await
    {
        Ok(()) => {
            tracing::info!(connection = connection_id, org = %caller.org, user = %caller.user, "WebSocket connected");
            answer(200, "Connected")
        }
        Err(err) => {
            tracing::error!(connection = connection_id, org = %caller.org, error = %err, "connection not kept");
            answer(503, "Service temporarily unavailable")
        }
    }
}

async fn disconnect(state: &LiveConnection, connection_id: &str) -> ApiGatewayProxyResponse {
    // A connection left behind expires through the table's TTL and is forgotten by the first
    // push that finds it gone.
    if let Err(err) = state.connections.remove(connection_id).await {
        tracing::warn!(connection = connection_id, error = %err, "connection not forgotten");
    }
    answer(200, "Disconnected")
}

/// The request's headers, with the `token` query parameter as a bearer token when there is no
/// `Authorization` header.
fn credentials(request: &ApiGatewayWebsocketProxyRequest) -> HeaderMap {
    let mut headers = request.headers.clone();
    if !headers.contains_key(http::header::AUTHORIZATION)
        && let Some(token) = request.query_string_parameters.first("token")
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    headers
}

fn answer(status: i64, message: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response
        .headers
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(json!({ "message": message }).to_string()));
    response
}

#[cfg(test)]
mod tests {
    use shared::ids::OrgId;
    use shared::live::InMemoryConnections;
    use shared::testing::token;

    use super::*;

    const CONNECT: &str = include_str!("../../../events/live-connection.json");
    const DISCONNECT: &str = include_str!("../../../events/live-disconnect.json");

    fn state() -> (LiveConnection, Arc<InMemoryConnections>) {
        let connections = Arc::new(InMemoryConnections::default());
        let auth = Authenticator::new(
            &AuthConfig::from_env(&Env::from_pairs([("JWT_SECRET", shared::config::LOCAL_DEV_SECRET)])).unwrap(),
        )
        .unwrap();
        (
            LiveConnection {
                auth,
                connections: connections.clone(),
            },
            connections,
        )
    }

    fn event(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
        let mut value: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut value);
        LambdaEvent::new(serde_json::from_value(value).unwrap(), Default::default())
    }

    #[tokio::test]
    async fn the_fixture_connects_under_the_tokens_organization() {
        let (state, connections) = state();
        let response = handle(&state, event(CONNECT, |_| {})).await.unwrap();
        assert_eq!(response.status_code, 200);
        let kept = connections.all();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, "L0SM9cOFvHcCIhw=");
        assert_eq!(kept[0].org, OrgId::parse("demo").unwrap());
        assert_eq!(kept[0].user.as_str(), "dev-user");
        assert!(kept[0].expires_at > chrono_now() + 7000);
    }

    #[tokio::test]
    async fn a_bearer_header_works_as_well_as_the_query_parameter() {
        let (state, connections) = state();
        let bearer = format!("Bearer {}", token("acme", "alice"));
        let response = handle(
            &state,
            event(CONNECT, |e| {
                e["queryStringParameters"] = json!({});
                e["headers"]["Authorization"] = json!(bearer);
            }),
        )
        .await
        .unwrap();
        assert_eq!(response.status_code, 200);
        assert_eq!(connections.all()[0].org.as_str(), "acme");
    }

    #[tokio::test]
    async fn a_missing_or_forged_token_refuses_the_handshake_and_keeps_nothing() {
        let (state, connections) = state();
        let forged = format!("{}x", token("acme", "alice"));
        for query in [json!({}), json!({ "token": forged }), json!({ "token": "" })] {
            let response = handle(&state, event(CONNECT, |e| e["queryStringParameters"] = query.clone()))
                .await
                .unwrap();
            assert_eq!(response.status_code, 401, "{query}");
        }
        assert!(connections.all().is_empty());
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_kept_is_refused_with_a_503_naming_nothing_internal() {
        struct Unavailable;
        #[async_trait::async_trait]
        impl Connections for Unavailable {
            async fn add(&self, _: &Connection) -> Result<(), shared::live::LiveError> {
                Err(shared::live::LiveError::new(
                    "PutItem: connection refused (10.0.0.7:443)",
                ))
            }
            async fn remove(&self, _: &str) -> Result<(), shared::live::LiveError> {
                Err(shared::live::LiveError::new("DeleteItem: connection refused"))
            }
            async fn of_org(&self, _: &OrgId) -> Result<Vec<String>, shared::live::LiveError> {
                Ok(vec![])
            }
        }
        let (mut state, _) = state();
        state.connections = Arc::new(Unavailable);
        let connect = handle(&state, event(CONNECT, |_| {})).await.unwrap();
        assert_eq!(connect.status_code, 503);
        let Some(Body::Text(body)) = connect.body else {
            panic!("a body")
        };
        assert!(!body.contains("10.0.0.7") && !body.contains("PutItem"), "{body}");
        // A disconnect that cannot be recorded is still answered: TTL forgets the connection.
        assert_eq!(
            handle(&state, event(DISCONNECT, |_| {})).await.unwrap().status_code,
            200
        );
    }

    #[tokio::test]
    async fn disconnect_forgets_the_connection() {
        let (state, connections) = state();
        handle(&state, event(CONNECT, |_| {})).await.unwrap();
        let response = handle(&state, event(DISCONNECT, |_| {})).await.unwrap();
        assert_eq!(response.status_code, 200);
        assert!(connections.all().is_empty());
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}
