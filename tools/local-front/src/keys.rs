//! `local-front key create|list|revoke`: an operator's API keys, written straight to the keys
//! table (`API_KEYS_TABLE_NAME`) through the code the key routes run, so the first admin key of
//! an organization needs no token. `create` prints the key once on stdout, its description on
//! stderr; the key is never written anywhere else.

use chrono::Utc;
use serde_json::{Value, json};
use shared::adapters::dynamodb::api_keys::ApiKeyConfig;
use shared::adapters::dynamodb::api_keys::DynamoApiKeys;
use shared::app::keys::{created, issue, list, revoke};
use shared::config::Env;
use shared::domain::api_keys::request::NewKeyRequest;
use shared::domain::ids::{Caller, OrgId, Role, UserId};
use shared::http::error::ApiError;

/// Who the keys table says created a key made by this command.
pub const OPERATOR: &str = "operator";

/// The options of `key`.
#[derive(Debug, Default, PartialEq)]
struct KeyOptions {
    org: Option<String>,
    user: Option<String>,
    role: Option<String>,
    name: Option<String>,
    expires_at: Option<String>,
    id: Option<String>,
}

fn options(args: &[String]) -> Result<KeyOptions, String> {
    let mut options = KeyOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = Some(it.next().ok_or_else(|| format!("{flag} needs a value"))?.clone());
        match flag.as_str() {
            "--org" => options.org = value,
            "--user" => options.user = value,
            "--role" => options.role = value,
            "--name" => options.name = value,
            "--expires-at" => options.expires_at = value,
            "--id" => options.id = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// Runs `key <action> [options]` against the keys table the environment names; what it prints
/// on stdout.
pub async fn run(args: &[String]) -> Result<String, String> {
    let (action, rest) = args.split_first().ok_or(USAGE)?;
    let options = options(rest)?;
    let env = Env::process();
    let config = ApiKeyConfig::from_env(&env).map_err(|e| e.to_string())?;
    let store = DynamoApiKeys::new(&shared::app::aws_config().await, &config).map_err(|e| e.to_string())?;
    let org = options.org.as_deref().ok_or("--org is required")?;
    let operator = Caller {
        org: OrgId::parse(org).map_err(|e| format!("--org {org:?}: {e}"))?,
        user: UserId::parse(OPERATOR).map_err(|e| e.to_string())?,
        role: Role::Admin,
    };
    let now = Utc::now();
    match action.as_str() {
        "create" => {
            let request = NewKeyRequest::from_json(&create_body(&options), now).map_err(|errors| {
                let named: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", flag(&e.field), e.message))
                    .collect();
                named.join("; ")
            })?;
            let (key, info) = issue(&store, &operator, &request, now).await.map_err(failed)?;
            eprintln!(
                "{}",
                created(&key, &info, now).as_object().map(describe).unwrap_or_default()
            );
            Ok(key.text().to_owned())
        }
        "list" => {
            let listed = list(&store, &operator, now).await.map_err(failed)?;
            let lines: Vec<String> = listed["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            Ok(lines.join("\n"))
        }
        "revoke" => Ok(revoke(&store, &operator, options.id.as_deref(), now)
            .await
            .map_err(failed)?
            .to_string()),
        other => Err(format!("unknown key action {other:?}; {USAGE}")),
    }
}

const USAGE: &str = "usage: local-front key create --org ORG --user USER [--role admin|member] [--name NAME] \
                     [--expires-at RFC3339] | key list --org ORG | key revoke --org ORG --id KEY_ID";

/// The body `POST /api/v1/keys` would get for these options.
fn create_body(options: &KeyOptions) -> Value {
    json!({"user_id": options.user, "role": options.role, "name": options.name, "expires_at": options.expires_at})
}

/// The option that sets a field of the request body.
fn flag(field: &str) -> String {
    match field {
        "user_id" => "--user".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The key's description without the key itself (stdout has it, once).
fn describe(data: &serde_json::Map<String, Value>) -> String {
    let mut data = data.clone();
    data.remove("key");
    format!("created {}", Value::Object(data))
}

fn failed(err: ApiError) -> String {
    match err {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", flag(&e.field), e.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unavailable { detail, .. } | ApiError::Internal(detail) => detail,
        other => other.public_message(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_are_read_and_named_in_errors() {
        let read = options(&args(
            "--org acme --user alice --role admin --expires-at 2030-01-01T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(read.org.as_deref(), Some("acme"));
        assert_eq!(read.role.as_deref(), Some("admin"));
        assert!(options(&args("--org")).is_err());
        assert!(options(&args("--colour red")).is_err());
        let errors = NewKeyRequest::from_json(&create_body(&read), Utc::now());
        assert!(errors.is_ok());
        let bad = KeyOptions {
            expires_at: Some("soon".into()),
            ..KeyOptions::default()
        };
        let fields: Vec<String> = NewKeyRequest::from_json(&create_body(&bad), Utc::now())
            .unwrap_err()
            .iter()
            .map(|e| flag(&e.field))
            .collect();
        assert_eq!(fields, ["--user", "--expires-at"]);
    }
}
