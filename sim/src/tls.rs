//! TLS material of the simulated server: a CA and a leaf certificate generated at start
//! with rcgen, or a certificate and key loaded from PEM files, turned into a rustls server
//! configuration. Also builds rustls client configurations for tests and the control
//! client. Every configuration uses the `ring` crypto provider explicitly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// Subject alternative names of the generated leaf when none are given.
pub const DEFAULT_SANS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// Failure to build or load TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to generate the {certificate} certificate")]
    Generate {
        certificate: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("invalid subjectAltName {0:?}: expected an IP address or a DNS name")]
    InvalidSan(String),
    #[error("failed to read PEM file {path}")]
    ReadPem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("PEM file {path} contains no certificate")]
    NoCertificate { path: PathBuf },
    #[error("invalid CA certificate PEM")]
    InvalidCaPem(#[source] rustls_pki_types::pem::Error),
    #[error("failed to build the rustls configuration")]
    Rustls(#[from] rustls::Error),
}

/// Names in the generated leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// IP addresses and DNS names for the subjectAltName extension. Empty means the leaf
    /// carries no subjectAltName extension at all.
    pub sans: Vec<String>,
    /// Subject common name; the first SAN, or `localhost`, when absent.
    pub common_name: Option<String>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec {
            sans: DEFAULT_SANS.iter().map(|name| (*name).to_owned()).collect(),
            common_name: None,
        }
    }
}

/// Certificate chain and key the HTTPS listener serves, plus the CA to trust when the
/// simulator generated them.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// PEM of the generated CA; `None` for certificates loaded from files.
    pub ca_pem: Option<String>,
}

/// Returns the `ring` crypto provider every configuration here uses.
#[must_use]
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Generates a CA and a leaf signed by it.
pub fn generate_identity(spec: &LeafSpec) -> Result<ServerIdentity, TlsError> {
    // rcgen accepts any ASCII text as a DNS name, so check each name the way a TLS
    // client parses a server name.
    if let Some(invalid) = spec
        .sans
        .iter()
        .find(|name| ServerName::try_from(name.as_str()).is_err())
    {
        return Err(TlsError::InvalidSan(invalid.clone()));
    }
    let generate_error = |certificate| {
        move |source| TlsError::Generate {
            certificate,
            source,
        }
    };

    let ca_key = KeyPair::generate().map_err(generate_error("CA"))?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sklm-sim test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(generate_error("CA"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(generate_error("leaf"))?;
    let mut leaf_params =
        CertificateParams::new(spec.sans.clone()).map_err(generate_error("leaf"))?;
    let common_name = spec
        .common_name
        .clone()
        .or_else(|| spec.sans.first().cloned())
        .unwrap_or_else(|| "localhost".to_owned());
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(generate_error("leaf"))?;

    // rcgen serializes key pairs as PKCS#8.
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok(ServerIdentity {
        chain: vec![leaf_cert.der().clone()],
        key,
        ca_pem: Some(ca_cert.pem()),
    })
}

/// Loads a certificate chain and a private key from PEM files.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<ServerIdentity, TlsError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::ReadPem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(read_error(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(cert_path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(read_error(key_path))?;
    Ok(ServerIdentity {
        chain,
        key,
        ca_pem: None,
    })
}

/// Builds the HTTPS server configuration, offering HTTP/1.1 only through ALPN.
pub fn server_config(identity: ServerIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Builds a client configuration that trusts only the CA certificates in `ca_pem` (none
/// when `None`, which suits plain-HTTP clients).
pub fn client_config(ca_pem: Option<&str>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.map_err(TlsError::InvalidCaPem)?)?;
        }
    }
    let config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_builds_configs() {
        let identity = generate_identity(&LeafSpec::default()).expect("generate");
        let ca_pem = identity.ca_pem.clone().expect("generated CA");
        assert!(
            ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{ca_pem}"
        );
        assert_eq!(identity.chain.len(), 1);
        server_config(identity).expect("server config");
        client_config(Some(&ca_pem)).expect("client config");
    }

    #[test]
    fn leaf_without_sans_generates() {
        let spec = LeafSpec {
            sans: Vec::new(),
            common_name: Some("127.0.0.2".to_owned()),
        };
        let identity = generate_identity(&spec).expect("generate");
        server_config(identity).expect("server config");
    }

    #[test]
    fn invalid_dns_san_rejected() {
        let spec = LeafSpec {
            sans: vec!["not a name".to_owned()],
            common_name: None,
        };
        let error = generate_identity(&spec).expect_err("space is invalid in a DNS name");
        assert!(matches!(error, TlsError::InvalidSan(_)), "{error:?}");
    }

    #[test]
    fn load_identity_reads_pem_files() {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");

        let loaded = load_identity(&cert_path, &key_path).expect("load");
        assert_eq!(loaded.chain, vec![cert.der().clone()]);
        assert!(loaded.ca_pem.is_none());
        server_config(loaded).expect("server config");

        let missing = load_identity(&dir.path().join("absent.crt"), &key_path);
        assert!(
            matches!(missing, Err(TlsError::ReadPem { .. })),
            "{missing:?}"
        );

        let no_cert = load_identity(&key_path, &key_path);
        assert!(
            matches!(no_cert, Err(TlsError::NoCertificate { .. })),
            "{no_cert:?}"
        );
    }
}
