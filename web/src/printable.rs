//! What the printable pages (invoices, receipts) share: escaping and one plain page that
//! prints well. Every value a page shows goes through [`esc`].

/// `s` as HTML text or attribute value.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A whole page: `title` (escaped here) and `body`, HTML built by the caller from escaped
/// values.
pub(crate) fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:40px;color:#1b1f2a}}h1{{font-size:22px}}table{{border-collapse:collapse;width:100%;margin-top:16px}}\
td,th{{border-bottom:1px solid #dde;padding:6px 8px;text-align:left}}.n{{text-align:right;font-variant-numeric:tabular-nums}}\
@media print{{body{{margin:0}}}}</style></head><body>{body}</body></html>",
        title = esc(title),
    )
}
