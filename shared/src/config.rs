//! Typed configuration, read once from the environment when a container starts.
//!
//! Every value has a variable name (the specification's where it has one), a default where one
//! is safe, and a check; a bad value fails the start with a message naming the variable.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::ratelimit::Limits;

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

/// Where configuration values come from: the process environment, or a map in tests.
pub struct Env {
    values: HashMap<String, String>,
}

impl Env {
    pub fn process() -> Self {
        Self {
            values: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
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

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: usize,
    /// Budget for getting a connection and for each statement.
    pub timeout: Duration,
}

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.required("DATABASE_URL")?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::new("DATABASE_URL", format!("not a PostgreSQL URL: {e}")))?;
        Ok(Self {
            url,
            max_connections: env.number_or("DATABASE_MAX_CONNECTIONS", 20, 1)? as usize,
            timeout: env.millis_or("DATABASE_TIMEOUT_MS", 5000)?,
        })
    }
}

/// The one signing algorithm a deployment accepts, with its verification key.
#[derive(Clone)]
pub enum JwtKey {
    Hs256 { secret: String },
    Rs256 { public_key_pem: String },
    Es256 { public_key_pem: String },
}

impl std::fmt::Debug for JwtKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Hs256 { .. } => f.write_str("Hs256(<secret>)"),
            JwtKey::Rs256 { .. } => f.write_str("Rs256(<public key>)"),
            JwtKey::Es256 { .. } => f.write_str("Es256(<public key>)"),
        }
    }
}

pub const MIN_JWT_SECRET_BYTES: usize = 16;
/// The local stack's default secret; the `events/` fixtures are signed with it, so it is public.
pub const LOCAL_DEV_SECRET: &str = "local-dev-secret";

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway_seconds: u64,
}

impl AuthConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let algorithm = env.optional("JWT_ALGORITHM").unwrap_or_else(|| "HS256".into());
        let key = match algorithm.as_str() {
            "HS256" => {
                let secret = env.required("JWT_SECRET")?;
                if secret.len() < MIN_JWT_SECRET_BYTES {
                    return Err(ConfigError::new(
                        "JWT_SECRET",
                        format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                    ));
                }
                let stage = env.optional("STAGE").unwrap_or_default();
                if secret == LOCAL_DEV_SECRET && matches!(stage.as_str(), "staging" | "prod") {
                    return Err(ConfigError::new(
                        "JWT_SECRET",
                        format!("the public local development secret must not be used in {stage}"),
                    ));
                }
                JwtKey::Hs256 { secret }
            }
            "RS256" => JwtKey::Rs256 {
                public_key_pem: pem_from_env(env)?,
            },
            "ES256" => JwtKey::Es256 {
                public_key_pem: pem_from_env(env)?,
            },
            other => {
                return Err(ConfigError::new(
                    "JWT_ALGORITHM",
                    format!("must be HS256, RS256 or ES256, got {other:?}"),
                ));
            }
        };
        Ok(Self {
            key,
            issuer: env.optional("JWT_ISSUER"),
            audience: env
                .optional("JWT_AUDIENCE")
                .map(|a| a.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            leeway_seconds: env.number_or("JWT_LEEWAY_SECONDS", 30, 0)?,
        })
    }
}

fn pem_from_env(env: &Env) -> Result<String, ConfigError> {
    // Environment variables often carry PEM with literal "\n" sequences.
    let pem = env.required("JWT_PUBLIC_KEY")?.replace("\\n", "\n");
    if !pem.contains("-----BEGIN") {
        return Err(ConfigError::new("JWT_PUBLIC_KEY", "must be a PEM public key"));
    }
    Ok(pem)
}

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
    pub defaults: Limits,
    pub table_name: String,
    pub on_store_error: OnStoreError,
    /// How long a container keeps an organization's override before reading it again.
    pub override_ttl: Duration,
    /// Budget for one call to the store; past it, `on_store_error` decides.
    pub store_timeout: Duration,
}

impl RateLimitConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Limits {
            max_requests: env.number_or("RATE_LIMIT_MAX_REQUESTS", 1000, 1)?,
            window_ms: env.number_or("RATE_LIMIT_WINDOW_MS", 60_000, 1)?,
            burst_allowance: env.number_or("RATE_LIMIT_BURST_ALLOWANCE", 0, 0)?,
        };
        defaults
            .check()
            .map_err(|problem| ConfigError::new("RATE_LIMIT_MAX_REQUESTS", problem))?;
        Ok(Self {
            defaults,
            table_name: env.required("RATE_LIMIT_TABLE_NAME")?,
            on_store_error: env.parse_or("RATE_LIMIT_ON_STORE_ERROR", OnStoreError::Allow)?,
            override_ttl: Duration::from_millis(env.number_or("RATE_LIMIT_OVERRIDE_TTL_MS", 60_000, 0)?),
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
        let batch_size = env.number_or("COLLECTION_BATCH_SIZE", crate::batch::DEFAULT_BATCH_SIZE, 1)?;
        if batch_size as usize > crate::batch::MAX_ENVELOPE_METRICS {
            return Err(ConfigError::new(
                "COLLECTION_BATCH_SIZE",
                format!("must be at most {}", crate::batch::MAX_ENVELOPE_METRICS),
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
}

/// The largest body accepted by default: one SQS message, which also bounds a batch.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

impl RequestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_body_bytes: env.number_or("COLLECTION_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1)? as usize,
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
    fn defaults_follow_the_specification() {
        let env = env(&[("RATE_LIMIT_TABLE_NAME", "limits")]);
        let config = RateLimitConfig::from_env(&env).unwrap();
        assert_eq!(config.defaults.max_requests, 1000);
        assert_eq!(config.defaults.window_ms, 60_000);
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
    fn the_public_dev_secret_is_refused_in_staging_and_prod() {
        for stage in ["staging", "prod"] {
            let err = AuthConfig::from_env(&env(&[("JWT_SECRET", LOCAL_DEV_SECRET), ("STAGE", stage)])).unwrap_err();
            assert_eq!(err.variable, "JWT_SECRET");
        }
        assert!(AuthConfig::from_env(&env(&[("JWT_SECRET", LOCAL_DEV_SECRET), ("STAGE", "dev")])).is_ok());
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
