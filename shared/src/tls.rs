//! The one TLS client configuration of the service (PostgreSQL and the direct DynamoDB client):
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
