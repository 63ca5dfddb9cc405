//! `local-front webhook-receiver [--port 9099] [--secret whsec_…] [--status 200]`: a webhook
//! receiver on 127.0.0.1 for trying alerts. Prints each POST (path, signature headers, body)
//! and whether its signature verifies with the organization's secret, and answers `--status`.

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use shared::domain::webhook::{DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};

struct Options {
    port: u16,
    secret: Option<String>,
    status: u16,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        port: 9099,
        secret: None,
        status: 200,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => options.port = value.parse().map_err(|_| format!("--port {value:?} is not a port"))?,
            "--secret" => options.secret = Some(value.clone()),
            "--status" => {
                options.status = value
                    .parse()
                    .ok()
                    .filter(|s| (200..600).contains(s))
                    .ok_or_else(|| format!("--status {value:?} is not an HTTP status"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// What the receiver prints for one POST.
pub fn describe(
    secret: Option<&str>,
    path: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> String {
    let verdict = match (secret, signature) {
        (_, None) => format!("NOT SIGNED (no {SIGNATURE_HEADER} header)"),
        (None, Some(_)) => "signed (pass --secret whsec_… to verify it)".to_owned(),
        (Some(secret), Some(signature)) => {
            match verify(
                secret,
                signature,
                body,
                chrono::Utc::now().timestamp(),
                DEFAULT_TOLERANCE_SECONDS,
            ) {
                Ok(()) => "signature VERIFIED".to_owned(),
                Err(err) => format!("signature REFUSED: {err}"),
            }
        }
    };
    let shown = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| serde_json::to_string_pretty(&json).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    format!(
        "POST {path}\n  {SIGNATURE_HEADER}: {}\n  {TIMESTAMP_HEADER}: {}\n  {verdict}\n{shown}\n",
        signature.unwrap_or("-"),
        timestamp.unwrap_or("-")
    )
}

pub async fn run(args: &[String]) -> Result<(), String> {
    let Options { port, secret, status } = options(args)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    eprintln!("webhook receiver on http://127.0.0.1:{port}/ (answering {status})");
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let secret = secret.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let secret = secret.clone();
                async move {
                    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let (signature, timestamp) = (header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER));
                    let path = req.uri().path().to_owned();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    println!(
                        "{}",
                        describe(
                            secret.as_deref(),
                            &path,
                            signature.as_deref(),
                            timestamp.as_deref(),
                            &body
                        )
                    );
                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_says_whether_the_signature_verifies() {
        let body = br#"{"text":"hi"}"#;
        let now = chrono::Utc::now().timestamp();
        let signature = shared::domain::webhook::signature_header("whsec_x", now, body);
        let t = now.to_string();
        assert!(describe(Some("whsec_x"), "/h", Some(&signature), Some(&t), body).contains("VERIFIED"));
        assert!(describe(Some("whsec_y"), "/h", Some(&signature), Some(&t), body).contains("REFUSED"));
        assert!(describe(None, "/h", None, None, body).contains("NOT SIGNED"));
    }
}
