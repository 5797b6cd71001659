//! The TLS listener's identity: a CA made at start and a server certificate it signed, so a
//! test trusts the fake by the CA's PEM alone, as an operator trusts an aggregator's private CA.

use std::{net::IpAddr, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

/// A server certificate and the CA that signed it.
pub(crate) struct Identity {
    /// The CA's certificate in PEM, what a client adds to its roots.
    pub ca_pem: String,
    /// Handshakes as the server the certificate names.
    pub acceptor: TlsAcceptor,
}

impl Identity {
    /// A new CA and a certificate from it for `localhost` and `ip`.
    pub fn generate(ip: IpAddr) -> std::io::Result<Self> {
        Self::try_generate(ip).map_err(std::io::Error::other)
    }

    fn try_generate(ip: IpAddr) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake-smsc test CA");
        let ca_key = KeyPair::generate()?;
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        let ca = Issuer::new(ca_params, ca_key);

        let mut params = CertificateParams::new(vec!["localhost".to_string(), ip.to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "fake-smsc");
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &ca)?;

        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], private_key)?;
        Ok(Self {
            ca_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}
