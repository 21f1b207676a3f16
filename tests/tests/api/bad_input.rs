//! Every bad input gets a clear 4xx problem and writes nothing.

use iocloud_tests::{PASSWORD, TestApp, on_both_engines};
use serde_json::{Value, json};

on_both_engines!(
    bad_bodies_are_refused_and_change_nothing,
    unknown_routes_and_bad_cursors,
    names_that_display_other_than_they_read_are_refused,
    bodies_that_are_not_objects_are_refused
);

/// A body is a JSON object: an array of a struct's fields in order (which serde would read as
/// the struct), a scalar or nothing at all is refused, and nothing changes.
async fn bodies_that_are_not_objects_are_refused(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let send = |method: &str, path: &str, body: &'static str| {
        let req = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&s.access)
            .header("content-type", "application/json")
            .body(body);
        async move { TestApp::answer(req.send().await.unwrap()).await }
    };
    let before = app.get("/v1/org", &s.access).await.body;
    for body in [
        "[null, null]",
        "[\"Evil Corp\"]",
        "\"Evil Corp\"",
        "42",
        "null",
    ] {
        for (method, path) in [("PATCH", "/v1/org"), ("POST", "/v1/api-keys")] {
            send(method, path, body)
                .await
                .assert_problem(422, "invalid_body");
        }
    }
    for body in ["[1,", "", "nonsense"] {
        send("PATCH", "/v1/org", body)
            .await
            .assert_problem(400, "malformed_json");
    }
    assert_eq!(app.get("/v1/org", &s.access).await.body, before);
    assert_eq!(
        app.items("/v1/api-keys", &s.access).await,
        Vec::<Value>::new()
    );
}

/// Bidirectional overrides and isolates, zero-width characters, the byte-order mark and control
/// characters make a name show other than it reads (`rig\u{202E}1-gpu` looks like `rigupg-1`).
/// Every place that takes a name refuses them alike, and writes nothing.
async fn names_that_display_other_than_they_read_are_refused(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let rig = |name: &str| {
        json!({"name": name, "gpu_model": "h100-sxm", "gpu_count": 8, "cpu_cores": 64, "ram_gib": 512,
            "disk_gib": 2000, "region": "eu-central", "country": "DE", "location": {"lat": 50.11, "lon": 8.68},
            "bandwidth_mbps": {"up": 1000, "down": 1000}, "price_per_gpu_hour": "2.10"})
    };
    for c in [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}',
        '\u{2060}', '\u{FEFF}', '\u{1B}',
    ] {
        let name = format!("rig{c}1-gpu");
        let answers = [
            app.patch("/v1/org", &s.access, json!({"name": name})).await,
            app.post(
                "/v1/auth/signup",
                None,
                json!({"email": "eve@example.com", "password": PASSWORD, "name": name, "org_name": "Eve"}),
            )
            .await,
            app.post(
                "/v1/auth/signup",
                None,
                json!({"email": "eve@example.com", "password": PASSWORD, "name": "Eve", "org_name": name}),
            )
            .await,
            app.post(
                "/v1/api-keys",
                Some(&s.access),
                json!({"name": name, "scopes": ["read"]}),
            )
            .await,
            app.post(
                "/v1/clusters",
                Some(&s.access),
                json!({"name": name, "kind": "container", "image": "busybox", "gpu_model": "h100-sxm",
                       "gpu_count": 8, "duration_hours": 1}),
            )
            .await,
            app.post("/v1/devices", Some(&s.access), rig(&name)).await,
        ];
        for a in answers {
            a.assert_problem(422, "invisible_characters");
            assert_eq!(
                a.body["field"].as_str().map(|f| f.ends_with("name")),
                Some(true),
                "{}",
                a.text
            );
        }
        let g = app
            .graphql(
                Some(&s.access),
                "mutation($n: String!) { updateOrganization(name: $n) { name } }",
                json!({"n": name}),
            )
            .await;
        assert_eq!(
            g.body["errors"][0]["extensions"]["code"], "invisible_characters",
            "{}",
            g.text
        );
    }
    assert_eq!(app.get("/v1/org", &s.access).await.body["name"], "Acme");
    // No route lists every user: the refused sign-ups would show only here.
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    for list in ["/v1/api-keys", "/v1/clusters", "/v1/devices"] {
        assert_eq!(
            app.items(list, &s.access).await,
            Vec::<Value>::new(),
            "{list}"
        );
    }
    // A status reason is shown in the device's history as it is written: the same rule.
    let device = app.post("/v1/devices", Some(&s.access), rig("rig-1")).await;
    assert_eq!(device.status, 201, "{}", device.text);
    let id = device.body["id"].as_str().unwrap();
    app.post(
        &format!("/v1/devices/{id}/maintenance"),
        Some(&s.access),
        json!({"reason": "swap\u{202E}txt.exe"}),
    )
    .await
    .assert_problem(422, "invisible_characters");
    assert_eq!(
        app.get(&format!("/v1/devices/{id}"), &s.access).await.body["status"],
        device.body["status"]
    );
    // Names in any script still pass.
    let ok = app
        .patch("/v1/org", &s.access, json!({"name": "Zürich 東京 عربى"}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    app.stop().await;
}

async fn bad_bodies_are_refused_and_change_nothing(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let users = app.count("SELECT COUNT(*) FROM users").await;
    let signup = "/v1/auth/signup";

    app.post_raw(signup, None, "application/json", "{\"email\": ")
        .await
        .assert_problem(400, "malformed_json");
    app.post_raw(signup, None, "text/plain", "{}")
        .await
        .assert_problem(415, "unsupported_media_type");
    let missing = app
        .post(
            signup,
            None,
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    missing.assert_problem(422, "invalid_body");
    assert!(
        missing.body["detail"].as_str().unwrap().contains("name"),
        "says which field: {}",
        missing.text
    );
    app.post(
        signup,
        None,
        json!({"email": 5, "password": PASSWORD, "name": "n", "org_name": "o"}),
    )
    .await
    .assert_problem(422, "invalid_body");
    app.post(signup, None, json!({"email": "x@example.com", "password": PASSWORD, "name": "n", "org_name": "o", "admin": true})).await.assert_problem(422, "invalid_body");
    let bad_email = app
        .post(
            signup,
            None,
            json!({"email": "not-an-email", "password": PASSWORD, "name": "n", "org_name": "o"}),
        )
        .await;
    bad_email.assert_problem(422, "validation_failed");
    assert_eq!(bad_email.body["field"], "email");
    let weak = app
        .post(
            signup,
            None,
            json!({"email": "x@example.com", "password": "short", "name": "n", "org_name": "o"}),
        )
        .await;
    weak.assert_problem(422, "validation_failed");
    assert_eq!(weak.body["field"], "password");
    app.post(
        signup,
        None,
        json!({"email": "x@example.com", "password": PASSWORD, "name": "  ", "org_name": "o"}),
    )
    .await
    .assert_problem(422, "validation_failed");

    // Over a mebibyte: refused on the declared length before the body is read, and refused
    // while reading when the length is not declared (chunked).
    let head = format!(
        "POST /v1/orgs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 2000000\r\n\r\n",
        s.access
    );
    let declared = raw_exchange(&app, head.into_bytes()).await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(
        declared.contains("\"code\":\"body_too_large\""),
        "{declared}"
    );
    let payload = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024));
    let mut chunked = format!(
        "POST /v1/orgs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        s.access,
        payload.len()
    )
    .into_bytes();
    chunked.extend_from_slice(payload.as_bytes());
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let streamed = raw_exchange(&app, chunked).await;
    assert!(
        streamed.starts_with("HTTP/1.1 413"),
        "{}",
        &streamed[..streamed.len().min(300)]
    );
    assert!(streamed.contains("\"code\":\"body_too_large\""));

    app.patch("/v1/members/nobody", &s.access, json!({"role": "emperor"}))
        .await
        .assert_problem(422, "invalid_body");
    app.patch("/v1/org", &s.access, json!({"name": "a\u{0}b"}))
        .await
        .assert_problem(422, "invisible_characters");
    app.post(
        "/v1/invitations",
        Some(&s.access),
        json!({"email": "bad", "role": "viewer"}),
    )
    .await
    .assert_problem(422, "validation_failed");

    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(app.count("SELECT COUNT(*) FROM organizations").await, 1);
    assert_eq!(
        app.items("/v1/invitations", &s.access).await,
        Vec::<Value>::new()
    );
    assert_eq!(app.get("/v1/org", &s.access).await.body["name"], "Acme");
    app.stop().await;
}

async fn unknown_routes_and_bad_cursors(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    // Ids that are not ids (a NUL byte Postgres would refuse) are simply not found.
    app.get("/v1/members/usr%00x", &s.access)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/api-keys/key%00x", &s.access)
        .await
        .assert_problem(404, "not_found");
    app.post(
        "/v1/auth/refresh",
        None,
        serde_json::json!({"refresh_token": s.refresh, "org_id": "org\u{0}x"}),
    )
    .await
    .assert_problem(404, "not_found");
    // A known route with the wrong method is a problem document too.
    app.request(reqwest::Method::PUT, "/v1/org", Some(&s.access), None)
        .await
        .assert_problem(405, "method_not_allowed");
    app.get("/v1/nothing-here", &s.access)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/members?cursor=%21%21", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/members?limit=0", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/members?limit=many", &s.access)
        .await
        .assert_problem(422, "invalid_body");
    app.get("/v1/members?sort=evil", &s.access)
        .await
        .assert_problem(422, "invalid_body");

    // Pagination walks every item exactly once.
    for i in 0..5 {
        app.api_key(&s.access, &["read"]).await;
        let _ = i;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/api-keys?limit=2&cursor={c}"),
            None => "/v1/api-keys?limit=2".to_string(),
        };
        let page = app.get(&path, &s.access).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(sorted, seen, "ordered by id, no repeats");
    app.stop().await;
}

/// Writes raw bytes to the server and reads what it answers. A server that refuses early may
/// reset the connection under our feet; that is retried a few times.
async fn raw_exchange(app: &TestApp, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(app.server.addr)
            .await
            .unwrap();
        let _ = stream.write_all(&request).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n")
                        && String::from_utf8_lossy(&out).contains("\"code\"")
                    {
                        break;
                    }
                }
                Ok(Err(_)) => break,
            }
        }
        if !out.is_empty() {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
    panic!("no answer from the server");
}
