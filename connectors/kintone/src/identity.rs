//! Client certificates for a domain with secure access (`{sub}.s.cybozu.com`): cybozu issues
//! each user a PKCS#12 file; rustls takes PEM, so a PKCS#12 file is read here and handed on
//! as PEM text.

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::client::ClientError;

/// The client identity in `bytes`: a PEM file holding the certificate (and its chain) and the
/// private key, or a PKCS#12 file (`.p12`/`.pfx`) opened with `password`.
pub fn client_identity(
    bytes: &[u8],
    password: Option<&str>,
) -> Result<reqwest::Identity, ClientError> {
    let pem = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        bytes.to_vec()
    } else {
        pkcs12_as_pem(bytes, password.unwrap_or_default())?.into_bytes()
    };
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        ClientError::InvalidConfig(format!(
            "the client certificate holds no certificate with its private key: {e}"
        ))
    })
}

/// The private key and certificates of a PKCS#12 file as PEM text.
fn pkcs12_as_pem(bytes: &[u8], password: &str) -> Result<String, ClientError> {
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, password).map_err(|e| {
        ClientError::InvalidConfig(format!(
            "the client certificate is neither PEM nor a PKCS#12 file this password opens: {e}"
        ))
    })?;
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        ClientError::InvalidConfig("the PKCS#12 file holds no private key".to_owned())
    })?;
    let mut pem = block("PRIVATE KEY", chain.key());
    for certificate in chain.chain() {
        pem.push_str(&block("CERTIFICATE", certificate.as_der()));
    }
    Ok(pem)
}

/// One PEM block of `der`, 64 characters a line.
fn block(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_block_wraps_at_64_characters() {
        let pem = block("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
    }

    #[test]
    fn a_file_that_is_no_certificate_is_refused_with_why() {
        let e = client_identity(b"not a certificate", Some("pw")).unwrap_err();
        assert!(e.to_string().contains("neither PEM nor a PKCS#12"), "{e}");
        let e = client_identity(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
    }
}
