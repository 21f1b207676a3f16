//! A Kubernetes control plane's certificate authority, as its node's agent reports it once the
//! API server is up: the certificate(s) a kubeconfig trusts for that server, so `kubectl`
//! verifies the cluster it talks to instead of skipping TLS verification.
//!
//! What an agent reports is untrusted and reaches customers' kubeconfigs: only PEM
//! certificate blocks whose base64 decodes to DER (an ASN.1 sequence) get in, at most four and
//! 16 KiB in all, rewritten in a canonical form so nothing else rides along.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";
const MAX_LEN: usize = 16 * 1024;
const MAX_CERTIFICATES: usize = 4;

/// One to four PEM certificates, canonical: 64-column base64 between the markers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaCertificate(String);

impl CaCertificate {
    /// The certificate(s), or why they are not (written for the agent's operator).
    pub fn parse(text: &str) -> Result<CaCertificate, &'static str> {
        if text.len() > MAX_LEN {
            return Err("must be at most 16 KiB of PEM");
        }
        let mut rest = text.trim();
        let mut out = String::new();
        let mut count = 0;
        while !rest.is_empty() {
            let body = rest
                .strip_prefix(BEGIN)
                .ok_or("must be PEM certificates: -----BEGIN CERTIFICATE----- …")?;
            let end = body.find(END).ok_or("a certificate has no END line")?;
            let b64: String = body[..end].split_whitespace().collect();
            let der = BASE64
                .decode(b64.as_bytes())
                .map_err(|_| "a certificate's body is not base64")?;
            // DER of a certificate is an ASN.1 SEQUENCE.
            if der.len() < 16 || der[0] != 0x30 {
                return Err("a certificate's body is not a DER certificate");
            }
            count += 1;
            if count > MAX_CERTIFICATES {
                return Err("at most 4 certificates");
            }
            let canonical = BASE64.encode(&der);
            out.push_str(BEGIN);
            out.push('\n');
            for line in canonical.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).unwrap_or_default());
                out.push('\n');
            }
            out.push_str(END);
            out.push('\n');
            rest = body[end + END.len()..].trim_start();
        }
        if count == 0 {
            return Err("must hold at least one certificate");
        }
        Ok(CaCertificate(out))
    }

    pub fn as_pem(&self) -> &str {
        &self.0
    }

    /// The PEM in base64, as a kubeconfig's `certificate-authority-data` holds it.
    pub fn kubeconfig_data(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }
}

impl TryFrom<String> for CaCertificate {
    type Error = &'static str;
    fn try_from(s: String) -> Result<CaCertificate, &'static str> {
        CaCertificate::parse(&s)
    }
}

impl From<CaCertificate> for String {
    fn from(c: CaCertificate) -> String {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(der: &[u8]) -> String {
        format!("{BEGIN}\n{}\n{END}\n", BASE64.encode(der))
    }

    #[test]
    fn certificates_are_checked_and_made_canonical() {
        let der: Vec<u8> = std::iter::once(0x30).chain(1..=100u8).collect();
        let one = CaCertificate::parse(&format!("  {}  ", pem(&der))).unwrap();
        assert!(one.as_pem().starts_with(BEGIN));
        assert!(
            one.as_pem()
                .lines()
                .all(|l| l.len() <= 64 || l.starts_with("-----"))
        );
        assert_eq!(CaCertificate::parse(one.as_pem()).unwrap(), one);
        let two = format!("{}{}", pem(&der), pem(&der));
        assert_eq!(
            CaCertificate::parse(&two)
                .unwrap()
                .as_pem()
                .matches(BEGIN)
                .count(),
            2
        );
        for bad in [
            String::new(),
            "hello".to_string(),
            format!("{BEGIN}\nnot base64!\n{END}"),
            pem(b"\x31 not a sequence at all"),
            format!("{}\nkind: Config\n", pem(&der)),
            pem(&der).repeat(5),
            "x".repeat(MAX_LEN + 1),
        ] {
            assert!(CaCertificate::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
