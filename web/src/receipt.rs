//! The printable receipt of a card payment, rendered on the server with every value escaped.

use std::fmt::Write;

use crate::printable::{document, esc};

/// What the page shows; the API's receipt converts into it, so `web` needs no domain types.
pub struct ReceiptView<'a> {
    pub number: &'a str,
    pub organization: &'a str,
    pub org_id: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    /// RFC 3339.
    pub paid_at: &'a str,
    /// "Visa ending 4242", or what stands for an unknown card.
    pub card: Option<(&'a str, &'a str)>,
    pub payment_reference: &'a str,
    pub refunded: &'a str,
    /// (refund id, amount, status, RFC 3339 time)
    pub refunds: Vec<[&'a str; 4]>,
}

pub fn render_view(v: &ReceiptView<'_>) -> String {
    let card = match v.card {
        Some((brand, last4)) => format!("{} ending {}", esc(&title_case(brand)), esc(last4)),
        None => "Card".to_string(),
    };
    let mut refunds = String::new();
    for r in &v.refunds {
        let _ = write!(
            refunds,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{} {}</td></tr>",
            esc(r[3]),
            esc(r[0]),
            esc(r[2]),
            esc(r[1]),
            esc(v.currency)
        );
    }
    let refunds = if refunds.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Refunds</h2><table><thead><tr><th>Date</th><th>Refund</th><th>Status</th><th class=n>Amount</th></tr></thead>\
<tbody>{refunds}</tbody></table><p>Refunded in all: {refunded} {currency}</p>",
            refunded = esc(v.refunded),
            currency = esc(v.currency),
        )
    };
    document(
        &format!("IO Cloud receipt {} — {}", v.number, v.organization),
        &format!(
            "<h1>IO Cloud — receipt {number}</h1><p>{org} ({org_id})</p><table>\
<tr><th>Paid</th><td>{paid_at}</td></tr><tr><th>Amount</th><td class=n>{amount} {currency}</td></tr>\
<tr><th>Paid with</th><td>{card}</td></tr><tr><th>Payment reference</th><td>{reference}</td></tr></table>\
{refunds}<p>Credited to the organisation's balance on IO Cloud. Keep this receipt for your records.</p>",
            number = esc(v.number),
            org = esc(v.organization),
            org_id = esc(v.org_id),
            paid_at = esc(v.paid_at),
            amount = esc(v.amount),
            currency = esc(v.currency),
            reference = esc(v.payment_reference),
        ),
    )
}

/// `visa` → `Visa`, `american_express` → `American express`.
fn title_case(brand: &str) -> String {
    let brand = brand.replace('_', " ");
    let mut chars = brand.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => brand,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_card_named() {
        let page = render_view(&ReceiptView {
            number: "top_1",
            organization: "<img src=x onerror=alert(1)>",
            org_id: "org_1",
            amount: "25.00",
            currency: "USD",
            paid_at: "2026-12-06T10:00:00Z",
            card: Some(("visa", "4242")),
            payment_reference: "pi_1",
            refunded: "5.00",
            refunds: vec![["ref_1", "5.00", "succeeded", "2026-12-07T10:00:00Z"]],
        });
        assert!(!page.contains("<img"));
        assert!(page.contains("Visa ending 4242"));
        assert!(page.contains("25.00 USD"));
        assert!(page.contains("ref_1"));
    }
}
