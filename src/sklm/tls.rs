//! TLS settings for the key server: the system roots plus an optional CA, or, only when a
//! user sets `insecureSkipTlsVerify`, no verification at all.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::SklmError;

/// How to verify the server's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM certificates trusted in addition to the system roots.
    pub extra_ca_pem: Option<String>,
    /// Accept any certificate. Only ever set from the spec field of that name.
    pub insecure_skip_verify: bool,
}

/// The ring provider, used by the Kubernetes client too; one provider keeps rustls from
/// having to pick.
#[must_use]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for these settings.
pub fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, SklmError> {
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SklmError::InvalidCa {
            detail: format!("no usable TLS protocol version: {e}"),
        })?;
    if settings.insecure_skip_verify {
        let verifier = Arc::new(AcceptAnyCertificate(crypto_provider()));
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth());
    }
    let mut roots = system_roots().clone();
    if let Some(pem) = &settings.extra_ca_pem {
        for certificate in parse_pem_certificates(pem)? {
            roots.add(certificate).map_err(|e| SklmError::InvalidCa {
                detail: e.to_string(),
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Parses PEM text into certificates; text without any certificate is an error.
pub fn parse_pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, SklmError> {
    let certificates = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SklmError::InvalidCa {
            detail: format!("PEM could not be read: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(SklmError::InvalidCa {
            detail: "no PEM CERTIFICATE block found".to_owned(),
        });
    }
    Ok(certificates)
}

/// The machine's trust store, read once. Unreadable entries are skipped.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "skipped an unreadable system root certificate");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
        roots
    })
}

/// Skips the certificate check but still checks handshake signatures, so the connection
/// is at least encrypted to whoever answered.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_certificate_is_rejected() {
        let error = parse_pem_certificates("not a certificate").expect_err("rejected");
        assert!(matches!(error, SklmError::InvalidCa { .. }));
    }

    #[test]
    fn insecure_config_builds_without_roots() {
        let settings = TlsSettings {
            extra_ca_pem: None,
            insecure_skip_verify: true,
        };
        assert!(client_config(&settings).is_ok());
    }
}
