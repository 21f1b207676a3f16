//! The server-rendered console at `/app/`: signing in sets HttpOnly, SameSite=Lax session
//! cookies (Secure behind TLS); every form needs the CSRF token; pages carry a strict CSP and
//! are never cached; Home shows the organisation's own money and clusters, escaped; an expired
//! access token is renewed from the refresh cookie; signing out ends the session.

use super::console_client::{browser, cookie, csrf_in, csrf_of, page, set_cookies, sign_in};
use iocloud_tests::{Backend, ChainApp, PASSWORD, TestApp, on_both_engines};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION};

on_both_engines!(
    the_console_signs_in_with_cookies_and_shows_home,
    billing_shows_the_ledger_and_takes_deposits,
    members_see_home_without_the_money
);

async fn the_console_signs_in_with_cookies_and_shows_home(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("owner@example.com", "Render <b>Farm</b>").await;
    let other = app.signup("other@example.com", "Quiet Neighbours").await;
    app.grant_credit(&s.org_id, "125.50", "USD").await;
    let http = browser();

    // Signed out: to the sign-in page.
    let home = http.get(app.url("/app/")).send().await.unwrap();
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()[LOCATION], "/app/login");

    // The sign-in page: a strict policy, a CSRF cookie nobody's script can read, and the same
    // token in the form.
    let login = http.get(app.url("/app/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let csp = login.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let lines = set_cookies(&login);
    let csrf_line = lines.iter().find(|l| l.starts_with("csrf=")).unwrap();
    assert!(
        csrf_line.contains("HttpOnly") && csrf_line.contains("SameSite=Lax"),
        "{csrf_line}"
    );
    let csrf_cookie = cookie(&lines, "csrf").unwrap();
    let csrf = csrf_in(&login.text().await.unwrap());
    assert_eq!(format!("csrf={csrf}"), csrf_cookie);

    // A post without the token, or with another, signs nobody in.
    for (jar, token) in [("", csrf.as_str()), (csrf_cookie.as_str(), "forged")] {
        let res = http
            .post(app.url("/app/login"))
            .header(COOKIE, jar)
            .form(&[
                ("csrf", token),
                ("email", "owner@example.com"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        assert!(cookie(&set_cookies(&res), "iocloud_access").is_none());
    }
    // A wrong password: the form again, saying so, with the email kept (escaped).
    let res = http
        .post(app.url("/app/login"))
        .header(COOKIE, &csrf_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "owner@example.com\"><script>"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(page.contains("do not match"), "{page}");
    assert!(!page.contains("\"><script>"), "escaped");

    // Signed in: session cookies, HttpOnly and SameSite=Lax, Secure behind TLS.
    let res = http
        .post(app.url("/app/login"))
        .header(COOKIE, &csrf_cookie)
        .header("x-forwarded-proto", "https")
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/app/");
    let lines = set_cookies(&res);
    for name in ["iocloud_access", "iocloud_refresh"] {
        let line = lines.iter().find(|l| l.starts_with(name)).unwrap();
        for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/app"] {
            assert!(line.contains(flag), "{line} lacks {flag}");
        }
    }
    let jar = format!(
        "{csrf_cookie}; {}; {}",
        cookie(&lines, "iocloud_access").unwrap(),
        cookie(&lines, "iocloud_refresh").unwrap()
    );

    // Home: the organisation's own, escaped; never cached.
    let home = http
        .get(app.url("/app/"))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["cache-control"], "no-store");
    assert!(home.headers().contains_key(CONTENT_SECURITY_POLICY));
    let page = home.text().await.unwrap();
    assert!(page.contains("Render &lt;b&gt;Farm&lt;/b&gt;"), "{page}");
    assert!(page.contains("125.50"), "{page}");
    assert!(page.contains("Nothing is running."));
    assert!(!page.contains("Quiet Neighbours"));

    // Another organisation's session shows its own page, none of the first's.
    let theirs = sign_in(&app, "other@example.com").await;
    let page = http
        .get(app.url("/app/"))
        .header(COOKIE, &theirs)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Quiet Neighbours") && !page.contains("125.50"));
    let _ = other;

    // The access token gone (expired, say): the refresh cookie renews the pair.
    let refresh_only = jar
        .split("; ")
        .filter(|c| !c.starts_with("iocloud_access="))
        .collect::<Vec<_>>()
        .join("; ");
    let renewed = http
        .get(app.url("/app/"))
        .header(COOKIE, &refresh_only)
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    let lines = set_cookies(&renewed);
    assert!(cookie(&lines, "iocloud_access").is_some());
    let jar = format!(
        "{csrf_cookie}; {}; {}",
        cookie(&lines, "iocloud_access").unwrap(),
        cookie(&lines, "iocloud_refresh").unwrap()
    );

    // Signing out needs the token too; then the session is over, its cookies with it.
    let res = http
        .post(app.url("/app/logout"))
        .header(COOKIE, &jar)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post(app.url("/app/logout"))
        .header(COOKIE, &jar)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        set_cookies(&res)
            .iter()
            .any(|l| l.starts_with("iocloud_access=;") && l.contains("Max-Age=0"))
    );
    let after = http
        .get(app.url("/app/"))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "the old cookies no longer sign in");
    app.stop().await;
}

async fn billing_shows_the_ledger_and_takes_deposits(b: Backend) {
    // Without Solana's settings: balances and the ledger, and deposits said to be off.
    let app = TestApp::spawn(b.clone()).await;
    let s = app.signup("owner@example.com", "Render Farm").await;
    app.grant_credit(&s.org_id, "40.00", "USD").await;
    let jar = sign_in(&app, "owner@example.com").await;
    let http = browser();
    let page = http
        .get(app.url("/app/billing"))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("not configured"), "{page}");
    assert!(
        page.contains("test grant") && page.contains("40.00"),
        "{page}"
    );
    app.stop().await;

    // On the crypto rail: a deposit asked for from the page, its request and QR code.
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    app.signup("owner@example.com", "Render Farm").await;
    app.signup("other@example.com", "Quiet Neighbours").await;
    let jar = sign_in(app, "owner@example.com").await;
    let theirs = sign_in(app, "other@example.com").await;
    let csrf = csrf_of(&jar);
    let ask = |jar: String, form: Vec<(&'static str, String)>| {
        let http = browser();
        let url = app.url("/app/billing/deposits");
        async move {
            http.post(url)
                .header(COOKIE, jar)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let forged = ask(
        jar.clone(),
        vec![("csrf", "forged".into()), ("currency", "IOSD".into())],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let bad = ask(
        jar.clone(),
        vec![
            ("csrf", csrf.clone()),
            ("currency", "IOSD".into()),
            ("amount", "-3".into()),
        ],
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("role=\"alert\""));
    assert_eq!(app.count("SELECT COUNT(*) FROM deposit_intents").await, 0);
    let made = ask(
        jar.clone(),
        vec![
            ("csrf", csrf.clone()),
            ("currency", "IOSD".into()),
            ("amount", "25".into()),
        ],
    )
    .await;
    assert_eq!(made.status(), 303);
    let at = made.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(at.starts_with("/app/billing/deposits/dep_"), "{at}");
    let page = http
        .get(app.url(&at))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "href=\"solana:{}?amount=25&amp;spl-token={}",
            chain.treasury, chain.iosd
        )),
        "{page}"
    );
    // Open, its state follows the chain by itself until it is credited.
    assert!(
        page.contains(&format!(r#"hx-get="{at}" hx-trigger="every 3s""#)),
        "{page}"
    );
    let qr = http
        .get(app.url(&format!("{at}/qr.svg")))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    // Another organisation's deposit is not there for them.
    for path in [at.clone(), format!("{at}/qr.svg")] {
        let res = http
            .get(app.url(&path))
            .header(COOKIE, &theirs)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let listed = http
        .get(app.url("/app/billing"))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(at.trim_start_matches("/app/billing/deposits/")));
    chain.stop().await;
}

/// A member (no billing rights) gets Home with its clusters and GPUs, and no money: not a
/// refusal of the whole page.
async fn members_see_home_without_the_money(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    app.grant_credit(&owner.org_id, "250", "USD").await;
    let sent = app
        .post(
            "/v1/invitations",
            Some(&owner.access),
            serde_json::json!({"email": "sam@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    let token = app.invitation_token("sam@example.com").await;
    let joined = app
        .post(
            "/v1/auth/signup",
            None,
            serde_json::json!({"email": "sam@example.com", "password": PASSWORD, "name": "Sam", "invitation": token}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    let jar = sign_in(&app, "sam@example.com").await;
    let (status, home) = page(&app, &jar, "/app/").await;
    assert_eq!(status, 200);
    assert!(home.contains("data-testid=\"money-hidden\""), "{home}");
    assert!(home.contains("data-testid=\"clusters-running\""), "{home}");
    assert!(!home.contains("250.00"), "no balance: {home}");
    // The owner sees the money.
    let jar = sign_in(&app, "owner@example.com").await;
    let (_, home) = page(&app, &jar, "/app/").await;
    assert!(home.contains("250.00"), "{home}");
    assert!(!home.contains("money-hidden"), "{home}");
}
