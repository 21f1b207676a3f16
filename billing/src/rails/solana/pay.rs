//! Solana Pay transfer requests: the `solana:` URL a wallet opens to pay a deposit, and its QR
//! code. The reference key rides in the transfer as a read-only account, which is how the
//! watcher finds the payment and whose deposit it is.

use std::fmt::Write;

use solana_pubkey::Pubkey;

/// A transfer request (<https://docs.solanapay.com/spec>).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    /// The wallet paid (its associated token account for `mint` receives).
    pub recipient: Pubkey,
    pub mint: Pubkey,
    /// Tokens as a decimal, when the request names an amount.
    pub amount: Option<String>,
    pub reference: Pubkey,
    pub label: String,
    pub message: String,
    pub memo: Option<String>,
}

impl TransferRequest {
    /// `solana:<recipient>?amount=…&spl-token=<mint>&reference=<key>&label=…&message=…&memo=…`
    pub fn url(&self) -> String {
        let mut url = format!("solana:{}?", self.recipient);
        if let Some(amount) = &self.amount {
            let _ = write!(url, "amount={amount}&");
        }
        let _ = write!(
            url,
            "spl-token={}&reference={}&label={}&message={}",
            self.mint,
            self.reference,
            encode(&self.label),
            encode(&self.message)
        );
        if let Some(memo) = &self.memo {
            let _ = write!(url, "&memo={}", encode(memo));
        }
        url
    }

    /// The URL as a QR code, an SVG document a wallet's camera reads.
    pub fn qr_svg(&self) -> String {
        match qrcode::QrCode::with_error_correction_level(self.url(), qrcode::EcLevel::M) {
            Ok(code) => code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .quiet_zone(true)
                .build(),
            // A URL of a few hundred bytes always fits; an SVG that says so is still an image.
            Err(_) => "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_string(),
        }
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_the_spec_and_encodes_text() {
        let r = TransferRequest {
            recipient: Pubkey::new_from_array([1; 32]),
            mint: Pubkey::new_from_array([2; 32]),
            amount: Some("25.5".into()),
            reference: Pubkey::new_from_array([3; 32]),
            label: "IO Cloud".into(),
            message: "Deposit & co".into(),
            memo: Some("dep_1".into()),
        };
        let url = r.url();
        assert!(url.starts_with(&format!("solana:{}?amount=25.5&spl-token=", r.recipient)));
        assert!(url.contains(&format!("reference={}", r.reference)));
        assert!(url.contains("label=IO%20Cloud&message=Deposit%20%26%20co&memo=dep_1"));
        let svg = r.qr_svg();
        assert!(svg.contains("<svg") && svg.len() > 1000);
    }
}
