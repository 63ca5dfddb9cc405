//! Webhook delivery: signed JSON posted to an organization's URL, with the SSRF policy applied
//! at send time.
//!
//! Each attempt parses the URL under the stage's [`WebhookPolicy`], resolves its host, refuses
//! the send if ANY address is internal (private, loopback, link-local, unique-local, CGNAT,
//! multicast, unspecified, metadata), and connects only to the addresses it checked: the
//! connector's resolver is pinned to them, so a second DNS answer (rebinding) is never asked
//! for. No proxy is used, redirects are not followed (a 3xx is a failure), and each attempt is
//! bounded by a timeout. 5xx, 408, 429, timeouts and connection errors are retried with
//! exponential backoff, up to `WEBHOOK_ATTEMPTS`; other answers fail at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

use crate::config::{ConfigError, Env};
use crate::domain::webhook::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookHost, WebhookPolicy, WebhookUrl, address_refusal, signature_header,
};
use crate::ports::alerts::{DeliveryError, WebhookSender};

/// How webhooks are sent, from the environment:
/// `WEBHOOK_ALLOW_LOOPBACK` (`false`; `true` only on the local stack, refused in deployed
/// stages), `WEBHOOK_ATTEMPTS` (3), `WEBHOOK_TIMEOUT_MS` (5000, per attempt),
/// `WEBHOOK_BACKOFF_MS` (500, doubled after each failed attempt).
#[derive(Debug, Clone, Copy)]
pub struct WebhookConfig {
    pub policy: WebhookPolicy,
    pub attempts: u32,
    pub timeout: Duration,
    pub backoff: Duration,
}

impl WebhookConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allow_loopback: bool = env.parse_or("WEBHOOK_ALLOW_LOOPBACK", false)?;
        if allow_loopback && env.is_deployed() {
            return Err(ConfigError::new(
                "WEBHOOK_ALLOW_LOOPBACK",
                "is for the local stack only; deployed stages send to public https URLs",
            ));
        }
        let attempts = env.number_or("WEBHOOK_ATTEMPTS", 3, 1)?;
        if attempts > 10 {
            return Err(ConfigError::new("WEBHOOK_ATTEMPTS", "must be at most 10"));
        }
        Ok(Self {
            policy: WebhookPolicy { allow_loopback },
            attempts: attempts as u32,
            timeout: env.millis_or("WEBHOOK_TIMEOUT_MS", 5000)?,
            backoff: env.millis_or("WEBHOOK_BACKOFF_MS", 500)?,
        })
    }
}

/// Name resolution (the system's resolver, or a fixed table in tests).
#[async_trait]
pub trait Dns: Send + Sync {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo` on a blocking thread).
pub struct SystemDns;

#[async_trait]
impl Dns for SystemDns {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The connector's resolver: answers every name with the addresses already checked.
#[derive(Clone)]
struct Pinned(Arc<[SocketAddr]>);

impl tower_service::Service<Name> for Pinned {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[allow(clippy::unnecessary_to_owned, reason = "the connector needs an owned iterator")]
    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(self.0.to_vec().into_iter()))
    }
}

/// Webhooks over HTTP(S) with the checks above.
pub struct HttpWebhooks {
    config: WebhookConfig,
    dns: Arc<dyn Dns>,
    tls: rustls::ClientConfig,
}

/// One attempt's failure: whether another attempt may help, and what happened.
struct AttemptError {
    retry: bool,
    detail: String,
}

impl HttpWebhooks {
    pub fn new(config: WebhookConfig, dns: Arc<dyn Dns>) -> Result<Self, ConfigError> {
        Ok(Self {
            config,
            dns,
            tls: crate::adapters::tls::client_config(None, "WEBHOOK_ALLOW_LOOPBACK")?,
        })
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::new(WebhookConfig::from_env(env)?, Arc::new(SystemDns))
    }

    /// The send-time check: the URL under the policy, and the addresses its host resolves to,
    /// every one of them allowed. A resolution failure is [`DeliveryError::Failed`] (worth retrying).
    pub async fn check(&self, raw: &str) -> Result<(WebhookUrl, Vec<SocketAddr>), DeliveryError> {
        let policy = self.config.policy;
        let url = WebhookUrl::parse(raw, policy).map_err(DeliveryError::Refused)?;
        let addrs = match url.host() {
            WebhookHost::Ip(ip) => vec![SocketAddr::new(*ip, url.port())],
            WebhookHost::Domain(name) => {
                self.dns
                    .lookup(name, url.port())
                    .await
                    .map_err(|e| DeliveryError::Failed {
                        attempts: 0,
                        last: format!("cannot resolve {name}: {e}"),
                    })?
            }
        };
        if addrs.is_empty() {
            return Err(DeliveryError::Failed {
                attempts: 0,
                last: format!("{url} resolves to no address"),
            });
        }
        for addr in &addrs {
            if let Some(why) = address_refusal(addr.ip(), policy) {
                return Err(DeliveryError::Refused(format!(
                    "{url} resolves to {} ({why})",
                    addr.ip()
                )));
            }
        }
        Ok((url, addrs))
    }

    async fn attempt(
        &self,
        url: &WebhookUrl,
        addrs: Vec<SocketAddr>,
        secret: &str,
        body: &[u8],
    ) -> Result<(), AttemptError> {
        let mut http = HttpConnector::new_with_resolver(Pinned(addrs.into()));
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client: Client<_, Full<Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let timestamp = chrono::Utc::now().timestamp();
        let request = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "metrics-collection-alerts/1")
            .header(SIGNATURE_HEADER, signature_header(secret, timestamp, body))
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| AttemptError {
                retry: false,
                detail: format!("cannot build the request: {e}"),
            })?;
        let response = match tokio::time::timeout(self.config.timeout, client.request(request)).await {
            Err(_) => {
                return Err(AttemptError {
                    retry: true,
                    detail: format!("no answer within {:?}", self.config.timeout),
                });
            }
            Ok(Err(err)) => {
                return Err(AttemptError {
                    retry: true,
                    detail: format!(
                        "{err}: {}",
                        std::error::Error::source(&err)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(AttemptError {
            retry: status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429,
            detail: if status.is_redirection() {
                format!("answered {status}; redirects are not followed")
            } else {
                format!("answered {status}")
            },
        })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhooks {
    async fn send(&self, url: &str, secret: &str, body: &[u8]) -> Result<u32, DeliveryError> {
        let mut last = String::new();
        for attempt in 1..=self.config.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.backoff * 2u32.pow(attempt - 2)).await;
            }
            let (checked, addrs) = match self.check(url).await {
                Ok(checked) => checked,
                Err(DeliveryError::Failed { last: detail, .. }) => {
                    last = detail;
                    continue;
                }
                Err(refused) => return Err(refused),
            };
            match self.attempt(&checked, addrs, secret, body).await {
                Ok(()) => return Ok(attempt),
                Err(AttemptError { retry, detail }) => {
                    tracing::warn!(webhook = %checked, attempt, error = detail, "webhook attempt failed");
                    last = detail;
                    if !retry {
                        return Err(DeliveryError::Failed {
                            attempts: attempt,
                            last,
                        });
                    }
                }
            }
        }
        Err(DeliveryError::Failed {
            attempts: self.config.attempts,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_for_the_local_stack_only() {
        let local = WebhookConfig::from_env(&Env::from_pairs([("WEBHOOK_ALLOW_LOOPBACK", "true")])).unwrap();
        assert!(local.policy.allow_loopback);
        let deployed = Env::from_pairs([("WEBHOOK_ALLOW_LOOPBACK", "true"), ("STAGE", "prod")]);
        assert_eq!(
            WebhookConfig::from_env(&deployed).unwrap_err().variable,
            "WEBHOOK_ALLOW_LOOPBACK"
        );
        let default = WebhookConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(default.policy, WebhookPolicy::DEPLOYED);
        assert_eq!((default.attempts, default.timeout), (3, Duration::from_secs(5)));
    }
}
