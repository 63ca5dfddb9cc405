//! SigV4 signing of the service's direct AWS calls (the rate limiter's DynamoDB calls, API
//! Gateway's management API), with the SDK's own signer, region and credentials. Those calls are
//! small and frequent, and a full SDK client costs CPU per call and memory per binary.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::config::ConfigError;
use crate::lock;

/// Credentials are refreshed this long before they expire.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);

pub struct Signer {
    region: String,
    credentials: SharedCredentialsProvider,
    cached: Mutex<Option<(Credentials, Option<SystemTime>)>>,
}

impl Signer {
    /// Region and credentials as the SDK finds them (`AWS_REGION`, the default credential chain).
    pub fn new(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| ConfigError::new("AWS_REGION", "is required but not set"))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| ConfigError::new("AWS_ACCESS_KEY_ID", "no AWS credentials are configured"))?;
        Ok(Self {
            region,
            credentials,
            cached: Mutex::new(None),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The current credentials, cached until shortly before they expire.
    pub async fn credentials(&self) -> Result<Credentials, String> {
        if let Some((credentials, expiry)) = lock(&self.cached).as_ref()
            && expiry.is_none_or(|at| at > SystemTime::now() + CREDENTIAL_MARGIN)
        {
            return Ok(credentials.clone());
        }
        let fresh = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("credentials: {e}"))?;
        *lock(&self.cached) = Some((fresh.clone(), fresh.expiry()));
        Ok(fresh)
    }

    /// Adds the SigV4 headers for `service` in this region to `request` (whose headers must
    /// already include `host`), signing `payload` as its body.
    pub fn sign(
        &self,
        request: &mut http::Request<()>,
        payload: &[u8],
        service: &str,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<(), String> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let uri = request.uri().to_string();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers.into_iter(),
            SignableBody::Bytes(payload),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// The public endpoint of an AWS `service` in a region (`https://{service}.{region}.amazonaws.com`,
/// or `.com.cn` in the China partition).
pub fn public_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

/// A `POST` of AWS's JSON protocol (`application/x-amz-json-{version}`, the operation in
/// `x-amz-target`) to `endpoint`, signed with SigV4 for `service`.
pub fn signed_json_post(
    signer: &Signer,
    (endpoint, host): (&http::Uri, &str),
    (service, json_version, target): (&str, &str, &str),
    payload: Vec<u8>,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<http::Request<http_body_util::Full<hyper::body::Bytes>>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("signing {target}: {e}");
    let mut request = http::Request::post(endpoint.clone())
        .header(http::header::HOST, host)
        .header(
            http::header::CONTENT_TYPE,
            format!("application/x-amz-json-{json_version}"),
        )
        .header("x-amz-target", target)
        .body(())
        .map_err(|e| failed(&e))?;
    signer
        .sign(&mut request, &payload, service, credentials, time)
        .map_err(|e| failed(&e))?;
    let (parts, ()) = request.into_parts();
    Ok(http::Request::from_parts(
        parts,
        http_body_util::Full::new(hyper::body::Bytes::from(payload)),
    ))
}

/// `url` parsed, and the `host` header its requests carry; errors name `variable`.
pub fn endpoint(url: &str, variable: &str) -> Result<(http::Uri, String), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ConfigError::new(variable, format!("not a URL: {e}")))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| ConfigError::new(variable, "has no host"))?;
    Ok((uri, host))
}

/// The answer of an AWS JSON-protocol call: its status and its document (`null` when empty).
pub struct JsonAnswer {
    pub status: http::StatusCode,
    pub document: serde_json::Value,
}

impl JsonAnswer {
    /// An error answer's `__type` (e.g. `…#ThrottlingException`).
    pub fn error_type(&self) -> &str {
        self.document["__type"].as_str().unwrap_or_default()
    }

    /// `"{operation}: {status} {type} {message}"`, for the logs.
    pub fn error_detail(&self, operation: &str) -> String {
        let message = self.document["message"]
            .as_str()
            .or_else(|| self.document["Message"].as_str())
            .unwrap_or_default();
        format!("{operation}: {} {} {message}", self.status, self.error_type())
            .trim_end()
            .to_owned()
    }
}

/// Sends a signed JSON-protocol request and reads its answer; an answer that is not JSON is an
/// error naming `operation`.
pub async fn send_json(
    client: &crate::adapters::tls::HttpClient,
    request: http::Request<http_body_util::Full<hyper::body::Bytes>>,
    operation: &str,
) -> Result<JsonAnswer, String> {
    use http_body_util::BodyExt;
    let response = client.request(request).await.map_err(|e| format!("{operation}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{operation}: {e}"))?
        .to_bytes();
    let document = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| format!("{operation}: unreadable answer ({status}): {e}"))?
    };
    Ok(JsonAnswer { status, document })
}
