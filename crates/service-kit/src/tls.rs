//! TLS settings shared by both services (issue 14 §3): the gRPC server's certificate and
//! key, and the roots a client (the channel to document-store, the OTLP exporter) trusts.
//! PEM files are read at start-up; a bad file stops the service with a clear error.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Makes aws-lc-rs the process's rustls provider, as sqlx, tonic and the AWS SDK use it.
/// Two providers are compiled in (reqwest brings ring), so rustls cannot choose one by
/// itself and tonic's TLS would panic. Idempotent; the services call it at start-up.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The gRPC server's TLS: both files or neither (plaintext). An empty path (an environment
/// variable set to "") means unset, here and in [`client_config`].
pub fn server_config(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> anyhow::Result<Option<ServerTlsConfig>> {
    install_crypto_provider();
    match (non_empty(cert_file), non_empty(key_file)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(cert, "TLS certificate")?;
            let key_pem = read_pem(key, "TLS key")?;
            Ok(Some(
                ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)),
            ))
        }
        _ => anyhow::bail!("TLS needs both a certificate file and a key file, or neither"),
    }
}

/// A client's TLS: the system's roots, plus `ca_file` (PEM) when given, e.g. a private CA.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<ClientTlsConfig> {
    install_crypto_provider();
    let config = ClientTlsConfig::new().with_native_roots();
    Ok(match non_empty(ca_file) {
        Some(path) => config.ca_certificate(Certificate::from_pem(read_pem(path, "CA bundle")?)),
        None => config,
    })
}

/// A path from an environment variable, `None` when unset or empty.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

fn non_empty(path: Option<&Path>) -> Option<&Path> {
    path.filter(|p| !p.as_os_str().is_empty())
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read the {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_server_identity_is_refused() {
        let error = server_config(Some(Path::new("/x.pem")), None).unwrap_err();
        assert!(error.to_string().contains("both"), "{error}");
        assert!(server_config(None, None).unwrap().is_none());
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/ca.pem"),
            "{error:#}"
        );
    }
}
