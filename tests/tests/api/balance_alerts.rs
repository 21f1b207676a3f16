//! Low-balance alerts: set per currency, noticed by the pass once per crossing (an email to
//! the owners and billing members, `below` for the console's banner), armed again when the
//! balance rises; bad thresholds refused; on both engines.

use iocloud_tests::{Backend, TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(a_balance_under_its_alert_is_told_once);

async fn a_balance_under_its_alert_is_told_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("owner@example.com", "Watchers").await;
    let biller = app.add_member(&s, "biller@example.com", "billing").await;
    let member = app.add_member(&s, "member@example.com", "member").await;
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;
    let grant = app
        .post(
            "/v1/admin/credits",
            Some(&ops.access),
            json!({"org_id": s.org_id, "amount": "100.00", "currency": "USD", "reason": "credit"}),
        )
        .await;
    assert_eq!(grant.status, 200, "{}", grant.text);

    // Bad alerts change nothing; only owners and the billing role set them.
    for (body, field) in [
        (json!({"currency": "USD", "threshold": "0"}), "threshold"),
        (json!({"currency": "USD", "threshold": "-5"}), "threshold"),
        (json!({"currency": "USD", "threshold": "lots"}), "threshold"),
        (json!({"currency": "EUR", "threshold": "5"}), "currency"),
    ] {
        let a = app.put("/v1/billing/low-balance", &s.access, body).await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], field);
    }
    app.put(
        "/v1/billing/low-balance",
        &member.access,
        json!({"currency": "USD", "threshold": "50"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let set = app
        .put(
            "/v1/billing/low-balance",
            &biller.access,
            json!({"currency": "USD", "threshold": "50.00"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["below"], false);
    assert_eq!(set.body["available"], "100.00");

    let billing = &app.server.state.control.billing;
    let outbox = &app.server.state.control.outbox;
    assert_eq!(billing.check_balance_alerts().await.unwrap().crossed, 0);

    // The credit is taken back: the balance falls under 50.
    let undo = app
        .post(
            "/v1/admin/corrections",
            Some(&ops.access),
            json!({"transaction_id": grant.body["transaction_id"], "reason": "granted by mistake"}),
        )
        .await;
    assert_eq!(undo.status, 200, "{}", undo.text);
    let pass = billing.check_balance_alerts().await.unwrap();
    assert_eq!(pass.crossed, 1);
    outbox.deliver().await.unwrap();
    for to in ["owner@example.com", "biller@example.com"] {
        let mail = outbox.mailbox().latest_to(to).expect("told");
        assert!(mail.subject.contains("Low USD balance"), "{}", mail.subject);
        assert!(mail.body.contains("0.00 USD"), "{}", mail.body);
    }
    assert!(
        outbox
            .mailbox()
            .latest_to("member@example.com")
            .is_none_or(|m| !m.subject.contains("balance")),
        "members who do not pay are not emailed"
    );
    let alerts = app.get("/v1/billing/low-balance", &s.access).await;
    assert_eq!(alerts.body[0]["below"], true, "{}", alerts.text);
    assert!(alerts.body[0]["notified_at"].is_string());
    // Told once per crossing.
    assert_eq!(billing.check_balance_alerts().await.unwrap().crossed, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE subject LIKE 'Low USD%'")
            .await,
        2
    );

    // Back over it: armed again, and the next fall is told again.
    app.grant_credit(&s.org_id, "60", "USD").await;
    let pass = billing.check_balance_alerts().await.unwrap();
    assert_eq!(pass.rearmed, 1);
    let alerts = app.get("/v1/billing/low-balance", &s.access).await;
    assert_eq!(alerts.body[0]["below"], false);

    // GraphQL reads the same alerts; removing one is final.
    let g = app
        .graphql(
            Some(&s.access),
            "{ balanceAlerts { currency threshold below } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["data"]["balanceAlerts"][0]["threshold"], "50.00",
        "{}",
        g.text
    );
    let removed = app.delete("/v1/billing/low-balance/USD", &s.access).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    app.delete("/v1/billing/low-balance/USD", &s.access)
        .await
        .assert_problem(404, "not_found");
    let other = app.signup("other@example.com", "Others").await;
    let theirs = app.get("/v1/billing/low-balance", &other.access).await;
    assert_eq!(theirs.body, json!([]));
}
