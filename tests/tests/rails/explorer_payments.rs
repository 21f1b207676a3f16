//! IO Explorer's payments ledger against the LiteSVM peer, on both engines: a deposit and a
//! payout on Solana show with their amounts and their transactions' signatures, newest first,
//! paged, and without who paid or was paid.

use iocloud_billing::Currency;
use iocloud_tests::{Backend, ChainApp, earn, on_both_engines};
use serde_json::json;

on_both_engines!(deposits_and_payouts_show_with_their_signatures_and_nobody_behind_them);

async fn deposits_and_payouts_show_with_their_signatures_and_nobody_behind_them(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("payer@example.com", "Secret Payers").await;

    // A deposit of 25 IOSD, credited.
    let d = app
        .post(
            "/v1/billing/deposits",
            Some(&s.access),
            json!({"currency": "IOSD", "amount": "25.00"}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.text);
    let reference = d.body["reference"].as_str().unwrap().to_string();
    let paid = chain.pay(&chain.iosd, 25_000_000, Some(&reference)).await;
    let deposit_signature = paid["signature"].as_str().unwrap().to_string();
    chain.peer.advance(40).await;
    let mut credited = 0;
    for _ in 0..10 {
        credited += chain.watch().await.credited;
        if credited > 0 {
            break;
        }
        chain.peer.advance(40).await;
    }
    assert_eq!(credited, 1);

    // A payout of 10 USD of earnings as IOSD, paid.
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100.00", Currency::Usd).await;
    chain.fund_treasury(&chain.iosd, 1_000_000_000).await;
    let p = app
        .post(
            "/v1/payouts",
            Some(&s.access),
            json!({"amount": "10.00", "currency": "USD", "token": "IOSD"}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let id = p.body["id"].as_str().unwrap().to_string();
    let mut payout = serde_json::Value::Null;
    for _ in 0..20 {
        chain.peer.advance(40).await;
        let _ = app.server.state.control.payouts.send_pass().await;
        payout = app.get(&format!("/v1/payouts/{id}"), &s.access).await.body;
        if payout["status"] == "paid" {
            break;
        }
    }
    assert_eq!(payout["status"], "paid", "{payout}");

    // Newest first: the payout, then the deposit; a page of one leads to the other.
    let first = app.get_public("/v1/explorer/payments?limit=1").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let out = &first.body["items"][0];
    assert_eq!(
        (
            &out["rail"],
            &out["direction"],
            &out["amount"],
            &out["currency"]
        ),
        (
            &json!("solana"),
            &json!("out"),
            &json!("10.00"),
            &json!("USD")
        )
    );
    assert_eq!(out["token"], "IOSD");
    assert_eq!(out["signature"], payout["signature"]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get_public(&format!("/v1/explorer/payments?limit=1&cursor={cursor}"))
        .await;
    let inbound = &second.body["items"][0];
    assert_eq!(
        (
            &inbound["rail"],
            &inbound["direction"],
            &inbound["amount"],
            &inbound["currency"]
        ),
        (
            &json!("solana"),
            &json!("in"),
            &json!("25.00"),
            &json!("IOSD")
        )
    );
    assert_eq!(inbound["signature"], deposit_signature.as_str());
    assert!(second.body["next_cursor"].is_null(), "{}", second.text);
    app.get_public("/v1/explorer/payments?cursor=cXdlcnR5")
        .await
        .assert_problem(422, "validation_failed");

    // Nobody behind them: not the organisation, its name, its wallet or its deposit reference.
    let page = app.get_public("/explorer/bookings").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(&deposit_signature));
    for answer in [&first, &second, &page] {
        for secret in [
            s.org_id.as_str(),
            "Secret Payers",
            "payer@example.com",
            address.as_str(),
            reference.as_str(),
        ] {
            assert!(
                !answer.text.contains(secret),
                "{secret} shown: {}",
                answer.text
            );
        }
    }
    chain.stop().await;
}
