//! The one TLS client configuration of the service (PostgreSQL and the direct AWS clients):
//! rustls on aws-lc-rs, trusting the compiled-in public roots (no certificate files read at
//! start-up) plus any extra PEM certificates given.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::ConfigError;

/// `extra` are PEM certificates from the setting `variable` (named in errors).
pub fn client_config(extra: Option<&str>, variable: &str) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra
        .map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()))
        .into_iter()
        .flatten()
    {
        let certificate =
            certificate.map_err(|e| ConfigError::new(variable, format!("unreadable certificate: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| ConfigError::new(variable, format!("unusable certificate: {e}")))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(variable, format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTP/1.1 client for `http://` and `https://` (the TLS above), pooling kept-alive connections.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<hyper::body::Bytes>,
>;

pub fn http_client(variable: &str) -> Result<HttpClient, ConfigError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(None, variable)?)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector),
    )
}
