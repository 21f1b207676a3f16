//! The printable invoice page, rendered on the server with every value escaped.

use std::fmt::Write;

use crate::printable::{document, esc};

/// What the page shows; the API's invoice converts into it, so `web` needs no domain types.
pub struct InvoiceView<'a> {
    pub organization: &'a str,
    pub org_id: &'a str,
    pub month: &'a str,
    /// (cluster, currency, GPU-hours, rate, amount, unpaid)
    pub lines: Vec<[&'a str; 6]>,
    /// (currency, amount, unpaid)
    pub totals: Vec<[&'a str; 3]>,
}

pub fn render_view(v: &InvoiceView<'_>) -> String {
    let mut rows = String::new();
    for l in &v.lines {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{} {}</td><td class=n>{} {}</td><td class=n>{} {}</td></tr>",
            esc(l[0]),
            esc(l[2]),
            esc(l[3]),
            esc(l[1]),
            esc(l[4]),
            esc(l[1]),
            esc(l[5]),
            esc(l[1])
        );
    }
    if v.lines.is_empty() {
        rows.push_str("<tr><td colspan=5>No usage this month.</td></tr>");
    }
    let mut totals = String::new();
    for t in &v.totals {
        let _ = write!(
            totals,
            "<tr><th>Total {}</th><td class=n>{} {}</td><th>Unpaid</th><td class=n>{} {}</td></tr>",
            esc(t[0]),
            esc(t[1]),
            esc(t[0]),
            esc(t[2]),
            esc(t[0])
        );
    }
    document(
        &format!("IO Cloud invoice {} — {}", v.month, v.organization),
        &format!(
            "<h1>IO Cloud — invoice {month}</h1><p>{org} ({org_id})</p><table><thead><tr><th>Cluster</th>\
<th class=n>GPU-hours</th><th class=n>Rate per GPU-hour</th><th class=n>Amount</th><th class=n>Unpaid</th></tr></thead>\
<tbody>{rows}</tbody></table><table>{totals}</table><p>Amounts are exact to the micro-unit; usage is charged per second of running, \
never for time a node was down.</p>",
            month = esc(v.month),
            org = esc(v.organization),
            org_id = esc(v.org_id),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = render_view(&InvoiceView {
            organization: "<script>alert(1)</script>",
            org_id: "org_1",
            month: "2026-11",
            lines: vec![["clu_1", "USD", "1.00", "2.10", "2.10", "0.00"]],
            totals: vec![["USD", "2.10", "0.00"]],
        });
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("2.10 USD"));
    }
}
