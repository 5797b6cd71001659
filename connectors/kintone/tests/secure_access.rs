//! A domain with secure access takes only clients that show a certificate its CA issued: the
//! client's identity, from PKCS#12 as cybozu issues it or from PEM, completes the handshake;
//! without one, no call gets through.

use std::{net::SocketAddr, sync::Arc};

use base64::Engine;
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        server::WebPkiClientVerifier,
        RootCertStore, ServerConfig,
    },
    TlsAcceptor,
};
use tsunagi_kintone::{client_identity, Auth, Client};

/// A CA, and from it a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, KeyPair),
    client: (CertificateDer<'static>, KeyPair),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "secure access test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let (ca_pem, ca_der) = (ca_cert.pem(), ca_cert.der().clone());
    let ca = Issuer::new(ca_params, ca_key);
    let issue = |names: Vec<String>, cn: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.der().clone(), key)
    };
    Pki {
        ca_pem,
        ca_der,
        server: issue(vec!["127.0.0.1".into()], "example.s.cybozu.com"),
        client: issue(Vec::new(), "sato@example"),
    }
}

/// A listener that answers every request with one record, after a handshake that requires a
/// client certificate from the CA.
async fn secure_domain(pki: &Pki) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = br#"{"record":{"$id":{"type":"__ID__","value":"7"},"$revision":{"type":"__REVISION__","value":"3"}}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// The client certificate and its key as cybozu hands them out: one PKCS#12 file.
fn pkcs12(pki: &Pki, password: &str) -> Vec<u8> {
    let chain = PrivateKeyChain::new(
        pki.client.1.serialize_der(),
        [1u8; 20],
        [Certificate::from_der(&pki.client.0).unwrap()],
    );
    let mut store = KeyStore::new();
    store.add_entry("sato", KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().unwrap()
}

fn client(addr: SocketAddr, pki: &Pki, identity: Option<reqwest::Identity>) -> Client {
    let mut http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    if let Some(identity) = identity {
        http = http.identity(identity);
    }
    let origin = format!("https://{addr}");
    Client::with_client(http.build().unwrap(), &origin, Auth::api_token("token-a")).unwrap()
}

/// `der` as one PEM certificate block.
fn pem_certificate(der: &CertificateDer<'_>) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn a_pkcs12_client_certificate_gets_through_secure_access() {
    let pki = pki();
    let addr = secure_domain(&pki).await;
    let identity = client_identity(&pkcs12(&pki, "パスワード"), Some("パスワード")).unwrap();
    let record = client(addr, &pki, Some(identity))
        .get_record(12, 7)
        .await
        .unwrap();
    assert_eq!((record.id(), record.revision()), (Some(7), Some(3)));
}

#[tokio::test]
async fn a_pem_client_certificate_with_its_key_gets_through_secure_access() {
    let pki = pki();
    let addr = secure_domain(&pki).await;
    let pem = format!(
        "{}{}",
        pki.client.1.serialize_pem(),
        pem_certificate(&pki.client.0)
    );
    let identity = client_identity(pem.as_bytes(), None).unwrap();
    client(addr, &pki, Some(identity))
        .get_record(12, 7)
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_client_certificate_secure_access_lets_no_call_through() {
    let pki = pki();
    let addr = secure_domain(&pki).await;
    let refused = client(addr, &pki, None)
        .get_record(12, 7)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, tsunagi_kintone::ClientError::Network { .. }),
        "{refused:?}"
    );
}

#[test]
fn a_pkcs12_file_with_the_wrong_password_is_refused_naming_why() {
    let pki = pki();
    let e = client_identity(&pkcs12(&pki, "right"), Some("wrong")).unwrap_err();
    assert!(e.to_string().contains("PKCS#12"), "{e}");
}
