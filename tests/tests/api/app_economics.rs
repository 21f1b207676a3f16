//! Slashing and co-staking in the console. Cases: the list and a case's page with its
//! evidence and every step; the appeal form appeals (a second appeal, and one after the window,
//! refused in words on the page); another organisation's case not found. Co-staking: a device's
//! stake offered from the form (bad amounts, shares and terms refused in words, nothing
//! created), withdrawn and offered again; another organisation finding it in the market without
//! its provider's name, taking it from the form and seeing its co-stake, which reads the
//! device's case but cannot appeal it; unstaking refused in the term, then the notice, the
//! cooldown and the withdrawal. No page carries an inline style.

use iocloud_db::time::now_micros;
use iocloud_tests::{Backend, Session, TestApp, on_both_engines, verified_rig};
use serde_json::{Value, json};

use super::console_client::{csrf_of, page, post_form as post, sign_in};

on_both_engines!(slashing_cases_in_the_console, co_staking_in_the_console);

/// The part of `html` from `marker` to the first `end` after it (included).
fn part<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

/// Asserts `html` holds each of `texts`.
fn holds(html: &str, texts: &[&str]) {
    for t in texts {
        assert!(html.contains(t), "{t} in {html}");
    }
}

/// A page's HTML, which must load and carry no inline style (the policy would refuse it).
async fn html_of(app: &TestApp, jar: &str, path: &str) -> String {
    let (status, html) = page(app, jar, path).await;
    assert_eq!(status, 200, "{path}: {html}");
    assert!(!html.contains(" style="), "{path}: {html}");
    html
}

/// A form that does what it says: where it sends the browser.
async fn done(app: &TestApp, jar: &str, path: &str, form: &[(&str, &str)]) -> String {
    let (status, to, html) = post(app, jar, path, form).await;
    assert_eq!(status, 303, "{path}: {html}");
    to.unwrap()
}

/// A form refused with `status`: the page again (no inline style), and the refusal's words.
async fn refused(
    app: &TestApp,
    jar: &str,
    path: &str,
    form: &[(&str, &str)],
    status: u16,
) -> (String, String) {
    let (got, _, html) = post(app, jar, path, form).await;
    assert_eq!(got, status, "{path}: {html}");
    assert!(!html.contains(" style="), "{html}");
    let words = part(&html, "data-testid=\"worker-error\"", "</p>").to_string();
    (words, html)
}

/// A provider with one verified H100 rig (16000 $IO of stake needed) and `stake` $IO staked:
/// (provider, device id).
async fn provider(app: &TestApp, stake: &str) -> (Session, String) {
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, stake, "IO").await;
    let staked = app
        .post("/v1/stake", Some(&p.access), json!({"amount": stake}))
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    let (id, _) = verified_rig(app, &p, "rig").await;
    (p, id)
}

/// An operator opens a case against `device` taking `amount` $IO: its id.
async fn open_case(app: &TestApp, device: &str, amount: &str, evidence: Value) -> String {
    let ops = app.operator().await;
    let case = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": device, "rule": "operator", "amount": amount,
                "statement": "ran a crypto miner on a customer's GPUs", "evidence": evidence}),
        )
        .await;
    assert_eq!(case.status, 201, "{}", case.text);
    case.body["id"].as_str().unwrap().to_string()
}

/// Moves a stored moment of `id` in `table` to just past.
async fn past(app: &TestApp, table: &str, set: &str, id: &str) {
    let sql = format!(
        "UPDATE {table} SET {} WHERE id = $1",
        set.replace("{past}", &(now_micros() - 1).to_string())
    );
    app.exec(&sql, id).await;
}

async fn slashing_cases_in_the_console(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (p, device) = provider(&app, "20000").await;
    let jar = sign_in(&app, "farm@example.com").await;
    let csrf = csrf_of(&jar);
    let html = html_of(&app, &jar, "/app/worker/cases").await;
    holds(
        &html,
        &[
            "data-testid=\"no-cases\"",
            "<a href=\"/app/worker/cases\" aria-current=\"page\">Cases</a>",
        ],
    );

    let evidence = json!([
        {"kind": "note", "summary": "reported by the customer, ticket 4411"},
        {"kind": "proof", "ref": "2026-12-06T14:00:00Z", "summary": "answered after 45 s of 30"},
    ]);
    let id = open_case(&app, &device, "400", evidence).await;

    // The list: the case, its device linked, the rule in words, the escrow and where it came
    // from, its status and the deadline.
    let html = html_of(&app, &jar, "/app/worker/cases").await;
    let row = part(&html, &format!("data-case=\"{id}\""), "</tr>");
    holds(
        row,
        &[
            &format!("href=\"/app/worker/cases/{id}\""),
            &format!("href=\"/app/worker/devices/{device}\">rig</a>"),
            "Another breach, named in the statement",
            "400.00",
            "from stake 400.00",
            "data-status=\"open\"",
            "<time datetime=",
        ],
    );

    // The case's page: the statement, every piece of evidence, the opening step, and the form.
    let at = format!("/app/worker/cases/{id}");
    let appeal = format!("{at}/appeal");
    let html = html_of(&app, &jar, &at).await;
    holds(
        &html,
        &[
            "ran a crypto miner on a customer's GPUs",
            "data-testid=\"appeal-form\"",
            &format!("action=\"{appeal}\""),
        ],
    );
    let note = part(&html, "data-kind=\"note\"", "</tr>");
    holds(note, &["reported by the customer, ticket 4411"]);
    let proof = part(&html, "data-kind=\"proof\"", "</tr>");
    holds(
        proof,
        &["2026-12-06T14:00:00Z", "answered after 45 s of 30"],
    );
    let opened = part(&html, "data-step=\"opened\"", "</tr>");
    holds(opened, &["400.00 $IO into escrow", "An operator"]);

    // An empty statement is refused in words; a forged form is refused; neither appeals.
    let form = [("csrf", csrf.as_str()), ("statement", " ")];
    let (words, _) = refused(&app, &jar, &appeal, &form, 422).await;
    holds(&words, &["Statement: 1 to 4000 characters"]);
    let forged = [("csrf", "forged"), ("statement", "not us")];
    assert_eq!(post(&app, &jar, &appeal, &forged).await.0, 403);
    let rest = format!("/v1/slashing/cases/{id}");
    let seen = app.get(&rest, &p.access).await;
    assert_eq!(seen.body["status"], "open", "{}", seen.text);

    // Appealed from the form: back to the case saying so, appealed, the step and the words.
    let said = "that was our own benchmark, between rentals; logs attached";
    let to = done(&app, &jar, &appeal, &[("csrf", &csrf), ("statement", said)]).await;
    assert_eq!(to, format!("{at}?done=appealed"));
    let html = html_of(&app, &jar, &to).await;
    holds(
        &html,
        &[
            "Your appeal was sent",
            "data-status=\"appealed\"",
            "data-step=\"appealed\"",
        ],
    );
    holds(
        part(&html, "data-testid=\"case-appeal\"", "</blockquote>"),
        &[said],
    );
    assert!(!html.contains("data-testid=\"appeal-form\""), "{html}");
    let seen = app.get(&rest, &p.access).await;
    assert_eq!(seen.body["status"], "appealed", "{}", seen.text);

    // A second appeal is refused on the page.
    let form = [("csrf", csrf.as_str()), ("statement", "again")];
    let (words, _) = refused(&app, &jar, &appeal, &form, 409).await;
    holds(&words, &["only an open case can be appealed"]);

    // A case whose window has closed: no form, and an appeal refused in words.
    let late = open_case(&app, &device, "100", json!([])).await;
    past(&app, "slashing_cases", "appeal_deadline = {past}", &late).await;
    let html = html_of(&app, &jar, &format!("/app/worker/cases/{late}")).await;
    assert!(!html.contains("data-testid=\"appeal-form\""), "{html}");
    holds(&html, &["data-testid=\"appeal-closed\""]);
    let late_appeal = format!("/app/worker/cases/{late}/appeal");
    let form = [("csrf", csrf.as_str()), ("statement", "late")];
    let (words, _) = refused(&app, &jar, &late_appeal, &form, 409).await;
    holds(&words, &["appeal window"]);

    // Another organisation: no cases, this one not found, and its form changes nothing.
    app.signup("other@example.com", "Other").await;
    let theirs = sign_in(&app, "other@example.com").await;
    let html = html_of(&app, &theirs, "/app/worker/cases").await;
    holds(&html, &["data-testid=\"no-cases\""]);
    assert!(!html.contains(&id), "{html}");
    let (status, html) = page(&app, &theirs, &at).await;
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("crypto miner"), "{html}");
    let their_csrf = csrf_of(&theirs);
    let form = [("csrf", their_csrf.as_str()), ("statement", "not us")];
    assert_eq!(post(&app, &theirs, &late_appeal, &form).await.0, 404);
}

async fn co_staking_in_the_console(b: Backend) {
    let app = TestApp::spawn(b).await;
    // The provider stakes half of the 16000 $IO its rig needs: the rig waits for stake.
    let (p, device) = provider(&app, "8000").await;
    let jar = sign_in(&app, "farm@example.com").await;
    let csrf = csrf_of(&jar);
    let html = html_of(&app, &jar, "/app/worker/costaking").await;
    holds(
        &html,
        &[
            "<a href=\"/app/worker/costaking\" aria-current=\"page\">Co-staking</a>",
            "data-testid=\"no-offers\"",
        ],
    );
    let form = part(&html, "data-testid=\"offer-form\"", "</form>");
    holds(
        form,
        &[&format!("value=\"{device}\""), "needs 16000.00 $IO"],
    );

    // Bad offers are refused in words, what was typed kept, and nothing is created.
    let offers = "/app/worker/costaking/offers";
    for (amount, share, term, says) in [
        (
            "16000.000001",
            "50",
            "30",
            "at most the 16000.00 the device needs",
        ),
        ("0", "50", "30", "Amount: "),
        (
            "8000",
            "150",
            "30",
            "Co-staker's share: a percentage from 0.01",
        ),
        ("8000", "0", "30", "Co-staker's share: "),
        ("8000", "half", "30", "Co-staker's share: "),
        ("8000", "50", "366", "Term: 1 to 365 days"),
        ("8000", "50", "a month", "Term: a whole number of days"),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("device_id", device.as_str()),
            ("amount", amount),
            ("share", share),
            ("term_days", term),
        ];
        let (words, html) = refused(&app, &jar, offers, &form, 422).await;
        holds(&words, &[says]);
        holds(&html, &[&format!("value=\"{amount}\"")]);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM costake_offers").await, 0);

    // Offered from the form, listed; withdrawn; offered again.
    let good = [
        ("csrf", csrf.as_str()),
        ("device_id", device.as_str()),
        ("amount", "8000"),
        ("share", "50"),
        ("term_days", "30"),
    ];
    let to = done(&app, &jar, offers, &good).await;
    assert_eq!(to, "/app/worker/costaking?done=offered");
    let mine = app.items("/v1/costaking/my-offers", &p.access).await;
    assert_eq!(mine.len(), 1);
    let first = mine[0]["id"].as_str().unwrap().to_string();
    let html = html_of(&app, &jar, &to).await;
    holds(
        &html,
        &[
            "The offer is in the market.",
            // Its own offer is not in its market.
            "data-testid=\"market-empty\"",
        ],
    );
    let row = part(&html, &format!("data-offer=\"{first}\""), "</tr>");
    holds(
        row,
        &[
            "8000.00",
            "50 %",
            "30 days",
            "data-status=\"open\"",
            "Withdraw offer",
        ],
    );
    let withdraw_first = format!("{offers}/{first}/withdraw");
    let to = done(&app, &jar, &withdraw_first, &[("csrf", &csrf)]).await;
    assert_eq!(to, "/app/worker/costaking?done=offer_withdrawn");
    done(&app, &jar, offers, &good).await;
    let mine = app.items("/v1/costaking/my-offers", &p.access).await;
    assert_eq!(mine[0]["status"], "withdrawn");
    let offer = mine[1]["id"].as_str().unwrap().to_string();

    // Another organisation finds it in the market, filtered, never naming the provider.
    let c = app.signup("staker@example.com", "Staker").await;
    app.grant_credit(&c.org_id, "10000", "IO").await;
    let theirs = sign_in(&app, "staker@example.com").await;
    let their_csrf = csrf_of(&theirs);
    let html = html_of(&app, &theirs, "/app/worker/costaking").await;
    let row = part(&html, &format!("data-offer=\"{offer}\""), "</tr>");
    holds(
        row,
        &[
            "NVIDIA H100 SXM",
            "eu-central",
            "8000.00",
            "50 %",
            "30 days",
            "value=\"8000.00\"",
        ],
    );
    for hidden in ["GPU Farm", p.org_id.as_str(), first.as_str()] {
        assert!(!html.contains(hidden), "{hidden}: {html}");
    }
    let market = "/app/worker/costaking?model=h100-sxm&min_reliability=";
    holds(
        &html_of(&app, &theirs, market).await,
        &[&format!("data-offer=\"{offer}\"")],
    );
    let market = "/app/worker/costaking?model=&min_reliability=0.95";
    holds(
        &html_of(&app, &theirs, market).await,
        &["data-testid=\"market-empty\""],
    );
    for (query, says) in [
        ("model=abacus", "GPU model: a GPU model of the catalog"),
        ("min_reliability=2", "Minimum reliability: 0 to 1"),
        (
            "min_reliability=most",
            "Minimum reliability: a number from 0 to 1",
        ),
    ] {
        let (status, html) = page(&app, &theirs, &format!("/app/worker/costaking?{query}")).await;
        assert_eq!(status, 422, "{query}: {html}");
        holds(&html, &[says, "data-testid=\"market-empty\""]);
    }

    // Takes that cannot be: more than offered, without the $IO. Nothing is kept.
    let take = format!("{offers}/{offer}/take");
    let form = [("csrf", their_csrf.as_str()), ("amount", "8000.000001")];
    let (words, html) = refused(&app, &theirs, &take, &form, 422).await;
    holds(
        &words,
        &["Amount: $IO, more than zero and at most the 8000.00 offered"],
    );
    holds(&html, &["value=\"8000.000001\""]);
    app.signup("broke@example.com", "Broke").await;
    let broke = sign_in(&app, "broke@example.com").await;
    let broke_csrf = csrf_of(&broke);
    let form = [("csrf", broke_csrf.as_str()), ("amount", "8000")];
    let (words, _) = refused(&app, &broke, &take, &form, 402).await;
    holds(&words, &["Insufficient funds"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM costake_positions").await, 0);

    // Taken from the form: its co-stake, active; the device is listed on both stakes.
    let form = [("csrf", their_csrf.as_str()), ("amount", "8000")];
    let to = done(&app, &theirs, &take, &form).await;
    assert_eq!(to, "/app/worker/costaking?done=taken");
    let position = app.items("/v1/costaking/positions", &c.access).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let html = html_of(&app, &theirs, &to).await;
    holds(&html, &["Your $IO backs the device now."]);
    assert!(
        !html.contains(&format!("data-offer=\"{offer}\"")),
        "taken: {html}"
    );
    let row = part(&html, &format!("data-position=\"{position}\""), "</tr>");
    holds(
        row,
        &[&device, "data-status=\"active\"", "Unstake 8000.00 $IO"],
    );
    let d = app.get(&format!("/v1/devices/{device}"), &p.access).await;
    assert_eq!(d.body["status"], "available", "{}", d.text);
    let html = html_of(&app, &jar, "/app/worker/costaking").await;
    let row = part(&html, &format!("data-offer=\"{offer}\""), "</tr>");
    holds(row, &["data-status=\"taken\""]);
    assert!(!row.contains("Withdraw offer"), "{row}");

    // A second co-staker, and the provider withdrawing a taken offer, are refused in words.
    let form = [("csrf", broke_csrf.as_str()), ("amount", "1")];
    let (words, _) = refused(&app, &broke, &take, &form, 409).await;
    holds(&words, &["is taken"]);
    let withdraw_taken = format!("{offers}/{offer}/withdraw");
    let (words, _) = refused(&app, &jar, &withdraw_taken, &[("csrf", &csrf)], 409).await;
    holds(&words, &["only an open offer can be withdrawn"]);

    // The co-staker reads a case against the device, but its provider appeals it.
    let case = open_case(&app, &device, "1600", json!([])).await;
    let html = html_of(&app, &theirs, "/app/worker/cases").await;
    let row = part(&html, &format!("data-case=\"{case}\""), "</tr>");
    holds(row, &["a device you co-stake", "co-stake 800.00"]);
    assert!(!row.contains("/app/worker/devices/"), "{row}");
    let html = html_of(&app, &theirs, &format!("/app/worker/cases/{case}")).await;
    assert!(!html.contains("data-testid=\"appeal-form\""), "{html}");
    holds(&html, &["its provider appeals"]);

    // Unstaking: refused in the term; then the notice; withdrawn once the cooldown is over.
    let unstake = format!("/app/worker/costaking/positions/{position}/unstake");
    let withdraw = format!("/app/worker/costaking/positions/{position}/withdraw");
    let form = [("csrf", their_csrf.as_str())];
    let (words, _) = refused(&app, &theirs, &unstake, &form, 409).await;
    holds(&words, &["is in its term until"]);
    let (words, _) = refused(&app, &theirs, &withdraw, &form, 409).await;
    holds(&words, &["it can be withdrawn"]);
    let rest = format!("/v1/costaking/positions/{position}");
    let mine = app.get(&rest, &c.access).await;
    assert_eq!(mine.body["state"], "active", "{}", mine.text);
    // Another organisation cannot touch it.
    assert_eq!(
        post(&app, &broke, &unstake, &[("csrf", &broke_csrf)])
            .await
            .0,
        404
    );
    past(
        &app,
        "costake_positions",
        "term_ends_at = {past}",
        &position,
    )
    .await;
    let to = done(&app, &theirs, &unstake, &form).await;
    assert_eq!(to, "/app/worker/costaking?done=unstaking");
    let html = html_of(&app, &theirs, &to).await;
    let row = part(&html, &format!("data-position=\"{position}\""), "</tr>");
    holds(row, &["data-status=\"notice\"", " until "]);
    assert!(!row.contains("<button"), "{row}");
    let moments = "unstake_at = {past}, available_at = {past}";
    past(&app, "costake_positions", moments, &position).await;
    let html = html_of(&app, &theirs, "/app/worker/costaking").await;
    let row = part(&html, &format!("data-position=\"{position}\""), "</tr>");
    holds(row, &["data-status=\"withdrawable\"", "Withdraw "]);
    let to = done(&app, &theirs, &withdraw, &form).await;
    assert_eq!(to, "/app/worker/costaking?done=withdrawn");
    let mine = app.get(&rest, &c.access).await;
    assert_eq!(mine.body["state"], "withdrawn", "{}", mine.text);
}
