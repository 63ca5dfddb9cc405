//! Secrets read from Secrets Manager when a container starts, so that no secret is written in a
//! Lambda function's environment (which anyone with `lambda:GetFunctionConfiguration` reads).
//!
//! A deployed function's environment carries only the secrets' ARNs:
//! - `DATABASE_SECRET_ARN`: JSON with `username` and `password` (an RDS-managed secret); they
//!   become `DATABASE_USER` and `DATABASE_PASSWORD` for `DATABASE_HOST`/`DATABASE_NAME`.
//! - `JWT_KEY_SECRET_ARN`: the HS256 secret, or the RS256/ES256 public key (PEM), as its
//!   `SecretString`; it becomes `JWT_SECRET` or `JWT_PUBLIC_KEY` after `JWT_ALGORITHM`.
//! - `JWT_PREVIOUS_KEY_SECRET_ARN`: the same for the key being rotated out
//!   (`JWT_PREVIOUS_SECRET` or `JWT_PREVIOUS_PUBLIC_KEY`).
//!
//! [`resolve`] fetches each ARN that is set, once, into the [`Env`] the function builds its
//! state from (the process environment is not changed); the state keeps them for the container's
//! life. Without ARNs nothing is fetched, so local runs and tests keep the plain variables. A
//! secret that cannot be read fails the start with an error naming its ARN variable; no secret
//! text is ever part of an error.
//!
//! The client is the service's own SigV4-signed JSON call (`secretsmanager.GetSecretValue`), as
//! for DynamoDB and the management API (`crate::adapters::signing`), rather than `aws-sdk-secretsmanager`:
//! it is one call at start-up, the signer, credentials and TLS stack are linked already, and an
//! SDK client would add another crate tree to every function's build and binary (~1 MB, as the
//! management API's client did) for fewer lines than its set-up takes.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::adapters::signing::Signer;
use crate::adapters::tls::HttpClient;
use crate::config::{ConfigError, Env};

pub const DATABASE_SECRET_ARN: &str = "DATABASE_SECRET_ARN";
pub const JWT_KEY_SECRET_ARN: &str = "JWT_KEY_SECRET_ARN";
pub const JWT_PREVIOUS_KEY_SECRET_ARN: &str = "JWT_PREVIOUS_KEY_SECRET_ARN";
/// Every variable that names a secret.
pub const ARN_VARIABLES: [&str; 3] = [DATABASE_SECRET_ARN, JWT_KEY_SECRET_ARN, JWT_PREVIOUS_KEY_SECRET_ARN];

/// The endpoint variable of the service, as the AWS SDKs name it.
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
/// A start-up fetch gets this long; past it the start fails (and Lambda retries the init).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal Secrets Manager client: the JSON protocol, signed for `secretsmanager`.
pub struct SecretsManager {
    client: HttpClient,
    endpoint: http::Uri,
    host: String,
    signer: Signer,
}

impl SecretsManager {
    /// Endpoint from `AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL` (through the
    /// SDK configuration), else the region's public endpoint; region and credentials as the SDK
    /// finds them.
    pub fn new(env: &Env, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let signer = Signer::new(sdk)?;
        let (variable, endpoint) = match env.optional(ENDPOINT_VARIABLE) {
            Some(url) => (ENDPOINT_VARIABLE, url),
            None => match sdk.endpoint_url() {
                Some(url) => ("AWS_ENDPOINT_URL", url.to_owned()),
                None => ("AWS_REGION", default_endpoint(signer.region())),
            },
        };
        let (endpoint, host) = crate::adapters::signing::endpoint(&endpoint, variable)?;
        Ok(Self {
            client: crate::adapters::tls::http_client(variable)?,
            endpoint,
            host,
            signer,
        })
    }

    /// Calls `secretsmanager.<operation>` with `body`; answers the response document. Errors
    /// carry the status and AWS's error type and message, never a request or response body.
    pub async fn call(&self, operation: &str, body: &Value) -> Result<Value, String> {
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let credentials = self.signer.credentials().await?;
        let request = self.signed_request(operation, payload, &credentials, SystemTime::now())?;
        let answer = crate::adapters::signing::send_json(&self.client, request, operation).await?;
        if answer.status.is_success() {
            return Ok(answer.document);
        }
        Err(answer.error_detail(operation))
    }

    /// The `SecretString` of the secret `arn` (its current version).
    pub async fn secret_string(&self, arn: &str) -> Result<String, String> {
        let answer = tokio::time::timeout(FETCH_TIMEOUT, self.call("GetSecretValue", &json!({ "SecretId": arn })))
            .await
            .map_err(|_| format!("GetSecretValue: no answer within {FETCH_TIMEOUT:?}"))??;
        match answer.get("SecretString").and_then(Value::as_str) {
            Some(secret) => Ok(secret.to_owned()),
            None => Err("GetSecretValue: the secret has no SecretString (binary secrets are not supported)".into()),
        }
    }

    /// The HTTP request of one call, signed with SigV4 for `secretsmanager` in this region.
    pub fn signed_request(
        &self,
        operation: &str,
        payload: Vec<u8>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let target = format!("secretsmanager.{operation}");
        crate::adapters::signing::signed_json_post(
            &self.signer,
            (&self.endpoint, &self.host),
            ("secretsmanager", "1.1", &target),
            payload,
            credentials,
            time,
        )
    }
}

/// The public endpoint of Secrets Manager in a region.
fn default_endpoint(region: &str) -> String {
    crate::adapters::signing::public_endpoint("secretsmanager", region)
}

/// The ARN variables set in `env`, with their ARNs; refuses a plain variable set beside the ARN
/// that replaces it (which of the two would win is a trap).
pub fn wanted(env: &Env) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let mut wanted = Vec::new();
    for variable in ARN_VARIABLES {
        let Some(arn) = env.optional(variable) else {
            continue;
        };
        for replaced in replaced_by(variable) {
            if env.optional(replaced).is_some() {
                return Err(ConfigError::new(
                    variable,
                    format!("cannot be combined with {replaced}: set one or the other"),
                ));
            }
        }
        if !arn.starts_with("arn:") {
            return Err(ConfigError::new(variable, "must be a Secrets Manager secret ARN"));
        }
        wanted.push((variable, arn));
    }
    Ok(wanted)
}

/// The plain variables a secret stands for.
fn replaced_by(variable: &str) -> &'static [&'static str] {
    match variable {
        DATABASE_SECRET_ARN => &["DATABASE_URL", "DATABASE_USER", "DATABASE_PASSWORD"],
        JWT_KEY_SECRET_ARN => &["JWT_SECRET", "JWT_PUBLIC_KEY"],
        _ => &["JWT_PREVIOUS_SECRET", "JWT_PREVIOUS_PUBLIC_KEY"],
    }
}

/// Puts the text of the secret named by `variable` into the variables it stands for.
pub fn apply(env: &mut Env, variable: &'static str, secret: String) -> Result<(), ConfigError> {
    let hs256 = env.optional("JWT_ALGORITHM").is_none_or(|a| a == "HS256");
    match variable {
        DATABASE_SECRET_ARN => {
            #[derive(serde::Deserialize)]
            struct Login {
                username: String,
                password: String,
            }
            // serde's messages can quote the document: none of it goes into the error.
            let login: Login = serde_json::from_str(&secret).map_err(|_| {
                ConfigError::new(
                    variable,
                    "the secret is not a JSON object with the strings `username` and `password`",
                )
            })?;
            env.set_from_secret("DATABASE_USER", login.username, variable);
            env.set_from_secret("DATABASE_PASSWORD", login.password, variable);
        }
        JWT_KEY_SECRET_ARN => {
            let name = if hs256 { "JWT_SECRET" } else { "JWT_PUBLIC_KEY" };
            env.set_from_secret(name, secret, variable);
        }
        _ => {
            let name = if hs256 {
                "JWT_PREVIOUS_SECRET"
            } else {
                "JWT_PREVIOUS_PUBLIC_KEY"
            };
            env.set_from_secret(name, secret, variable);
        }
    }
    Ok(())
}

/// `env` with every secret its ARN variables name read from Secrets Manager (nothing is fetched,
/// and no AWS configuration is needed, when none is set).
pub async fn resolve(mut env: Env, aws: &SdkConfig) -> Result<Env, ConfigError> {
    let wanted = wanted(&env)?;
    if wanted.is_empty() {
        return Ok(env);
    }
    let client = SecretsManager::new(&env, aws)?;
    for (variable, arn) in wanted {
        let secret = client
            .secret_string(&arn)
            .await
            .map_err(|problem| ConfigError::new(variable, format!("cannot read the secret: {problem}")))?;
        apply(&mut env, variable, secret)?;
    }
    Ok(env)
}

/// [`resolve`] for a function that builds no other AWS client: the SDK configuration is loaded
/// only when a secret is to be read.
pub async fn resolve_loading_aws(env: Env) -> Result<Env, ConfigError> {
    if wanted(&env)?.is_empty() {
        return Ok(env);
    }
    let aws = crate::adapters::aws_config().await;
    resolve(env, &aws).await
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;
    use crate::config::{AuthConfig, DatabaseConfig, JwtKey};

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:metrics/dev/jwt-AbCdEf";

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn without_arns_nothing_is_wanted_and_plain_variables_stay() {
        let env = env(&[
            ("JWT_SECRET", "plain-secret-0123456789"),
            ("DATABASE_URL", "postgres://h/db"),
        ]);
        assert!(wanted(&env).unwrap().is_empty());
    }

    #[test]
    fn an_arn_beside_the_variable_it_replaces_is_refused() {
        for (arn_variable, plain) in [
            (DATABASE_SECRET_ARN, "DATABASE_URL"),
            (DATABASE_SECRET_ARN, "DATABASE_PASSWORD"),
            (JWT_KEY_SECRET_ARN, "JWT_SECRET"),
            (JWT_KEY_SECRET_ARN, "JWT_PUBLIC_KEY"),
            (JWT_PREVIOUS_KEY_SECRET_ARN, "JWT_PREVIOUS_SECRET"),
        ] {
            let err = wanted(&env(&[(arn_variable, ARN), (plain, "x")])).unwrap_err();
            assert_eq!(err.variable, arn_variable);
            assert!(err.problem.contains(plain), "{err}");
        }
        assert_eq!(
            wanted(&env(&[(JWT_KEY_SECRET_ARN, "metrics/dev/jwt")]))
                .unwrap_err()
                .variable,
            JWT_KEY_SECRET_ARN
        );
        let all = wanted(&env(&[
            (DATABASE_SECRET_ARN, ARN),
            (JWT_KEY_SECRET_ARN, ARN),
            (JWT_PREVIOUS_KEY_SECRET_ARN, ARN),
        ]))
        .unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn the_database_secret_gives_user_and_password_for_the_host() {
        let mut env = env(&[
            (DATABASE_SECRET_ARN, ARN),
            ("DATABASE_HOST", "proxy.internal"),
            ("DATABASE_NAME", "metrics"),
        ]);
        apply(
            &mut env,
            DATABASE_SECRET_ARN,
            r#"{"username":"svc","password":"p@ss\"word","engine":"postgres"}"#.into(),
        )
        .unwrap();
        let config = DatabaseConfig::from_env(&env).unwrap();
        assert_eq!(config.connection.get_user(), Some("svc"));
        assert_eq!(config.connection.get_password(), Some("p@ss\"word".as_bytes()));
    }

    #[test]
    fn a_database_secret_that_is_not_a_login_is_named_without_its_text() {
        for secret in [
            r#"{"username":"svc"}"#,
            "hunter2-plain",
            r#"{"username":"svc","password":7}"#,
        ] {
            let mut env = env(&[(DATABASE_SECRET_ARN, ARN)]);
            let err = apply(&mut env, DATABASE_SECRET_ARN, secret.into()).unwrap_err();
            assert_eq!(err.variable, DATABASE_SECRET_ARN);
            assert!(
                !err.to_string().contains("hunter2") && !err.to_string().contains("svc"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_jwt_secret_becomes_the_key_of_the_configured_algorithm() {
        let mut hs = env(&[(JWT_KEY_SECRET_ARN, ARN), (JWT_PREVIOUS_KEY_SECRET_ARN, ARN)]);
        apply(&mut hs, JWT_KEY_SECRET_ARN, "new-secret-0123456789".into()).unwrap();
        apply(&mut hs, JWT_PREVIOUS_KEY_SECRET_ARN, "old-secret-0123456789".into()).unwrap();
        let config = AuthConfig::from_env(&hs).unwrap();
        assert!(matches!(&config.key, JwtKey::Hs256 { secret } if secret == "new-secret-0123456789"));
        assert!(matches!(&config.previous, Some(JwtKey::Hs256 { secret }) if secret == "old-secret-0123456789"));

        let mut rs = env(&[(JWT_KEY_SECRET_ARN, ARN), ("JWT_ALGORITHM", "RS256")]);
        apply(&mut rs, JWT_KEY_SECRET_ARN, "not a pem".into()).unwrap();
        let err = AuthConfig::from_env(&rs).unwrap_err();
        assert_eq!(err.variable, JWT_KEY_SECRET_ARN, "errors name the ARN variable");
        assert!(!err.to_string().contains("not a pem"));
    }

    #[test]
    fn a_secret_from_secrets_manager_obeys_the_same_rules_and_names_its_arn() {
        let mut short = env(&[(JWT_KEY_SECRET_ARN, ARN)]);
        apply(&mut short, JWT_KEY_SECRET_ARN, "short".into()).unwrap();
        let err = AuthConfig::from_env(&short).unwrap_err();
        assert_eq!(err.variable, JWT_KEY_SECRET_ARN);
        assert!(!err.to_string().contains("short\""), "{err}");

        let mut public = env(&[(JWT_KEY_SECRET_ARN, ARN), ("STAGE", "dev")]);
        apply(&mut public, JWT_KEY_SECRET_ARN, crate::config::LOCAL_DEV_SECRET.into()).unwrap();
        assert_eq!(AuthConfig::from_env(&public).unwrap_err().variable, JWT_KEY_SECRET_ARN);
    }

    fn sdk(endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            )))
            .behavior_version(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    #[test]
    fn get_secret_value_is_a_signed_json_call_to_the_configured_endpoint() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_757_327_400);
        let public = SecretsManager::new(&env(&[]), &sdk(None)).unwrap();
        let request = public
            .signed_request("GetSecretValue", b"{}".to_vec(), &credentials, time)
            .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://secretsmanager.eu-west-1.amazonaws.com/"
        );
        let headers = request.headers();
        assert_eq!(headers["x-amz-target"], "secretsmanager.GetSecretValue");
        assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
        assert!(
            headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250908/eu-west-1/secretsmanager/aws4_request")
        );
        // AWS_ENDPOINT_URL (through the SDK configuration), then the service's own variable.
        let general = SecretsManager::new(&env(&[]), &sdk(Some("http://127.0.0.1:5000"))).unwrap();
        assert_eq!(general.host, "127.0.0.1:5000");
        let specific = SecretsManager::new(
            &env(&[(ENDPOINT_VARIABLE, "http://127.0.0.1:6000")]),
            &sdk(Some("http://127.0.0.1:5000")),
        )
        .unwrap();
        assert_eq!(specific.host, "127.0.0.1:6000");
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn"
        );
    }
}
