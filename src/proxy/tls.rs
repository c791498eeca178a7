//! TLS for the downstream listener, with rustls: TLS 1.2 as the minimum
//! (1.3 when configured) and ALPN for HTTP/2.

use std::io::BufReader;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::proxy::config::TlsConfig;

/// Builds the acceptor, or returns an error naming the file that is wrong
/// and why.
pub fn acceptor(config: &TlsConfig, http2: bool) -> Result<TlsAcceptor, String> {
    let certificates = read_certificates(config)?;
    let key = read_key(config)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = if config.min_version_13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions rejected: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| {
            format!(
                "{} and {} do not form a usable certificate and key: {e}",
                config.certificate.display(),
                config.key.display()
            )
        })?;
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certificates(config: &TlsConfig) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = std::fs::File::open(&config.certificate)
        .map_err(|e| format!("cannot open {}: {e}", config.certificate.display()))?;
    let certificates: Result<Vec<_>, _> =
        rustls_pemfile::certs(&mut BufReader::new(file)).collect();
    let certificates = certificates
        .map_err(|e| format!("invalid PEM in {}: {e}", config.certificate.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{} contains no CERTIFICATE block",
            config.certificate.display()
        ));
    }
    Ok(certificates)
}

fn read_key(config: &TlsConfig) -> Result<PrivateKeyDer<'static>, String> {
    let file = std::fs::File::open(&config.key)
        .map_err(|e| format!("cannot open {}: {e}", config.key.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("invalid PEM in {}: {e}", config.key.display()))?
        .ok_or_else(|| format!("{} contains no private key block", config.key.display()))
}
