//! The byte stream a bind speaks SMPP over: plain TCP, or TLS on top of it (`tls = true`).

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{
    rustls::{self, CertificateError, ClientConfig, RootCertStore},
    TlsConnector,
};

use crate::config::SmppConfig;

/// The half a connection reads PDUs from.
pub(super) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The half a connection writes PDUs to.
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Why no stream came up.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    /// No TCP connection.
    #[error("{0}")]
    Unreachable(String),
    /// Connected, but no TLS session: the SMSC's certificate is not trusted or names another
    /// host, or the SMSC does not speak TLS there.
    #[error("{0}")]
    Tls(String),
}

/// Connect to the SMSC, each step within `wait`, and split the stream into its halves.
pub(super) async fn open(
    config: &SmppConfig,
    wait: Duration,
) -> Result<(Reader, Writer), OpenError> {
    let addr = format!("{}:{}", config.host, config.port);
    let stream = match timeout(wait, TcpStream::connect(&addr)).await {
        Err(_) => return Err(OpenError::Unreachable("no answer to the connection".into())),
        Ok(Err(e)) => return Err(OpenError::Unreachable(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    if !config.tls {
        let (read, write) = stream.into_split();
        return Ok((Box::new(read), Box::new(write)));
    }
    // Built at each connect, so a renewed CA file counts from the next reconnect.
    let connector = TlsConnector::from(Arc::new(client_config(config)?));
    let name = config.tls_name().map_err(OpenError::Tls)?;
    let tls = match timeout(wait, connector.connect(name, stream)).await {
        Err(_) => return Err(OpenError::Tls("no answer to the TLS handshake".into())),
        Ok(Err(e)) => return Err(OpenError::Tls(handshake_failed(&e))),
        Ok(Ok(tls)) => tls,
    };
    let (read, write) = tokio::io::split(tls);
    Ok((Box::new(read), Box::new(write)))
}

/// Why the handshake failed, with what to change when the SMSC's certificate is the reason.
fn handshake_failed(e: &std::io::Error) -> String {
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<rustls::Error>());
    let hint = match cause {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "; no trusted CA issued it: add its CA to tls_ca_file"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => "; set tls_server_name to a name it carries",
        _ => "",
    };
    format!("TLS handshake failed: {e}{hint}")
}

/// The public CAs, `tls_ca_file`'s besides, and the ring provider reqwest uses too.
fn client_config(config: &SmppConfig) -> Result<ClientConfig, OpenError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in config.tls_ca_certificates().map_err(OpenError::Tls)? {
        roots
            .add(certificate)
            .map_err(|e| OpenError::Tls(format!("tls_ca_file: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OpenError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
