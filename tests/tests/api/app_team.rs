//! The console's Team section and sign-up: renaming, inviting (the accept link shown when no
//! email is sent), signing up with an invitation, roles and removal, switching and creating
//! organisations, API keys whose secret is shown once, the audit log; every form refused
//! without its CSRF token, every other organisation's id answered as missing.

use super::console_client::{
    browser, cookie, csrf_in, csrf_of, open, page as get, set_cookies, sign_in, submit,
};
use iocloud_tests::{Backend, PASSWORD, TestApp, on_both_engines, rig};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::json;

on_both_engines!(
    owners_run_the_team_from_the_console,
    api_keys_show_their_secret_once_and_revoke,
    invitations_are_accepted_signed_in_or_by_signing_up,
    what_an_organisation_does_leads_the_top_bar
);

/// Posts a form with `csrf` as its token and `fields`.
async fn post_with(
    app: &TestApp,
    jar: &str,
    path: &str,
    csrf: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    submit(app, jar, path, &form).await
}

/// Posts a form as the page would: with the jar's own CSRF token.
async fn post(app: &TestApp, jar: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    post_with(app, jar, path, &csrf_of(jar), fields).await
}

/// The jar after an answer that set a new session: the same CSRF cookie, the new tokens.
fn renewed(jar: &str, res: &reqwest::Response) -> String {
    let lines = set_cookies(res);
    format!(
        "csrf={}; {}; {}",
        csrf_of(jar),
        cookie(&lines, "iocloud_access").expect("a new access token"),
        cookie(&lines, "iocloud_refresh").expect("a new refresh token")
    )
}

fn location(res: &reqwest::Response) -> &str {
    res.headers()[LOCATION].to_str().unwrap()
}

/// Erin's sign-up form, with `csrf` as its token.
fn erin<'a>(csrf: &'a str, password: &'a str, email: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("csrf", csrf),
        ("name", "Erin"),
        ("email", email),
        ("password", password),
        ("org_name", "Erin Labs"),
    ]
}

/// The invitation token in the accept link a page shows.
fn token_in(page: &str) -> String {
    let link = "/app/invitations/accept?token=";
    let at = page.find(link).expect("an accept link") + link.len();
    page[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

async fn owners_run_the_team_from_the_console(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    let other = app.signup("other@example.com", "Quiet Neighbours").await;
    let jar = sign_in(&app, "owner@example.com").await;

    let (status, page) = get(&app, &jar, "/app/team").await;
    assert!(
        page.contains("data-testid=\"quota\"") && page.contains("Live clusters"),
        "the Team page shows the limits: {page}"
    );
    assert_eq!(status, 200);
    assert!(
        page.contains("<dd data-testid=\"org-name\">Render Farm</dd>"),
        "{page}"
    );
    assert!(page.contains("owner@example.com") && !page.contains("Quiet Neighbours"));

    // A forged token renames nothing; the page's own does.
    let res = post_with(
        &app,
        &jar,
        "/app/team/org",
        "forged",
        &[("name", "Hijacked")],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        app.get("/v1/org", &owner.access).await.body["name"],
        "Render Farm"
    );
    let res = post(&app, &jar, "/app/team/org", &[("name", "Render Farm & Co")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=renamed");
    let (_, page) = get(&app, &jar, "/app/team?done=renamed").await;
    assert!(
        page.contains("Render Farm &amp; Co") && page.contains("The organisation was renamed.")
    );
    // A notice is one of the page's own sentences, never text from the link.
    let (_, page) = get(&app, &jar, "/app/team?done=%3Cb%3Ehacked").await;
    assert!(!page.contains("hacked"));
    // An empty name is refused in words, and changes nothing.
    let res = post(&app, &jar, "/app/team/org", &[("name", "  ")]).await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Name: must not be empty.")
    );

    // Inviting without a mail server: the accept link is on the answer, once.
    let res = post(
        &app,
        &jar,
        "/app/team/invitations",
        &[("email", "bob@example.com"), ("role", "member")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let token = token_in(&page);
    assert_eq!(token, app.invitation_token("bob@example.com").await);
    let (_, page) = get(&app, &jar, "/app/team").await;
    assert!(page.contains("bob@example.com") && page.contains("pending"));
    assert!(!page.contains(&token), "the link is shown once");
    // The same address again: refused while the first is pending.
    let res = post(
        &app,
        &jar,
        "/app/team/invitations",
        &[("email", "bob@example.com"), ("role", "member")],
    )
    .await;
    assert_eq!(res.status(), 409);

    // Bob signs up with it: no organisation of his own, straight into this one.
    let http = browser();
    let form = http
        .get(app.url(&format!("/app/signup?invitation={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let csrf_cookie = cookie(&set_cookies(&form), "csrf").expect("a CSRF cookie");
    let page = form.text().await.unwrap();
    assert!(page.contains("name=\"invitation\"") && !page.contains("name=\"org_name\""));
    let res = http
        .post(app.url("/app/signup"))
        .header(COOKIE, &csrf_cookie)
        .form(&[
            ("csrf", csrf_in(&page).as_str()),
            ("name", "Bob"),
            ("email", "bob@example.com"),
            ("password", PASSWORD),
            ("invitation", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/");
    let bob_jar = renewed(&csrf_cookie, &res);
    let (status, page) = get(&app, &bob_jar, "/app/team").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<dd data-testid=\"org-name\">Render Farm &amp; Co</dd>"),
        "{page}"
    );
    assert!(page.contains("Only owners and admins can read the audit log."));
    assert!(!page.contains("Rename organisation"));

    // A member may not rename: refused in words, nothing changed.
    let res = post(&app, &bob_jar, "/app/team/org", &[("name", "Bob's Farm")]).await;
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("does not allow changing the organisation"),
        "{page}"
    );
    assert_eq!(
        app.get("/v1/org", &owner.access).await.body["name"],
        "Render Farm & Co"
    );

    // The owner makes Bob an admin, then removes him; his console session ends with it.
    let bob = app
        .scalar("SELECT id FROM users WHERE email = $1", "bob@example.com")
        .await;
    let res = post(
        &app,
        &jar,
        &format!("/app/team/members/{bob}/role"),
        &[("role", "admin")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=role");
    let member = app.get(&format!("/v1/members/{bob}"), &owner.access).await;
    assert_eq!(member.body["role"], "admin", "{}", member.text);
    let res = post(&app, &jar, &format!("/app/team/members/{bob}/remove"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=removed");
    assert_eq!(
        app.get(&format!("/v1/members/{bob}"), &owner.access)
            .await
            .status,
        404
    );
    let (status, _) = get(&app, &bob_jar, "/app/team").await;
    assert_eq!(status, 303, "a removed member is signed out");

    // Another organisation's member, invitation and key: missing here, and untouched.
    let theirs = app
        .post(
            "/v1/invitations",
            Some(&other.access),
            json!({"email": "carol@example.com", "role": "viewer"}),
        )
        .await;
    let their_invitation = theirs.body["id"].as_str().unwrap().to_string();
    let (their_key, their_secret) = app.api_key(&other.access, &["read"]).await;
    for (path, fields) in [
        (
            format!("/app/team/members/{}/role", other.user_id),
            vec![("role", "viewer")],
        ),
        (
            format!("/app/team/members/{}/remove", other.user_id),
            vec![],
        ),
        (
            format!("/app/team/invitations/{their_invitation}/revoke"),
            vec![],
        ),
        (format!("/app/team/keys/{their_key}/revoke"), vec![]),
    ] {
        let res = post(&app, &jar, &path, &fields).await;
        assert_eq!(res.status(), 404, "{path}");
        assert!(res.text().await.unwrap().contains("There is no such"));
    }
    let me = app.get("/v1/me", &other.access).await;
    assert_eq!(me.body["role"], "owner");
    let inv = app
        .get(
            &format!("/v1/invitations/{their_invitation}"),
            &other.access,
        )
        .await;
    assert_eq!(inv.body["status"], "pending");
    assert_eq!(app.get("/v1/me", &their_secret).await.status, 200);

    // Switching to an organisation one is not a member of: refused, the session stays (its
    // refresh token still renews it).
    let res = post(
        &app,
        &jar,
        "/app/team/switch",
        &[("org_id", other.org_id.as_str())],
    )
    .await;
    assert_eq!(res.status(), 404);
    assert!(cookie(&set_cookies(&res), "iocloud_access").is_none());
    let refresh_only = jar
        .split("; ")
        .filter(|c| !c.starts_with("iocloud_access="))
        .collect::<Vec<_>>()
        .join("; ");
    let res = browser()
        .get(app.url("/app/team"))
        .header(COOKIE, &refresh_only)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let jar = renewed(&jar, &res);
    assert!(res.text().await.unwrap().contains("Render Farm &amp; Co"));

    // A new organisation: made, and the session moves to it; then back by switching.
    let res = post(&app, &jar, "/app/team/orgs", &[("name", "Second Shop")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=created");
    let jar = renewed(&jar, &res);
    let (_, page) = get(&app, &jar, "/app/team?done=created").await;
    assert!(
        page.contains("<dd data-testid=\"org-name\">Second Shop</dd>"),
        "{page}"
    );
    assert!(page.contains("Render Farm &amp; Co") && page.contains("Switch"));
    let res = post(
        &app,
        &jar,
        "/app/team/switch",
        &[("org_id", owner.org_id.as_str())],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=switched");
    let jar = renewed(&jar, &res);
    let (_, page) = get(&app, &jar, "/app/team").await;
    assert!(
        page.contains("<dd data-testid=\"org-name\">Render Farm &amp; Co</dd>"),
        "{page}"
    );
    app.stop().await;
}

async fn api_keys_show_their_secret_once_and_revoke(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    let jar = sign_in(&app, "owner@example.com").await;

    // Made from the form: the secret on the answer itself (no redirect, never cached).
    let res = post(
        &app,
        &jar,
        "/app/team/keys",
        &[
            ("name", "ci deploy"),
            ("scope_read", "on"),
            ("scope_write", "on"),
            ("expires_in_days", "30"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(LOCATION).is_none());
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    assert!(page.contains("shown this once"));
    let at = page.find("value=\"ioc_").expect("the secret") + 7;
    let secret: String = page[at..].chars().take_while(|c| *c != '"').collect();
    let key = app
        .scalar("SELECT id FROM api_keys WHERE name = $1", "ci deploy")
        .await;

    // The list shows the key, never its secret again.
    let (_, page) = get(&app, &jar, "/app/team").await;
    assert!(page.contains("ci deploy") && page.contains(&secret[..12]));
    assert!(page.contains("read, write"));
    assert!(!page.contains(&secret));

    // It works until revoked; a forged revocation does nothing.
    let me = app.get("/v1/me", &secret).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["api_key"]["id"], key.as_str());
    let res = post_with(
        &app,
        &jar,
        &format!("/app/team/keys/{key}/revoke"),
        "forged",
        &[],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(app.get("/v1/me", &secret).await.status, 200);
    let res = post(&app, &jar, &format!("/app/team/keys/{key}/revoke"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=key_revoked");
    app.get("/v1/me", &secret)
        .await
        .assert_problem(401, "invalid_token");
    let (_, page) = get(&app, &jar, "/app/team?done=key_revoked").await;
    assert!(page.contains("revoked"));

    // Bad input is refused in words and makes nothing.
    let keys = || async { app.items("/v1/api-keys", &owner.access).await.len() };
    let before = keys().await;
    for fields in [
        vec![("name", "no scopes")],
        vec![
            ("name", "bad expiry"),
            ("scope_read", "on"),
            ("expires_in_days", "soon"),
        ],
        vec![
            ("name", "too long"),
            ("scope_read", "on"),
            ("expires_in_days", "5000"),
        ],
    ] {
        let res = post(&app, &jar, "/app/team/keys", &fields).await;
        assert_eq!(res.status(), 422, "{fields:?}");
        let page = res.text().await.unwrap();
        assert!(page.contains("role=\"alert\""), "{page}");
        assert!(!page.contains("value=\"ioc_"));
    }
    assert_eq!(keys().await, before);

    // The audit log: the organisation's events, a page at a time (a stray cursor starts over).
    let (status, page) = get(&app, &jar, "/app/team").await;
    assert_eq!(status, 200);
    assert!(page.contains("POST /v1/auth/signup"), "{page}");
    let (status, page) = get(&app, &jar, "/app/team?audit_after=not-a-cursor").await;
    assert_eq!(status, 200);
    assert!(page.contains("POST /v1/auth/signup"));
    app.stop().await;
}

async fn invitations_are_accepted_signed_in_or_by_signing_up(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.signup("owner@example.com", "Render Farm").await;
    let carol = app.signup("carol@example.com", "Carol Lab").await;
    app.signup("dave@example.com", "Dave Works").await;
    let jar = sign_in(&app, "owner@example.com").await;
    let res = post(
        &app,
        &jar,
        "/app/team/invitations",
        &[("email", "carol@example.com"), ("role", "viewer")],
    )
    .await;
    let token = token_in(&res.text().await.unwrap());
    let accept = format!("/app/invitations/accept?token={token}");

    // Signed out: sign up with it, or sign in first.
    let (status, page) = get(&app, "", &accept).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("/app/signup?invitation={token}")));
    assert!(page.contains("href=\"/app/login\""));
    let (status, page) = get(&app, "", "/app/invitations/accept?token=%3Cscript%3E").await;
    assert_eq!(status, 404);
    assert!(!page.contains("<script>"));

    // Signed in as someone else: refused in words, and the invitation still waits.
    let dave_jar = sign_in(&app, "dave@example.com").await;
    let res = post(
        &app,
        &dave_jar,
        "/app/invitations/accept",
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(res.status(), 404);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("sent to another email address")
    );

    // Signed in as Carol: a button to accept; a forged token does nothing.
    let carol_jar = sign_in(&app, "carol@example.com").await;
    let (status, page) = get(&app, &carol_jar, &accept).await;
    assert_eq!(status, 200);
    assert!(page.contains("Accept the invitation") && page.contains("carol@example.com"));
    let res = post_with(
        &app,
        &carol_jar,
        "/app/invitations/accept",
        "forged",
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(res.status(), 403);
    let me = app.get("/v1/me", &carol.access).await;
    assert_eq!(me.body["memberships"].as_array().unwrap().len(), 1);

    // Accepted: a member, and the session works there now.
    let res = post(
        &app,
        &carol_jar,
        "/app/invitations/accept",
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/team?done=joined");
    let carol_jar = renewed(&carol_jar, &res);
    let (_, page) = get(&app, &carol_jar, "/app/team?done=joined").await;
    assert!(
        page.contains("<dd data-testid=\"org-name\">Render Farm</dd>"),
        "{page}"
    );
    assert!(page.contains("You joined the organisation") && page.contains("Carol Lab"));
    let me = app.get("/v1/me", &carol.access).await;
    assert_eq!(me.body["memberships"].as_array().unwrap().len(), 2);
    // Once only.
    let res = post(
        &app,
        &carol_jar,
        "/app/invitations/accept",
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(res.status(), 409);

    // Signing up: the CSRF token is needed, and refusals are said in words.
    let http = browser();
    let form = http.get(app.url("/app/signup")).send().await.unwrap();
    let csrf_cookie = cookie(&set_cookies(&form), "csrf").unwrap();
    let csrf = csrf_in(&form.text().await.unwrap());
    let res = http
        .post(app.url("/app/signup"))
        .header(COOKIE, &csrf_cookie)
        .form(&erin("forged", PASSWORD, "erin@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for (password, email, status, words) in [
        (
            "short",
            "erin@example.com",
            422u16,
            "Password: must be at least 10 characters.",
        ),
        (PASSWORD, "carol@example.com", 409, "already exists"),
    ] {
        let res = http
            .post(app.url("/app/signup"))
            .header(COOKIE, &csrf_cookie)
            .form(&erin(&csrf, password, email))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        let page = res.text().await.unwrap();
        assert!(page.contains(words), "{page}");
        assert!(
            page.contains("value=\"Erin Labs\""),
            "what was typed is kept"
        );
    }
    let res = http
        .post(app.url("/app/signup"))
        .header(COOKIE, &csrf_cookie)
        .form(&erin(&csrf, PASSWORD, "erin@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let erin_jar = renewed(&csrf_cookie, &res);
    let (_, page) = get(&app, &erin_jar, "/app/team").await;
    assert!(
        page.contains("<dd data-testid=\"org-name\">Erin Labs</dd>"),
        "{page}"
    );
    app.stop().await;
}

/// The brand and the sections of the top bar, as a page draws them.
fn top_bar(page: &str) -> &str {
    let start = page.find("<header class=\"topbar\"").expect("a top bar");
    let end = page[start..].find("</header>").expect("its end") + start;
    &page[start..end]
}

async fn what_an_organisation_does_leads_the_top_bar(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ivy = app.signup("ivy@example.com", "Ivy Labs").await;
    let jar = sign_in(&app, "ivy@example.com").await;

    // New, it rents: IO Cloud, with the way to start providing; no switch of either kind.
    let (status, home) = get(&app, &jar, "/app/").await;
    assert_eq!(status, 200);
    let bar = top_bar(&home);
    assert!(
        bar.contains(r#"class="brand" href="/app/">IO Cloud<"#),
        "{bar}"
    );
    assert!(bar.contains(r#"href="/app/clusters""#), "{bar}");
    assert!(bar.contains(">Provide GPUs<"), "{bar}");
    assert!(!bar.contains(r#"aria-label="Products""#), "{bar}");
    assert!(!bar.contains("switch-org"), "one organisation: {bar}");

    // With a device and no rental, it is a provider: IO Worker first, its own sections.
    let added = app
        .post("/v1/devices", Some(&ivy.access), rig("rig-1"))
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let res = open(&app, &jar, "/app/").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/worker");
    for path in ["/app/worker", "/app/billing", "/app/team"] {
        let (status, page) = get(&app, &jar, path).await;
        assert_eq!(status, 200, "{path}");
        let bar = top_bar(&page);
        assert!(bar.contains(">IO Worker<"), "{path}: {bar}");
        assert!(!bar.contains(r#"href="/app/clusters""#), "{path}: {bar}");
        assert!(bar.contains(">Rent GPUs<"), "{path}: {bar}");
    }

    // Once it has rented too, every page offers the switch between the two.
    app.exec(
        "INSERT INTO clusters (id, org_id, name, kind, spec, generation, resource_version, status, \
         currency, gpus, price_per_hour, spend_per_hour, usd_per_unit, duration_hours, join_token, \
         created_at, updated_at) VALUES ('clu_before', $1, 'before', 'ray', '{}', 1, 1, \
         'terminated', 'USD', 8, 0, 0, 1000000, 1, 'spent', 0, 0)",
        &ivy.org_id,
    )
    .await;
    let (status, home) = get(&app, &jar, "/app/").await;
    assert_eq!(status, 200);
    let bar = top_bar(&home);
    assert!(bar.contains(r#"aria-label="Products""#), "{bar}");
    assert!(
        bar.contains(r#"href="/app/" aria-current="true">IO Cloud<"#),
        "{bar}"
    );
    assert!(
        !bar.contains("Rent GPUs") && !bar.contains("Provide GPUs"),
        "{bar}"
    );
    let (_, worker) = get(&app, &jar, "/app/worker").await;
    assert!(
        top_bar(&worker).contains(r#"href="/app/worker" aria-current="true">IO Worker<"#),
        "{}",
        top_bar(&worker)
    );

    // In a second organisation: the switcher lists both and lands on the other's home.
    let other = app
        .post("/v1/orgs", Some(&ivy.access), json!({"name": "Ivy Two"}))
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let other_id = other.body["id"].as_str().unwrap().to_string();
    let (_, home) = get(&app, &jar, "/app/").await;
    let bar = top_bar(&home);
    assert!(bar.contains(r#"id="switch-org""#), "{bar}");
    assert!(
        bar.contains(">Ivy Two<") && bar.contains(">Ivy Labs<"),
        "{bar}"
    );
    let res = post(
        &app,
        &jar,
        "/app/team/switch",
        &[("org_id", &other_id), ("then", "home")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/");
    let jar = renewed(&jar, &res);
    let (_, home) = get(&app, &jar, "/app/").await;
    assert!(home.contains("Ivy Two (owner)"), "{}", top_bar(&home));
    // Someone else's organisation is not one to switch to; the session stays where it was.
    let stranger = app.signup("stranger@example.com", "Elsewhere").await;
    let res = post(
        &app,
        &jar,
        "/app/team/switch",
        &[("org_id", &stranger.org_id), ("then", "home")],
    )
    .await;
    assert_ne!(res.status(), 303);
    let (_, home) = get(&app, &jar, "/app/").await;
    assert!(home.contains("Ivy Two (owner)"), "{}", top_bar(&home));
}
