//! `Idempotency-Key`: replay with the same body, 422 with another, 409 while in flight.

use iocloud_tests::{Session, TestApp, on_both_engines};
use serde_json::json;
use sha2::{Digest, Sha256};

on_both_engines!(idempotent_replay_and_conflicts);
on_both_engines!(kept_answers_withhold_secrets_wherever_they_sit);
on_both_engines!(sign_ins_are_never_kept);
on_both_engines!(old_rows_are_swept_by_age);
on_both_engines!(a_request_that_outlives_its_client_keeps_its_answer);
on_both_engines!(an_internal_error_leaves_the_outcome_unknown);
on_both_engines!(a_running_request_renews_its_lease);

/// Postgres cut for a second under clients making API keys with `Idempotency-Key`s, each sending
/// its request again with its key while answered 503 or told its first attempt still runs. A
/// request the cut caught in the middle may have been committed before its answer was lost: its
/// retries are told the outcome is unknown (at most one per client, which had one request in
/// flight), and the client looks. Every other request ends made, none is made twice, and each
/// is in the audit log. (A SQLite file cannot be cut from its server, so Postgres only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_costs_keyed_retries_nothing() {
    let Some(b) = iocloud_tests::Backend::postgres() else {
        return;
    };
    const CLIENTS: usize = 6;
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let proxy = iocloud_tests::Proxy::start(iocloud_tests::address_of(app.db.url()).unwrap())
        .await
        .unwrap();
    let through = proxy.url_for(app.db.url());
    let replica = app
        .replica(|c| c.database_url = iocloud_db::DatabaseUrl::new(through.clone()))
        .await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (client, base, token) = (client.clone(), replica.base.clone(), s.access.clone());
            tokio::spawn(async move {
                let (mut made, mut unknown, mut failures) = (Vec::new(), Vec::new(), Vec::new());
                let mut n = 0;
                while started.elapsed() < std::time::Duration::from_secs(3) {
                    n += 1;
                    let key = format!("cut-{i}-{n}");
                    let body = json!({"name": key, "scopes": ["read"]});
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    let mut seen = Vec::new();
                    loop {
                        let res = client
                            .post(format!("{base}/v1/api-keys"))
                            .bearer_auth(&token)
                            .header("idempotency-key", &key)
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        let status = res.status().as_u16();
                        let answer: serde_json::Value = res.json().await.unwrap_or_default();
                        seen.push(format!("{status} {}", answer["code"]));
                        if status == 201 {
                            made.push(key);
                            break;
                        }
                        if answer["code"] == "idempotency_outcome_unknown" {
                            unknown.push(key);
                            break;
                        }
                        let again = status == 503 || answer["code"] == "idempotency_key_in_flight";
                        if !again || std::time::Instant::now() > deadline {
                            failures.push(format!("{key}: {}", seen.join(", ")));
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
                (made, unknown, failures)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    proxy.cut();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    proxy.restore();
    let (mut made, mut unknown, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for c in clients {
        let (m, u, f) = c.await.unwrap();
        made.extend(m);
        unknown.extend(u);
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(!made.is_empty());
    assert!(unknown.len() <= CLIENTS, "{unknown:?}");
    let names: Vec<String> = app
        .items("/v1/api-keys", &s.access)
        .await
        .iter()
        .filter_map(|k| k["name"].as_str().map(str::to_string))
        .collect();
    let times = |name: &str| names.iter().filter(|n| *n == name).count();
    for name in &made {
        assert_eq!(times(name), 1, "{name} answered 201 is made once");
    }
    for name in &unknown {
        assert!(times(name) <= 1, "{name} made twice");
    }
    // Every key answered 201 is in the audit log, though the cut came while some were being
    // recorded: those waited for the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audited = app
            .items("/v1/audit-events", &s.access)
            .await
            .iter()
            .filter(|e| e["action"] == "POST /v1/api-keys" && e["status"] == 201)
            .count();
        if audited >= made.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{audited} of {} keys made are in the audit log",
            made.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    replica.server.stop().await;
    app.stop().await;
}

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &str) -> iocloud_tests::Answer {
    let res = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    TestApp::answer(res).await
}

/// How many API keys the session's organisation has, as it lists them.
async fn keys(app: &TestApp, s: &Session) -> usize {
    app.items("/v1/api-keys", &s.access).await.len()
}

async fn idempotent_replay_and_conflicts(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let body = r#"{"name": "deploy", "scopes": ["read"]}"#;

    let first = post_with_key(&app, &s.access, "k-1", body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let replay = post_with_key(&app, &s.access, "k-1", body).await;
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.body["api_key"], first.body["api_key"],
        "the first answer"
    );
    assert!(first.body["secret"].is_string());
    assert!(
        replay.body["secret"].is_null(),
        "a secret is shown once, never replayed: {}",
        replay.text
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(keys(&app, &s).await, 1, "created once");

    let other = post_with_key(
        &app,
        &s.access,
        "k-1",
        r#"{"name": "other", "scopes": ["read"]}"#,
    )
    .await;
    other.assert_problem(422, "idempotency_key_reused");
    assert_eq!(keys(&app, &s).await, 1);

    // Refusals are kept too: a retry sees the same answer.
    let bad = post_with_key(&app, &s.access, "k-2", r#"{"name": "x", "scopes": []}"#).await;
    bad.assert_problem(422, "validation_failed");
    let bad_again = post_with_key(&app, &s.access, "k-2", r#"{"name": "x", "scopes": []}"#).await;
    assert_eq!(bad_again.body, bad.body);
    assert_eq!(bad_again.header("idempotent-replayed"), Some("true"));

    // A request still running with the key: 409, and nothing is created.
    let mut h = Sha256::new();
    h.update(format!("POST /v1/api-keys\n{body}"));
    let hash = hex::encode(h.finalize());
    let sql = format!(
        "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_at) VALUES ($1, 'k-3', '{hash}', 'in_flight', {now}, {now})",
        now = iocloud_db::time::now_micros()
    );
    app.exec(&sql, &format!("org:{}:user:{}", s.org_id, s.user_id))
        .await;
    post_with_key(&app, &s.access, "k-3", body)
        .await
        .assert_problem(409, "idempotency_key_in_flight");
    assert_eq!(keys(&app, &s).await, 1);

    // A claim abandoned (its replica crashed): the work may or may not have been done, so a
    // retry is told so rather than doing it a second time.
    app.exec(
        "UPDATE idempotency_keys SET locked_at = 1 WHERE key = $1",
        "k-3",
    )
    .await;
    post_with_key(&app, &s.access, "k-3", body)
        .await
        .assert_problem(409, "idempotency_outcome_unknown");
    assert_eq!(keys(&app, &s).await, 1);

    // Another member of the organisation reusing the key is not answered with ours.
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    let theirs = post_with_key(&app, &viewer.access, "k-1", body).await;
    theirs.assert_problem(403, "forbidden");
    assert!(theirs.header("idempotent-replayed").is_none());

    // Keys are per organisation: another tenant's "k-1" is a new request.
    let bee = app.signup("bee@example.com", "Bee").await;
    let theirs = post_with_key(&app, &bee.access, "k-1", body).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["api_key"]["id"], first.body["api_key"]["id"]);
    assert!(theirs.header("idempotent-replayed").is_none());

    // Kept for 24 hours, then the key is free again.
    app.exec(
        "UPDATE idempotency_keys SET created_at = 1 WHERE scope = $1",
        &format!("org:{}:user:{}", s.org_id, s.user_id),
    )
    .await;
    let later = post_with_key(
        &app,
        &s.access,
        "k-1",
        r#"{"name": "new day", "scopes": ["read"]}"#,
    )
    .await;
    assert_eq!(later.status, 201, "{}", later.text);
    app.stop().await;
}

/// A POST with an `Idempotency-Key` to any path, as `token` (or anonymously).
async fn keyed(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: &serde_json::Value,
) -> iocloud_tests::Answer {
    let mut req = app
        .client
        .post(app.url(path))
        .header("idempotency-key", key)
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    TestApp::answer(req.send().await.unwrap()).await
}

/// No kept answer may hold a secret: counts rows whose text holds one of these values.
async fn kept_with(app: &TestApp, secret: &str) -> i64 {
    app.scalar(
        "SELECT CAST(COUNT(*) AS TEXT) FROM idempotency_keys WHERE body LIKE '%' || $1 || '%'",
        secret,
    )
    .await
    .parse()
    .unwrap()
}

async fn kept_answers_withhold_secrets_wherever_they_sit(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;

    // REST: a device's agent token.
    let rig = json!({"name": "rig-1", "gpu_model": "h100-sxm", "gpu_count": 8, "cpu_cores": 64,
        "ram_gib": 512, "disk_gib": 2000, "region": "eu-central", "country": "DE",
        "location": {"lat": 50.11, "lon": 8.68}, "bandwidth_mbps": {"up": 1000, "down": 1000},
        "price_per_gpu_hour": "2.10"});
    let first = keyed(&app, "/v1/devices", Some(&s.access), "dev-1", &rig).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let token = first.body["token"].as_str().unwrap().to_string();
    let again = keyed(&app, "/v1/devices", Some(&s.access), "dev-1", &rig).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"], "the same device");
    assert!(
        again.body.get("token").is_some_and(|t| t.is_null()),
        "the token is present and null: {}",
        again.text
    );
    assert_eq!(again.header("idempotent-withheld"), Some("/token"));
    assert_eq!(kept_with(&app, &token).await, 0, "the token is not stored");

    // GraphQL: an API key's secret, under an alias the server cannot guess by name.
    let create = json!({"query": "mutation { made: createApiKey(name: \"ci\", scopes: [\"read\"]) { k: secret apiKey { id } } }"});
    let first = keyed(&app, "/graphql", Some(&s.access), "gql-1", &create).await;
    let secret = first.body["data"]["made"]["k"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", first.text))
        .to_string();
    let again = keyed(&app, "/graphql", Some(&s.access), "gql-1", &create).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body["data"]["made"]["apiKey"],
        first.body["data"]["made"]["apiKey"]
    );
    assert!(
        again.body["data"]["made"]
            .get("k")
            .is_some_and(|k| k.is_null()),
        "{}",
        again.text
    );
    assert_eq!(again.header("idempotent-withheld"), Some("/data/made/k"));
    assert_eq!(
        kept_with(&app, &secret).await,
        0,
        "the secret is not stored"
    );
    assert_eq!(keys(&app, &s).await, 1, "created once");

    // An answer without a secret says nothing was withheld.
    let plain = json!({"query": "mutation { updateOrganization(name: \"Acme Corp\") { name } }"});
    keyed(&app, "/graphql", Some(&s.access), "gql-2", &plain).await;
    let again = keyed(&app, "/graphql", Some(&s.access), "gql-2", &plain).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body["data"]["updateOrganization"]["name"],
        "Acme Corp"
    );
    assert!(again.header("idempotent-withheld").is_none());
    app.stop().await;
}

async fn sign_ins_are_never_kept(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let signup = json!({"query": "mutation { signUp(email: \"ada@example.com\", password: \"correct horse battery staple\", name: \"Ada\", orgName: \"Acme\") { accessToken } }"});
    let first = keyed(&app, "/graphql", None, "in-1", &signup).await;
    assert!(
        first.body["data"]["signUp"]["accessToken"].is_string(),
        "{}",
        first.text
    );

    // A log-in hidden in a fragment, anonymous (its key would be kept by client address).
    let login = json!({"query": "mutation { ...L } fragment L on MutationRoot { s: logIn(email: \"ada@example.com\", password: \"correct horse battery staple\") { t: refreshToken } }"});
    let one = keyed(&app, "/graphql", None, "in-2", &login).await;
    let two = keyed(&app, "/graphql", None, "in-2", &login).await;
    let (t1, t2) = (&one.body["data"]["s"]["t"], &two.body["data"]["s"]["t"]);
    assert!(
        t1.is_string() && t2.is_string(),
        "{} {}",
        one.text,
        two.text
    );
    assert_ne!(t1, t2, "each log-in is its own session");
    assert!(two.header("idempotent-replayed").is_none());

    // REST sign-in routes likewise.
    let login = json!({"email": "ada@example.com", "password": "correct horse battery staple"});
    keyed(&app, "/v1/auth/login", None, "in-3", &login).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys").await,
        0,
        "nothing kept"
    );
    app.stop().await;
}

async fn old_rows_are_swept_by_age(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.retention_sweep_interval_secs = 1).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let body = json!({"name": "deploy", "scopes": ["read"]});
    for key in ["old", "new"] {
        keyed(&app, "/v1/api-keys", Some(&s.access), key, &body).await;
    }
    let day = 24 * 3600 * 1_000_000_i64;
    let now = iocloud_db::time::now_micros();
    app.exec(
        &format!(
            "UPDATE idempotency_keys SET created_at = {}, locked_at = {} WHERE key = $1",
            now - day - 1_000_000,
            now - day - 1_000_000
        ),
        "old",
    )
    .await;
    // Quotes: one long past its expiry, one expired a moment ago (still answers "expired").
    for (id, expired) in [
        ("pq_old", now - 2 * 3600 * 1_000_000),
        ("pq_recent", now - 1_000_000),
    ] {
        app.exec(
            &format!(
                "INSERT INTO price_quotes (id, org_id, usd_amount, currency, amount, created_at, expires_at) \
                 VALUES ($1, '{}', 1, 'USD', 1, {expired}, {expired})",
                s.org_id
            ),
            id,
        )
        .await;
        app.exec(
            &format!(
                "INSERT INTO placement_quotes (id, org_id, request, quote, created_at, expires_at) \
                 VALUES ($1, '{}', '{{}}', '{{}}', {expired}, {expired})",
                s.org_id
            ),
            &id.replace("pq", "plq"),
        )
        .await;
    }
    // The outbox: an email logged two days ago and one just now.
    for (id, at) in [("eml_old", now - 2 * day), ("eml_new", now)] {
        app.exec(
            &format!(
                "INSERT INTO email_outbox (id, recipient, subject, body, created_at) VALUES ($1, 'x@example.com', 's', 'b', {at})"
            ),
            id,
        )
        .await;
    }

    let swept = async {
        loop {
            let left = app
                .count("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'old'")
                .await
                + app
                    .count("SELECT COUNT(*) FROM price_quotes WHERE id = 'pq_old'")
                    .await
                + app
                    .count("SELECT COUNT(*) FROM placement_quotes WHERE id = 'plq_old'")
                    .await
                + app
                    .count("SELECT COUNT(*) FROM email_outbox WHERE id = 'eml_old'")
                    .await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), swept)
        .await
        .expect("the background sweep deletes old rows");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'new'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM price_quotes WHERE id = 'pq_recent'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM placement_quotes WHERE id = 'plq_recent'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE id = 'eml_new'")
            .await,
        1
    );
    // A key whose record was swept is free again.
    let again = keyed(&app, "/v1/api-keys", Some(&s.access), "old", &body).await;
    assert_eq!(again.status, 201);
    assert!(again.header("idempotent-replayed").is_none());
    app.stop().await;
}

/// The time limit (or a client hanging up) does not stop a request: it finishes, its answer is
/// kept, and the retry gets that answer rather than a second API key or a stuck key.
async fn a_request_that_outlives_its_client_keeps_its_answer(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.request_timeout_secs = 1).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let body = json!({"name": "slow", "scopes": ["read"]});

    // Hold the database's write lock (SQLite) or the keys' table (Postgres) past the time limit.
    let mut tx = app.server.state.control.db.begin().await.unwrap();
    if matches!(tx, iocloud_db::Tx::Postgres(_)) {
        iocloud_db::tx_run!(&mut tx, |c| sqlx::query(
            "LOCK TABLE api_keys IN EXCLUSIVE MODE"
        )
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .unwrap();
    }
    let first = keyed(&app, "/v1/api-keys", Some(&s.access), "slow-1", &body).await;
    first.assert_problem(408, "timeout");
    tx.rollback().await.unwrap();

    // The request goes on once the lock is free, and keeps its answer.
    let kept = async {
        while app
            .count("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'slow-1' AND state = 'done'")
            .await
            == 0
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), kept)
        .await
        .expect("the request that timed out finished and kept its answer");
    let replayed = keyed(&app, "/v1/api-keys", Some(&s.access), "slow-1", &body).await;
    assert_eq!(replayed.status, 201, "{}", replayed.text);
    assert_eq!(
        replayed.header("idempotent-replayed"),
        Some("true"),
        "the answer of the request that timed out: {}",
        replayed.text
    );
    assert_eq!(replayed.header("idempotent-withheld"), Some("/secret"));
    assert_eq!(keys(&app, &s).await, 1);
    app.stop().await;
}

async fn statement(app: &TestApp, sql: &str) {
    iocloud_db::db_run!(&app.server.state.control.db, |p| sqlx::query(sql)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .expect("statement");
}

/// An internal error may come after the work was done: the retry is not run again.
async fn an_internal_error_leaves_the_outcome_unknown(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let body = json!({"name": "deploy", "scopes": ["read"]});
    statement(&app, "ALTER TABLE api_keys RENAME TO api_keys_away").await;
    keyed(&app, "/v1/api-keys", Some(&s.access), "err-1", &body)
        .await
        .assert_problem(500, "internal");
    statement(&app, "ALTER TABLE api_keys_away RENAME TO api_keys").await;
    keyed(&app, "/v1/api-keys", Some(&s.access), "err-1", &body)
        .await
        .assert_problem(409, "idempotency_outcome_unknown");
    assert_eq!(keys(&app, &s).await, 0);
    // A new key runs.
    let fresh = keyed(&app, "/v1/api-keys", Some(&s.access), "err-2", &body).await;
    assert_eq!(fresh.status, 201, "{}", fresh.text);
    app.stop().await;
}

/// The domain's records: a live request renews its lease and stays "in flight"; one whose lease
/// lapsed (its process died) leaves the outcome unknown.
async fn a_running_request_renews_its_lease(b: iocloud_tests::Backend) {
    use iocloud_control::idempotency::{
        Answer, Claim, IdempotencyKey, KeyScope, RequestFingerprint,
    };
    let app = TestApp::spawn(b).await;
    let records = app.server.state.control.idempotency.clone();
    let scope = KeyScope::address(None);
    let key = IdempotencyKey::parse("lease-1").unwrap();
    let request = RequestFingerprint::of("POST", "/v1/things", b"{}");
    let claim = || records.claim(&scope, &key, &request);

    let Claim::Run(lease) = claim().await.unwrap() else {
        panic!("a new key runs");
    };
    assert!(matches!(claim().await.unwrap(), Claim::InFlight));
    app.exec(
        "UPDATE idempotency_keys SET locked_at = 1 WHERE key = $1",
        "lease-1",
    )
    .await;
    assert!(matches!(claim().await.unwrap(), Claim::OutcomeUnknown));
    records.renew(&lease).await.unwrap();
    assert!(matches!(claim().await.unwrap(), Claim::InFlight));

    let secret = iocloud_control::secrets::generate("ioc_");
    let answer = Answer {
        status: 201,
        content_type: Some("application/json".into()),
        body: json!({"id": "key_1", "secret": secret}).to_string(),
    };
    assert_eq!(records.keep(lease, &answer).await.unwrap(), ["/secret"]);
    let Claim::Replay(kept) = claim().await.unwrap() else {
        panic!("answered");
    };
    assert_eq!(kept.status, 201);
    assert_eq!(kept.withheld, ["/secret"]);
    assert!(!kept.body.contains(&secret));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&kept.body).unwrap(),
        json!({"id": "key_1", "secret": null})
    );
    app.stop().await;
}
