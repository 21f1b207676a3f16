//! Renting from the console: offers by model and region (and `GET /v1/offers`), a create form
//! whose quote explains an empty answer and offers the nearest request, a cluster made from
//! the form and followed to running, its page (connection, money, timeline, spec), its live
//! timeline as server-sent events, extending and terminating it; forged forms and another
//! organisation's clusters change nothing.

use std::time::Duration;

use super::console_client::{browser, csrf_of, page, sign_in, submit};
use iocloud_tests::{
    Backend, cluster, fleet, frankfurt, machine, on_both_engines, running_cluster, wait_status,
};
use reqwest::header::{CONTENT_DISPOSITION, COOKIE, LOCATION};

on_both_engines!(
    offers_quotes_and_a_cluster_from_the_console,
    a_kubernetes_cluster_gives_its_kubeconfig_to_its_own_organisation
);

async fn offers_quotes_and_a_cluster_from_the_console(b: Backend) {
    let mut machines = frankfurt(2);
    machines.push(machine("iad-0", "rtx-4090", 4, "us-east", "0.40"));
    let fleet = fleet(b, machines, true, |_| {}).await;
    let app = &fleet.app;
    let customer = &fleet.customer;

    // Offers over REST: one line per model and region, filters, refusals in words.
    let offers = app.get("/v1/offers", &customer.access).await;
    assert_eq!(offers.status, 200, "{}", offers.text);
    let lines = offers.body.as_array().unwrap();
    assert_eq!(lines.len(), 2, "{}", offers.text);
    assert_eq!(lines[0]["gpu_model"], "rtx-4090", "cheapest first");
    assert_eq!(lines[1]["gpu_model"], "h100-sxm");
    assert_eq!(lines[1]["gpus_free"], 16);
    assert_eq!(lines[1]["devices"], 2);
    assert_eq!(lines[1]["max_gpus_per_node"], 8);
    assert_eq!(lines[1]["min_price_per_gpu_hour"], "2.00");
    let europe = app
        .get("/v1/offers?continent=europe&sort=gpus", &customer.access)
        .await;
    assert_eq!(europe.body.as_array().unwrap().len(), 1, "{}", europe.text);
    for bad in [
        "gpu_model=h900",
        "min_reliability=2",
        "max_price_per_gpu_hour=cheap",
        "min_gpus=0",
        "region=mars",
        "colour=red",
    ] {
        let refused = app
            .get(&format!("/v1/offers?{bad}"), &customer.access)
            .await;
        assert!(
            refused.status == 422 || refused.status == 400,
            "{bad}: {}",
            refused.text
        );
        assert!(refused.body["code"].is_string(), "{bad}: {}", refused.text);
    }
    let gql = app
        .post(
            "/graphql",
            Some(&customer.access),
            serde_json::json!({"query": "{ offers(filter: {gpuClass: \"consumer\"}) { gpuModel gpusFree } }"}),
        )
        .await;
    assert_eq!(
        gql.body["data"]["offers"],
        serde_json::json!([{"gpuModel": "rtx-4090", "gpusFree": 4}]),
        "{}",
        gql.text
    );

    // The offers page, and a typo in its filter said in words.
    let jar = sign_in(app, "ada@example.com").await;
    let (status, html) = page(app, &jar, "/app/offers").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("NVIDIA H100 SXM") && html.contains("2.00"),
        "{html}"
    );
    assert!(
        html.contains(
            "/app/clusters/new?gpu_model=h100-sxm&amp;regions=eu-central&amp;gpu_count=8"
        ),
        "each offer links to a create: {html}"
    );
    let (status, html) = page(app, &jar, "/app/offers?min_reliability=high").await;
    assert_eq!(status, 422);
    assert!(html.contains("Min reliability"), "{html}");

    // The quote as the form is typed in: plans, and when nothing fits, why and what would.
    let (status, html) = page(
        app,
        &jar,
        "/app/clusters/quote?gpu=h100-sxm&gpu_count=16&gpus_per_node=8&together=close&duration_hours=2",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("data-testid=\"plans\"") && html.contains("in eu-central"),
        "{html}"
    );
    let (_, html) = page(
        app,
        &jar,
        "/app/clusters/quote?gpu=h100-sxm&gpu_count=16&max_price_per_gpu_hour=1.50",
    )
    .await;
    assert!(html.contains("Nothing fits"), "{html}");
    assert!(html.contains("the price limit"), "{html}");
    assert!(
        html.contains("max_price_per_gpu_hour=2.00"),
        "the nearest request eases the price to what fits: {html}"
    );
    let (_, html) = page(app, &jar, "/app/clusters/quote?gpu=h100-sxm&gpu_count=many").await;
    assert!(html.contains("quote-refused"), "{html}");

    // A forged form makes nothing.
    let spec = [
        ("name", "train"),
        ("kind", "ray"),
        ("gpu", "h100-sxm"),
        ("gpu_count", "16"),
        ("gpus_per_node", "8"),
        ("together", "close"),
        ("duration_hours", "2"),
    ];
    let mut forged = spec.to_vec();
    forged.push(("csrf", "forged"));
    assert_eq!(
        submit(app, &jar, "/app/clusters", &forged).await.status(),
        403
    );
    let mut bad_name = spec.to_vec();
    let csrf = csrf_of(&jar);
    bad_name.push(("csrf", &csrf));
    bad_name[0] = ("name", "Not A Name");
    let refused = submit(app, &jar, "/app/clusters", &bad_name).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("create-error") && html.contains("Not A Name"),
        "the form keeps what was typed: {html}"
    );
    assert!(
        app.items("/v1/clusters", &customer.access).await.is_empty(),
        "refused forms made no cluster"
    );

    // Made from the form, followed to running.
    let mut good = spec.to_vec();
    good.push(("csrf", &csrf));
    let made = submit(app, &jar, "/app/clusters", &good).await;
    assert_eq!(made.status(), 303);
    let to = made.headers()[LOCATION].to_str().unwrap().to_string();
    let id = to.strip_prefix("/app/clusters/").unwrap().to_string();
    wait_status(app, customer, &id, "running").await;

    let (status, html) = page(app, &jar, "/app/clusters").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("train") && html.contains("badge-running"),
        "{html}"
    );
    let (status, html) = page(app, &jar, &to).await;
    assert_eq!(status, 200);
    for part in [
        "Ray address",
        "data-testid=\"time-left\"",
        "data-testid=\"spent\"",
        "data-testid=\"refund-now\"",
        "gpu_count: 16",
        "<strong>running</strong>",
        "sse-connect",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }

    // The live timeline: every event so far as HTML, each followed by the page's overview as
    // that event left the cluster (its forms carrying the visitor's CSRF token).
    let mut live = browser()
        .get(app.url(&format!("/app/clusters/{id}/live?after=0")))
        .header(COOKIE, &jar)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let mut seen = String::new();
    while !(seen.contains("event: overview")
        && seen.contains("<strong>running</strong>")
        && seen.contains(&format!("value=\"{csrf}\"")))
    {
        let chunk = live.chunk().await.unwrap().expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(live);

    // Another organisation sees nothing of it and cannot end it.
    let theirs = sign_in(app, "provider@example.com").await;
    assert_eq!(page(app, &theirs, &to).await.0, 404);
    assert_eq!(
        page(app, &theirs, &format!("/app/clusters/{id}/live"))
            .await
            .0,
        404
    );
    let their_csrf = csrf_of(&theirs);
    let ended = submit(
        app,
        &theirs,
        &format!("/app/clusters/{id}/terminate"),
        &[("csrf", &their_csrf)],
    )
    .await;
    assert_eq!(ended.status(), 404);
    assert_eq!(cluster(app, customer, &id).await["status"], "running");

    // Extended (a typo said in words first), then terminated.
    let before = cluster(app, customer, &id).await;
    let typo = submit(
        app,
        &jar,
        &format!("/app/clusters/{id}/extend"),
        &[("csrf", &csrf), ("hours", "lots")],
    )
    .await;
    assert_eq!(typo.status(), 422);
    assert!(typo.text().await.unwrap().contains("whole number of hours"));
    let extended = submit(
        app,
        &jar,
        &format!("/app/clusters/{id}/extend"),
        &[("csrf", &csrf), ("hours", "1")],
    )
    .await;
    assert_eq!(extended.status(), 303);
    let after = cluster(app, customer, &id).await;
    assert_ne!(after["expires_at"], before["expires_at"]);
    let ended = submit(
        app,
        &jar,
        &format!("/app/clusters/{id}/terminate"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(ended.status(), 303);
    wait_status(app, customer, &id, "terminated").await;
    // Billing shows what it cost, by day and by cluster, and the ledger names it.
    let (_, billing) = page(app, &jar, "/app/billing").await;
    for part in [
        "data-testid=\"spend-by-cluster\"",
        "data-testid=\"chart-USD\"",
        &format!("hold for train ({id})"),
    ] {
        assert!(billing.contains(part), "{part}: {billing}");
    }
    // The console's forms are in the audit log like REST requests, with who posted them.
    let audit = app.items("/v1/audit-events", &customer.access).await;
    let ended_by = audit
        .iter()
        .find(|e| e["action"] == "POST /app/clusters/{id}/terminate" && e["status"] == 303)
        .unwrap_or_else(|| panic!("the terminate is audited: {audit:#?}"));
    assert_eq!(ended_by["actor_id"], customer.user_id.as_str());
    assert_eq!(ended_by["target"], id.as_str());
    let (_, html) = page(app, &jar, &to).await;
    assert!(
        !html.contains("sse-connect") && !html.contains("/terminate"),
        "an ended cluster is not followed and cannot be ended again: {html}"
    );
    fleet.app.stop().await;
}

async fn a_kubernetes_cluster_gives_its_kubeconfig_to_its_own_organisation(b: Backend) {
    let (fleet, id, _) = running_cluster(b, 2, "kubernetes").await;
    let app = &fleet.app;
    let jar = sign_in(app, "ada@example.com").await;
    let (status, html) = page(app, &jar, &format!("/app/clusters/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Download kubeconfig"), "{html}");
    let res = browser()
        .get(app.url(&format!("/app/clusters/{id}/kubeconfig")))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let yaml = res.text().await.unwrap();
    assert!(
        yaml.contains("certificate-authority-data") && yaml.contains("token:"),
        "{yaml}"
    );
    let theirs = sign_in(app, "provider@example.com").await;
    assert_eq!(
        page(app, &theirs, &format!("/app/clusters/{id}/kubeconfig"))
            .await
            .0,
        404
    );
    fleet.app.stop().await;
}

on_both_engines!(the_create_form_takes_a_containers_command_ports_environment_and_keys);

/// A container cluster from the form: its command split at spaces, its ports, its environment
/// a line each and the SSH keys ticked (every key ticked at first, and a link to manage them)
/// reach its spec, the simulated agent (which opens the ports) and the cluster's page.
async fn the_create_form_takes_a_containers_command_ports_environment_and_keys(b: Backend) {
    // Made by `ssh-keygen`.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZ18vQjB/JOrHVQGYEtqRNr8WT0xxxBKBU4GvwpXVtO ada@laptop";
    const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPGa2ql44dkIPDI8F3kuoi5REgKLCgzD/mgqEbXkD7zEmXGciO6CojyukVfj1nnxYH1rSsuQLu7lUJ5sidmJOVE= t";
    let fleet = fleet(b, frankfurt(1), true, |_| {}).await;
    let app = &fleet.app;
    let customer = &fleet.customer;
    let mut keys = Vec::new();
    for (name, line) in [("laptop", ED25519), ("desk", P256)] {
        let added = app
            .post(
                "/v1/ssh-keys",
                Some(&customer.access),
                serde_json::json!({"name": name, "public_key": line}),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.text);
        keys.push(added.body["id"].as_str().unwrap().to_string());
    }
    let (laptop, desk) = (keys[0].clone(), keys[1].clone());

    let jar = sign_in(app, "ada@example.com").await;
    let (status, html) = page(app, &jar, "/app/clusters/new?kind=container").await;
    assert_eq!(status, 200);
    for part in [
        "name=\"command\"",
        "split at spaces",
        "name=\"ports\"",
        "name=\"env\"",
        "href=\"/app/keys\"",
        &format!("value=\"{laptop}\" checked"),
        &format!("value=\"{desk}\" checked"),
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }

    let csrf = csrf_of(&jar);
    let form = vec![
        ("csrf", csrf.as_str()),
        ("name", "serve"),
        ("kind", "container"),
        ("image", "busybox"),
        ("gpu", "h100-sxm"),
        ("gpu_count", "8"),
        ("together", "close"),
        ("duration_hours", "1"),
        ("command", "python -m http.server 8080"),
        ("ports", "8080, 6006"),
        ("env", "MODEL=llama-3\r\nGREETING=hello world\r\n"),
        ("ssh_keys_shown", "1"),
        ("ssh_key", laptop.as_str()),
    ];
    // An environment line without `=` is refused in words; the form keeps what was typed,
    // the key left unticked too.
    let mut bad = form.clone();
    for field in bad.iter_mut().filter(|(k, _)| *k == "env") {
        field.1 = "NOEQUALS";
    }
    let refused = submit(app, &jar, "/app/clusters", &bad).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("line 1") && html.contains("value=\"python -m http.server 8080\""),
        "{html}"
    );
    assert!(
        html.contains(&format!("value=\"{laptop}\" checked")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("value=\"{desk}\" checked")),
        "{html}"
    );
    assert!(app.items("/v1/clusters", &customer.access).await.is_empty());

    let made = submit(app, &jar, "/app/clusters", &form).await;
    assert_eq!(made.status(), 303);
    let to = made.headers()[LOCATION].to_str().unwrap().to_string();
    let id = to.strip_prefix("/app/clusters/").unwrap().to_string();
    let spec = cluster(app, customer, &id).await["spec"].clone();
    assert_eq!(
        spec["command"],
        serde_json::json!(["python", "-m", "http.server", "8080"])
    );
    assert_eq!(spec["ports"], serde_json::json!([8080, 6006]));
    assert_eq!(
        spec["env"],
        serde_json::json!({"MODEL": "llama-3", "GREETING": "hello world"})
    );
    assert_eq!(spec["ssh_key_ids"], serde_json::json!([laptop]));

    let running = wait_status(app, customer, &id, "running").await;
    let node = &running["connection"]["nodes"][0];
    assert!(
        node["endpoints"]["port-6006"].is_string(),
        "the agent opened the ports it was told: {running:#}"
    );
    let (status, html) = page(app, &jar, &to).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("ssh -i ~/.ssh/laptop root@") && html.contains("href=\"/app/keys\""),
        "{html}"
    );
    fleet.app.stop().await;
}
