//! TLS to relays (adr/0005): rustls with the **ring** crypto provider (the
//! core already depends on ring; aws-lc-rs would not fit the mobile size
//! budget), one [`rustls::ClientConfig`] shared by HTTP (reqwest) and the
//! WebSocket push channel.
//!
//! Which certificates are trusted is a [`RelayTrust`]:
//! - [`RelayTrust::Platform`] (the default): the platform's verifier
//!   (`rustls-platform-verifier`: the OS trust store and its revocation
//!   checks on iOS, macOS and Windows; the system roots on Linux). On
//!   Android that verifier needs the app's JNI context (an unsafe JNI
//!   export this workspace forbids), so Android uses Mozilla's root
//!   certificates compiled in (`webpki-roots`): public CAs work, a
//!   user-installed CA does not.
//! - [`RelayTrust::Pinned`]: only the given CA (or self-issued relay)
//!   certificates, for a relay with its own CA; the platform store is not
//!   consulted, so a certificate from any public CA is refused.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
#[cfg(not(target_os = "android"))]
use rustls_platform_verifier::BuilderVerifierExt;

/// Which certificates a relay connection trusts.
#[derive(Clone, Debug, Default)]
pub enum RelayTrust {
    /// The platform's trust store.
    #[default]
    Platform,
    /// Only these certificates (a CA's, or the relay's own).
    Pinned(PinnedRoots),
}

/// Trust anchors given by the user (PEM), e.g. the relay operator's CA.
#[derive(Clone)]
pub struct PinnedRoots(Arc<Vec<CertificateDer<'static>>>);

impl fmt::Debug for PinnedRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedRoots({} certificate(s))", self.0.len())
    }
}

/// A trust setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The PEM text holds no certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found in the relay CA file")]
    NoCertificate,
    /// A certificate could not be read or used as a trust anchor.
    #[error("the relay CA file holds a certificate that cannot be used: {0}")]
    BadCertificate(String),
    /// The TLS configuration could not be built (e.g. the platform's
    /// verifier is unavailable).
    #[error("TLS could not be set up: {0}")]
    Setup(String),
}

impl PinnedRoots {
    /// Every certificate in `pem` (at least one).
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(PinnedRoots(Arc::new(certs)))
    }
}

/// The ring crypto provider every TLS connection of the core uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process's default rustls provider, for code that builds
/// its own `reqwest::Client` (tests, tools) in a build where reqwest has no
/// provider of its own. Harmless if a default is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client configuration for `trust`.
pub fn client_config(trust: &RelayTrust) -> Result<Arc<ClientConfig>, TlsError> {
    match trust {
        RelayTrust::Platform => platform_config(),
        RelayTrust::Pinned(roots) => pinned_config(roots),
    }
}

/// One platform configuration per process (the verifier loads the trust
/// store once).
fn platform_config() -> Result<Arc<ClientConfig>, TlsError> {
    static PLATFORM: OnceLock<Result<Arc<ClientConfig>, TlsError>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            #[cfg(not(target_os = "android"))]
            let builder = builder
                .with_platform_verifier()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            #[cfg(target_os = "android")]
            let builder = builder.with_root_certificates(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
            Ok(Arc::new(builder.with_no_client_auth()))
        })
        .clone()
}

fn pinned_config(roots: &PinnedRoots) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in roots.0.iter() {
        store
            .add(cert.clone())
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS failure in `err`'s chain, said for a person: why the relay's
/// certificate was not accepted (`None` if the failure was not TLS).
pub fn describe_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_rustls(err).map(describe_rustls)
}

/// The rustls error in `err`'s chain, looking inside `io::Error`s too
/// (their `source` skips the error they wrap).
fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
    {
        if let Some(tls) = find_rustls(inner) {
            return Some(tls);
        }
    }
    err.source().and_then(find_rustls)
}

/// Prefix of every TLS failure message, so callers can tell them apart.
pub const TLS_FAILURE: &str = "TLS: ";

fn describe_rustls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "the relay's certificate is not signed by a trusted CA".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the relay's certificate is for another host name".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the relay's certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("the relay's certificate was refused ({other:?})")
        }
        other => format!("the secure connection failed ({other})"),
    };
    format!("{TLS_FAILURE}{why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_roots_need_a_certificate() {
        assert_eq!(
            PinnedRoots::from_pem(b"not pem").unwrap_err(),
            TlsError::NoCertificate
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let roots = PinnedRoots::from_pem(garbage).unwrap();
        assert!(matches!(
            client_config(&RelayTrust::Pinned(roots)),
            Err(TlsError::BadCertificate(_))
        ));
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let why = describe_failure(&nested).unwrap();
        assert!(why.starts_with(TLS_FAILURE) && why.contains("not signed by a trusted CA"));
        assert!(describe_failure(&std::io::Error::other("reset")).is_none());
    }

    #[test]
    fn platform_config_uses_ring() {
        let config = client_config(&RelayTrust::Platform).unwrap();
        assert!(config
            .crypto_provider()
            .cipher_suites
            .iter()
            .all(|s| rustls::crypto::ring::ALL_CIPHER_SUITES.contains(s)));
    }
}
