//! Quota: a create over the organisation's limit is refused with the numbers, over REST and
//! GraphQL alike, until an operator (only an operator) raises it.

use iocloud_tests::{Backend, Fleet, fleet, frankfurt, on_both_engines};
use serde_json::json;

on_both_engines!(quota_is_enforced_and_reported);

async fn quota_is_enforced_and_reported(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(2), false, |c| {
        c.quota_max_gpus = 8;
    })
    .await;
    let spec = |name: &str| json!({"name": name, "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1});
    let first = app.post("/v1/clusters", Some(&s.access), spec("a")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let r = app.post("/v1/clusters", Some(&s.access), spec("b")).await;
    r.assert_problem(403, "quota_exceeded");
    assert_eq!(r.body["limit"], "max_gpus");
    assert_eq!(r.body["allowed"], "8");
    assert_eq!(r.body["in_use"], "8");
    assert_eq!(r.body["requested"], "8");
    // GraphQL says the same, in its extensions.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation { createCluster(input: {name: \"g\", kind: CONTAINER, image: \"busybox\", gpuModel: \"h100-sxm\", gpuCount: 8, durationHours: 1}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "quota_exceeded",
        "{}",
        g.text
    );
    assert_eq!(g.body["errors"][0]["extensions"]["limit"], "max_gpus");
    // An operator raises the limit; only operators may.
    app.put(
        &format!("/v1/admin/orgs/{}/quota", s.org_id),
        &s.access,
        json!({"max_gpus": 16}),
    )
    .await
    .assert_problem(403, "forbidden");
    let ops = app.signup("ops2@example.com", "Ops").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops2@example.com",
    )
    .await;
    let ops = app.login("ops2@example.com", Some(&ops.org_id)).await;
    let q = app
        .put(
            &format!("/v1/admin/orgs/{}/quota", s.org_id),
            &ops.access,
            json!({"max_gpus": 16, "max_spend_per_hour": "100.00"}),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    assert_eq!(q.body["max_gpus"], 16);
    // Text not shaped like an organisation's id names none.
    for id in [
        "org_nope",
        "clu_01jz0000000000000000000000",
        "%27%20OR%201%3D1",
    ] {
        app.put(
            &format!("/v1/admin/orgs/{id}/quota"),
            &ops.access,
            json!({"max_gpus": 16}),
        )
        .await
        .assert_problem(404, "not_found");
    }
    assert_eq!(q.body["gpus_in_use"], 8);
    let second = app.post("/v1/clusters", Some(&s.access), spec("b")).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let seen = app.get("/v1/quota", &s.access).await;
    assert_eq!(seen.body["gpus_in_use"], 16);
    assert_eq!(seen.body["clusters_in_use"], 2);
    assert_eq!(seen.body["max_spend_per_hour"], "100.00");
}
