//! The process-wide TLS crypto provider.
//!
//! The dependency tree enables both of rustls' providers (aws-lc-rs through aws-sdk-s3 and jsonwebtoken,
//! ring through kube's `ring` feature), so rustls cannot pick one by itself and panics on the first TLS
//! connection that relies on the default, which is every connection to a real Kubernetes API server. The
//! process therefore installs aws-lc-rs once, before any client is built.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs aws-lc-rs as rustls' default provider (idempotent; a provider installed earlier is kept).
pub fn install_crypto_provider() {
    INSTALL.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_default_provider_is_installed_and_installing_again_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
