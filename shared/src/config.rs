//! Typed configuration, read once from the environment when a container starts.
//!
//! Every value has a variable name (the specification's where it has one), a default where one
//! is safe, and a check; a bad value fails the start with a message naming the variable.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::ratelimit::{Budgets, Limits};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Where configuration values come from: the process environment, or a map in tests, plus the
/// values read from Secrets Manager at start-up (see [`crate::adapters::secrets`]), which live only here,
/// never in the process environment.
pub struct Env {
    values: HashMap<String, String>,
    /// Variables whose value came from a secret, and the `*_SECRET_ARN` variable naming it.
    from_secret: HashMap<String, &'static str>,
}

impl Env {
    pub fn process() -> Self {
        Self {
            values: std::env::vars().collect(),
            from_secret: HashMap::new(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            from_secret: HashMap::new(),
        }
    }

    /// Sets `name` to a value read from the secret that `arn_variable` names.
    pub fn set_from_secret(&mut self, name: &str, value: String, arn_variable: &'static str) {
        self.values.insert(name.to_owned(), value);
        self.from_secret.insert(name.to_owned(), arn_variable);
    }

    /// The variable an error about `name` should name: the secret's ARN variable when the value
    /// came from Secrets Manager, else `name` itself.
    pub fn origin<'a>(&self, name: &'a str) -> &'a str {
        self.from_secret.get(name).copied().unwrap_or(name)
    }

    /// Whether this is a deployed stage rather than a local run: `STAGE` set to anything but
    /// `local` (the template sets it to `dev`, `staging` or `prod`), or, when `STAGE` is unset,
    /// running inside Lambda (`AWS_LAMBDA_FUNCTION_NAME`), so a deployment that forgets `STAGE`
    /// is still treated as deployed. `make dev`, the local front and the tests set neither.
    pub fn is_deployed(&self) -> bool {
        match self.optional("STAGE") {
            Some(stage) => stage != LOCAL_STAGE,
            None => self.optional("AWS_LAMBDA_FUNCTION_NAME").is_some(),
        }
    }

    /// A variable that is set to an empty string counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// A whole number that must be at least `min`.
    pub fn number_or(&self, name: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
        let value: u64 = self.parse_or(name, default)?;
        if value < min {
            return Err(ConfigError::new(name, format!("must be at least {min}, got {value}")));
        }
        Ok(value)
    }

    pub fn millis_or(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.number_or(name, default_ms, 1).map(Duration::from_millis)
    }
}

/// Where the database is and how to reach it.
///
/// Either `DATABASE_URL`, or the parts of an RDS-managed secret: `DATABASE_HOST`, `DATABASE_PORT`
/// (5432), `DATABASE_NAME`, `DATABASE_USER`, `DATABASE_PASSWORD` (no URL encoding needed).
/// `DATABASE_SSL_MODE` (`disable`, `prefer`, `require`) overrides the URL's `sslmode`; with parts
/// it defaults to `require`. Server certificates are checked against the public roots plus
/// `DATABASE_CA_CERT` (PEM, e.g. the RDS CA bundle).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub connection: tokio_postgres::Config,
    pub max_connections: usize,
    /// Budget for getting a connection and for each statement.
    pub timeout: Duration,
    /// Extra trusted CA certificates, PEM.
    pub ca_certificates: Option<String>,
}

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut connection = match env.optional("DATABASE_URL") {
            Some(url) => url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConfigError::new("DATABASE_URL", format!("not a PostgreSQL URL: {e}")))?,
            None => Self::from_parts(env)?,
        };
        if let Some(mode) = env.optional("DATABASE_SSL_MODE") {
            connection.ssl_mode(match mode.as_str() {
                "disable" => tokio_postgres::config::SslMode::Disable,
                "prefer" => tokio_postgres::config::SslMode::Prefer,
                "require" => tokio_postgres::config::SslMode::Require,
                other => {
                    return Err(ConfigError::new(
                        "DATABASE_SSL_MODE",
                        format!("must be disable, prefer or require, got {other:?}"),
                    ));
                }
            });
        }
        let ca_certificates = env.optional("DATABASE_CA_CERT").map(|pem| pem.replace("\\n", "\n"));
        if ca_certificates
            .as_ref()
            .is_some_and(|pem| !pem.contains("-----BEGIN CERTIFICATE-----"))
        {
            return Err(ConfigError::new("DATABASE_CA_CERT", "must be PEM certificates"));
        }
        Ok(Self {
            connection,
            max_connections: env.number_or("DATABASE_MAX_CONNECTIONS", 20, 1)? as usize,
            timeout: env.millis_or("DATABASE_TIMEOUT_MS", 5000)?,
            ca_certificates,
        })
    }

    fn from_parts(env: &Env) -> Result<tokio_postgres::Config, ConfigError> {
        let host = env.optional("DATABASE_HOST").ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "is required (or DATABASE_HOST, DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD)",
            )
        })?;
        let port: u16 = env.parse_or("DATABASE_PORT", 5432)?;
        let mut connection = tokio_postgres::Config::new();
        connection
            .host(&host)
            .port(port)
            .dbname(&env.required("DATABASE_NAME")?)
            .user(&env.required("DATABASE_USER")?)
            .password(env.required("DATABASE_PASSWORD")?)
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        Ok(connection)
    }
}

/// The one signing algorithm a deployment accepts, with its verification key.
#[derive(Clone)]
pub enum JwtKey {
    Hs256 {
        secret: String,
    },
    Rs256 {
        public_key_pem: String,
    },
    Es256 {
        public_key_pem: String,
    },
    /// RS256 or ES256 keys published by the issuer (`JWT_JWKS_URL`), chosen by the token's `kid`.
    Jwks {
        url: String,
        es256: bool,
        /// Least time between two fetches caused by unknown `kid`s (`JWT_JWKS_MIN_REFRESH_MS`).
        min_refresh: Duration,
        timeout: Duration,
    },
}

impl std::fmt::Debug for JwtKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Hs256 { .. } => f.write_str("Hs256(<secret>)"),
            JwtKey::Rs256 { .. } => f.write_str("Rs256(<public key>)"),
            JwtKey::Es256 { .. } => f.write_str("Es256(<public key>)"),
            JwtKey::Jwks { url, es256, .. } => write!(f, "Jwks({url}, {})", if *es256 { "ES256" } else { "RS256" }),
        }
    }
}

pub const MIN_JWT_SECRET_BYTES: usize = 16;
/// The local stack's default secret; the `events/` fixtures are signed with it, so it is public,
/// and every deployed stage ([`Env::is_deployed`]) refuses it.
pub const LOCAL_DEV_SECRET: &str = "local-dev-secret";
/// The `STAGE` of local runs (also what logs and metrics say when `STAGE` is unset).
pub const LOCAL_STAGE: &str = "local";

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub key: JwtKey,
    /// The key being rotated out, still accepted (same algorithm): `JWT_PREVIOUS_SECRET` or
    /// `JWT_PREVIOUS_PUBLIC_KEY`.
    pub previous: Option<JwtKey>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway_seconds: u64,
}

impl AuthConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let algorithm = env.optional("JWT_ALGORITHM").unwrap_or_else(|| "HS256".into());
        if !matches!(algorithm.as_str(), "HS256" | "RS256" | "ES256") {
            return Err(ConfigError::new(
                "JWT_ALGORITHM",
                format!("must be HS256, RS256 or ES256, got {algorithm:?}"),
            ));
        }
        let key = match env.optional("JWT_JWKS_URL") {
            Some(_) if algorithm == "HS256" => {
                return Err(ConfigError::new("JWT_JWKS_URL", "needs JWT_ALGORITHM RS256 or ES256"));
            }
            Some(url) => JwtKey::Jwks {
                url,
                es256: algorithm == "ES256",
                min_refresh: Duration::from_millis(env.number_or("JWT_JWKS_MIN_REFRESH_MS", 60_000, 0)?),
                timeout: env.millis_or("JWT_JWKS_TIMEOUT_MS", 2000)?,
            },
            None => key_from_env(env, &algorithm, "JWT_SECRET", "JWT_PUBLIC_KEY")?.ok_or_else(|| {
                let variable = if algorithm == "HS256" {
                    "JWT_SECRET"
                } else {
                    "JWT_PUBLIC_KEY"
                };
                ConfigError::new(variable, "is required but not set")
            })?,
        };
        Ok(Self {
            key,
            previous: key_from_env(env, &algorithm, "JWT_PREVIOUS_SECRET", "JWT_PREVIOUS_PUBLIC_KEY")?,
            issuer: env.optional("JWT_ISSUER"),
            audience: env
                .optional("JWT_AUDIENCE")
                .map(|a| a.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            leeway_seconds: env.number_or("JWT_LEEWAY_SECONDS", 30, 0)?,
        })
    }
}

/// The key of `algorithm` from `secret_var` (HS256) or `pem_var` (RS256/ES256), if set.
fn key_from_env(env: &Env, algorithm: &str, secret_var: &str, pem_var: &str) -> Result<Option<JwtKey>, ConfigError> {
    if algorithm == "HS256" {
        let Some(secret) = env.optional(secret_var) else {
            return Ok(None);
        };
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::new(
                env.origin(secret_var),
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        if secret == LOCAL_DEV_SECRET && env.is_deployed() {
            let stage = env.optional("STAGE").unwrap_or_else(|| "Lambda".into());
            return Err(ConfigError::new(
                env.origin(secret_var),
                format!("the public local development secret must not be used in a deployed stage ({stage})"),
            ));
        }
        return Ok(Some(JwtKey::Hs256 { secret }));
    }
    let Some(raw) = env.optional(pem_var) else {
        return Ok(None);
    };
    // Environment variables often carry PEM with literal "\n" sequences.
    let public_key_pem = raw.replace("\\n", "\n");
    if !public_key_pem.contains("-----BEGIN") {
        return Err(ConfigError::new(env.origin(pem_var), "must be a PEM public key"));
    }
    Ok(Some(if algorithm == "RS256" {
        JwtKey::Rs256 { public_key_pem }
    } else {
        JwtKey::Es256 { public_key_pem }
    }))
}

/// An organization's default ceiling per window: a team of fifty at its busiest (see
/// docs/security.md) with room to spare, and a bound on one organization's writes (200/s).
pub const DEFAULT_ORG_MAX_REQUESTS: u64 = 12_000;
/// A developer's default budget per window: ten requests a second, twice the busiest agentic
/// session with parallel sub-agents.
pub const DEFAULT_USER_MAX_REQUESTS: u64 = 600;

/// What the service does when the rate-limit store (DynamoDB) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Admit the request (metrics are not lost; the limit is not enforced meanwhile).
    Allow,
    /// Refuse with 503 and `retry_after`.
    Deny,
}

impl FromStr for OnStoreError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            _ => Err("expected \"allow\" or \"deny\"".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub dynamodb: DynamoDbConfig,
    /// The organization's ceiling and each developer's budget, unless an override says otherwise.
    pub defaults: Budgets,
    pub table_name: String,
    pub on_store_error: OnStoreError,
    /// Budget for one call to the store; past it, `on_store_error` decides.
    pub store_timeout: Duration,
}

/// Where DynamoDB answers, for the direct client (`adapters::dynamodb::client`); the SDK finds
/// the same variables itself. Unset: the region's public endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamoDbConfig {
    /// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
}

impl DynamoDbConfig {
    pub fn from_env(env: &Env) -> Self {
        Self {
            endpoint: env
                .optional("AWS_ENDPOINT_URL_DYNAMODB")
                .or_else(|| env.optional("AWS_ENDPOINT_URL")),
        }
    }
}

impl RateLimitConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // The arithmetic behind these defaults is in docs/security.md ("Rate limiting").
        let organization = Limits {
            max_requests: env.number_or("RATE_LIMIT_MAX_REQUESTS", DEFAULT_ORG_MAX_REQUESTS, 1)?,
            window_ms: env.number_or("RATE_LIMIT_WINDOW_MS", 60_000, 1)?,
            burst_allowance: env.number_or("RATE_LIMIT_BURST_ALLOWANCE", 0, 0)?,
        };
        organization
            .check()
            .map_err(|problem| ConfigError::new("RATE_LIMIT_MAX_REQUESTS", problem))?;
        let user = Limits {
            max_requests: env.number_or("RATE_LIMIT_USER_MAX_REQUESTS", DEFAULT_USER_MAX_REQUESTS, 1)?,
            window_ms: organization.window_ms,
            burst_allowance: env.number_or("RATE_LIMIT_USER_BURST_ALLOWANCE", 0, 0)?,
        };
        user.check()
            .map_err(|problem| ConfigError::new("RATE_LIMIT_USER_MAX_REQUESTS", problem))?;
        let defaults = Budgets { organization, user };
        Ok(Self {
            dynamodb: DynamoDbConfig::from_env(env),
            defaults,
            table_name: env.required("RATE_LIMIT_TABLE_NAME")?,
            on_store_error: env.parse_or("RATE_LIMIT_ON_STORE_ERROR", OnStoreError::Allow)?,
            store_timeout: env.millis_or("RATE_LIMIT_TIMEOUT_MS", 1000)?,
        })
    }
}

/// The SQS queue that carries batches to the worker.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub url: String,
}

impl QueueConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.required("BATCH_QUEUE_URL")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new("BATCH_QUEUE_URL", "must be the queue's URL"));
        }
        Ok(Self { url })
    }
}

/// The batch endpoint's settings.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most metrics in one batch request (`COLLECTION_BATCH_SIZE`; organizations may override).
    pub batch_size: usize,
    /// Budget for queueing one batch (`COLLECTION_TIMEOUT_MS`).
    pub queue_timeout: Duration,
}

impl BatchConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let batch_size = env.number_or("COLLECTION_BATCH_SIZE", crate::domain::batch::DEFAULT_BATCH_SIZE, 1)?;
        if batch_size as usize > crate::domain::batch::MAX_ENVELOPE_METRICS {
            return Err(ConfigError::new(
                "COLLECTION_BATCH_SIZE",
                format!("must be at most {}", crate::domain::batch::MAX_ENVELOPE_METRICS),
            ));
        }
        Ok(Self {
            batch_size: batch_size as usize,
            queue_timeout: env.millis_or("COLLECTION_TIMEOUT_MS", 5000)?,
        })
    }
}

/// How long a session may stay silent before the reaper marks it abandoned.
pub fn session_idle_timeout(env: &Env) -> Result<Duration, ConfigError> {
    env.millis_or("SESSION_IDLE_TIMEOUT_MS", 3_600_000)
}

/// Limits applied to every request body before it is parsed.
#[derive(Debug, Clone)]
pub struct RequestConfig {
    pub max_body_bytes: usize,
    /// Claude Code hook bodies carry tool outputs (whole files); they are truncated before storage.
    pub max_hook_body_bytes: usize,
    /// An OTLP export, after decompression.
    pub max_otlp_body_bytes: usize,
}

/// The largest OTLP export accepted by default, after decompression: a minute of one
/// developer's metrics is a few KiB, and a body of the smallest possible records decodes to
/// about a hundred times its size, which must stay well inside a function's memory.
pub const DEFAULT_MAX_OTLP_BODY_BYTES: u64 = 1024 * 1024;

/// The largest hook body accepted by default: under Lambda's 6 MB invocation payload once
/// API Gateway has wrapped it.
pub const DEFAULT_MAX_HOOK_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// The largest body accepted by default: one SQS message, which also bounds a batch.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

impl RequestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_body_bytes: env.number_or("COLLECTION_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1)? as usize,
            max_hook_body_bytes: env.number_or("HOOK_MAX_BODY_BYTES", DEFAULT_MAX_HOOK_BODY_BYTES, 1)? as usize,
            max_otlp_body_bytes: env.number_or("OTLP_MAX_BODY_BYTES", DEFAULT_MAX_OTLP_BODY_BYTES, 1)? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_fit_a_team_of_fifty() {
        let env = env(&[("RATE_LIMIT_TABLE_NAME", "limits")]);
        let config = RateLimitConfig::from_env(&env).unwrap();
        assert_eq!(config.defaults.organization.max_requests, 12_000);
        assert_eq!(config.defaults.organization.window_ms, 60_000);
        assert_eq!(config.defaults.user.max_requests, 600);
        assert_eq!(config.defaults.user.window_ms, 60_000);
        assert_eq!(config.on_store_error, OnStoreError::Allow);
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let env = env(&[("RATE_LIMIT_TABLE_NAME", "t"), ("RATE_LIMIT_MAX_REQUESTS", "lots")]);
        let err = RateLimitConfig::from_env(&env).unwrap_err();
        assert_eq!(err.variable, "RATE_LIMIT_MAX_REQUESTS");
        assert!(err.to_string().contains("RATE_LIMIT_MAX_REQUESTS"));
    }

    #[test]
    fn zero_requests_is_refused() {
        let env = env(&[("RATE_LIMIT_TABLE_NAME", "t"), ("RATE_LIMIT_MAX_REQUESTS", "0")]);
        assert_eq!(
            RateLimitConfig::from_env(&env).unwrap_err().variable,
            "RATE_LIMIT_MAX_REQUESTS"
        );
    }

    #[test]
    fn missing_database_url_is_named() {
        let err = DatabaseConfig::from_env(&env(&[])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn database_parts_build_a_connection_requiring_tls() {
        let config = DatabaseConfig::from_env(&env(&[
            ("DATABASE_HOST", "db.example.internal"),
            ("DATABASE_NAME", "metrics"),
            ("DATABASE_USER", "svc"),
            ("DATABASE_PASSWORD", "p@ss/word:with#chars"),
        ]))
        .unwrap();
        assert_eq!(config.connection.get_dbname(), Some("metrics"));
        assert_eq!(
            config.connection.get_password(),
            Some("p@ss/word:with#chars".as_bytes())
        );
        assert_eq!(
            config.connection.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert!(!format!("{config:?}").contains("p@ss"), "the password is not printed");
        let err = DatabaseConfig::from_env(&env(&[("DATABASE_HOST", "h"), ("DATABASE_NAME", "m")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_USER");
    }

    #[test]
    fn ssl_mode_and_ca_certificates_are_checked() {
        let base = [("DATABASE_URL", "postgres://u@h/db")];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            DatabaseConfig::from_env(&env(&pairs))
        };
        assert_eq!(
            with(("DATABASE_SSL_MODE", "verify-maybe")).unwrap_err().variable,
            "DATABASE_SSL_MODE"
        );
        assert_eq!(
            with(("DATABASE_CA_CERT", "not pem")).unwrap_err().variable,
            "DATABASE_CA_CERT"
        );
        assert_eq!(
            with(("DATABASE_SSL_MODE", "disable"))
                .unwrap()
                .connection
                .get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn malformed_database_url_is_named() {
        let err = DatabaseConfig::from_env(&env(&[("DATABASE_URL", "postgres://a:b@h:notaport/x")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn short_jwt_secret_is_refused() {
        let err = AuthConfig::from_env(&env(&[("JWT_SECRET", "short")])).unwrap_err();
        assert_eq!(err.variable, "JWT_SECRET");
    }

    #[test]
    fn the_public_dev_secret_is_refused_by_every_deployed_stage() {
        for stage in ["dev", "staging", "prod", "anything-else"] {
            let err = AuthConfig::from_env(&env(&[("JWT_SECRET", LOCAL_DEV_SECRET), ("STAGE", stage)])).unwrap_err();
            assert_eq!(err.variable, "JWT_SECRET", "{stage}");
            assert!(err.problem.contains(stage), "{err}");
        }
        // Inside Lambda without STAGE: deployed all the same.
        let in_lambda = [
            ("JWT_SECRET", LOCAL_DEV_SECRET),
            ("AWS_LAMBDA_FUNCTION_NAME", "metrics-dev-command-execution"),
        ];
        assert_eq!(
            AuthConfig::from_env(&env(&in_lambda)).unwrap_err().variable,
            "JWT_SECRET"
        );
        // The previous key of a rotation is held to the same rule.
        let previous = [
            ("JWT_SECRET", "a-real-secret-0123456789"),
            ("JWT_PREVIOUS_SECRET", LOCAL_DEV_SECRET),
            ("STAGE", "dev"),
        ];
        assert_eq!(
            AuthConfig::from_env(&env(&previous)).unwrap_err().variable,
            "JWT_PREVIOUS_SECRET"
        );
        // Local runs (`make dev`, the local front, the tests) keep it: no STAGE, or STAGE=local.
        assert!(AuthConfig::from_env(&env(&[("JWT_SECRET", LOCAL_DEV_SECRET)])).is_ok());
        assert!(AuthConfig::from_env(&env(&[("JWT_SECRET", LOCAL_DEV_SECRET), ("STAGE", LOCAL_STAGE)])).is_ok());
        assert!(
            AuthConfig::from_env(&env(&[
                ("JWT_SECRET", LOCAL_DEV_SECRET),
                ("STAGE", LOCAL_STAGE),
                ("AWS_LAMBDA_FUNCTION_NAME", "stand-in")
            ]))
            .is_ok()
        );
        // A real secret is fine everywhere.
        assert!(AuthConfig::from_env(&env(&[("JWT_SECRET", "a-real-secret-0123456789"), ("STAGE", "prod")])).is_ok());
    }

    #[test]
    fn a_previous_key_is_read_for_rotations() {
        let config = AuthConfig::from_env(&env(&[
            ("JWT_SECRET", "new-secret-0123456789"),
            ("JWT_PREVIOUS_SECRET", "old-secret-0123456789"),
        ]))
        .unwrap();
        assert!(matches!(config.previous, Some(JwtKey::Hs256 { .. })));
        let err = AuthConfig::from_env(&env(&[
            ("JWT_SECRET", "new-secret-0123456789"),
            ("JWT_PREVIOUS_SECRET", "short"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "JWT_PREVIOUS_SECRET");
    }

    #[test]
    fn unknown_algorithm_is_refused() {
        let err = AuthConfig::from_env(&env(&[("JWT_ALGORITHM", "none")])).unwrap_err();
        assert_eq!(err.variable, "JWT_ALGORITHM");
    }

    #[test]
    fn rs256_needs_a_pem_key() {
        let err = AuthConfig::from_env(&env(&[("JWT_ALGORITHM", "RS256")])).unwrap_err();
        assert_eq!(err.variable, "JWT_PUBLIC_KEY");
    }

    #[test]
    fn unknown_failure_mode_is_refused() {
        let env = env(&[("RATE_LIMIT_TABLE_NAME", "t"), ("RATE_LIMIT_ON_STORE_ERROR", "maybe")]);
        assert_eq!(
            RateLimitConfig::from_env(&env).unwrap_err().variable,
            "RATE_LIMIT_ON_STORE_ERROR"
        );
    }

    #[test]
    fn key_material_is_not_printed() {
        let key = JwtKey::Hs256 {
            secret: "super-secret-value-123".into(),
        };
        assert!(!format!("{key:?}").contains("super-secret"));
    }
}
