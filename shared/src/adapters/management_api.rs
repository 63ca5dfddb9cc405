//! API Gateway's management API: `PostToConnection` and `DeleteConnection` on a WebSocket
//! stage, signed with SigV4 (no SDK client: it would add about 1 MB to every writer).

use crate::adapters::signing::Signer;
use crate::adapters::tls::HttpClient;
use crate::config::ConfigError;
use crate::ports::live::{Delivery, Pusher};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::{Duration, SystemTime};

/// API Gateway's management API of one WebSocket stage: `PostToConnection` and
/// `DeleteConnection`, signed for `execute-api`.
pub struct ManagementApi {
    client: HttpClient,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, without a trailing `/`.
    endpoint: String,
    host: String,
    signer: Signer,
}

/// A push is never worth holding a container for.
const PUSH_TIMEOUT: Duration = Duration::from_millis(1500);

impl ManagementApi {
    /// `endpoint` is the stage's management endpoint (locally, the local front).
    pub fn new(aws: &SdkConfig, endpoint: &str) -> Result<Self, ConfigError> {
        let (_, host) = crate::adapters::signing::endpoint(endpoint, "LIVE_UPDATES_ENDPOINT")?;
        Ok(Self {
            client: crate::adapters::tls::http_client("LIVE_UPDATES_ENDPOINT")?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            host,
            signer: Signer::new(aws)?,
        })
    }

    /// The signed `POST /@connections/{id}` carrying `message`.
    pub fn signed_request(
        &self,
        connection_id: &str,
        message: &str,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        self.signed(http::Method::POST, connection_id, Some(message), credentials, time)
    }

    /// The signed `POST /@connections/{id}` carrying `message`, or with no message the signed
    /// `DELETE /@connections/{id}`.
    pub fn signed(
        &self,
        method: http::Method,
        connection_id: &str,
        message: Option<&str>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let uri = format!("{}/@connections/{}", self.endpoint, path_segment(connection_id));
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, &self.host);
        if message.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder.body(()).map_err(|e| e.to_string())?;
        let payload = message.unwrap_or_default().as_bytes();
        self.signer
            .sign(&mut request, payload, "execute-api", credentials, time)?;
        let (parts, ()) = request.into_parts();
        Ok(http::Request::from_parts(
            parts,
            Full::new(Bytes::copy_from_slice(payload)),
        ))
    }

    async fn send(&self, connection_id: &str, message: Option<&str>) -> Result<http::StatusCode, String> {
        let credentials = self.signer.credentials().await?;
        let method = if message.is_some() {
            http::Method::POST
        } else {
            http::Method::DELETE
        };
        let request = self.signed(method, connection_id, message, &credentials, SystemTime::now())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the (small) answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

impl ManagementApi {
    async fn call(&self, operation: &str, connection_id: &str, message: Option<&str>) -> Delivery {
        match tokio::time::timeout(PUSH_TIMEOUT, self.send(connection_id, message)).await {
            Ok(Ok(status)) if status.is_success() => Delivery::Delivered,
            Ok(Ok(http::StatusCode::GONE)) => Delivery::Gone,
            Ok(Ok(status)) => Delivery::Failed(format!("{operation} answered {status}")),
            Ok(Err(err)) => Delivery::Failed(format!("{operation}: {err}")),
            Err(_) => Delivery::Failed(format!("{operation}: no answer within {PUSH_TIMEOUT:?}")),
        }
    }
}

/// `id` percent-encoded as one path segment (connection ids end in `=`).
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl Pusher for ManagementApi {
    async fn post(&self, connection_id: &str, message: &str) -> Delivery {
        self.call("PostToConnection", connection_id, Some(message)).await
    }

    async fn close(&self, connection_id: &str) -> Delivery {
        self.call("DeleteConnection", connection_id, None).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use aws_config::SdkConfig;
    use aws_credential_types::Credentials;

    use super::*;

    #[test]
    fn pushes_are_signed_for_execute_api_on_the_connections_path() {
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let api = ManagementApi::new(&sdk, "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/").unwrap();
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_757_327_400);
        let request = api
            .signed_request("L0SM9cOFvHcCIhw=", "{}", &credentials, time)
            .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/@connections/L0SM9cOFvHcCIhw%3D"
        );
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250908/eu-west-1/execute-api/aws4_request"),
            "{authorization}"
        );
        assert_eq!(request.headers()["host"], "abc123.execute-api.eu-west-1.amazonaws.com");
        let close = api
            .signed(http::Method::DELETE, "L0SM9cOFvHcCIhw=", None, &credentials, time)
            .unwrap();
        assert_eq!(close.method(), http::Method::DELETE);
        assert!(
            close
                .uri()
                .to_string()
                .ends_with("/dev/@connections/L0SM9cOFvHcCIhw%3D")
        );
        assert!(
            close.headers()["authorization"]
                .to_str()
                .unwrap()
                .contains("/execute-api/aws4_request")
        );
    }
}
