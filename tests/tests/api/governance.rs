//! Governance on both engines: a change of the GPU/CPU split proposed by a staked organisation,
//! voted with the stake each held when the vote opened (stake moved mid-vote changes nothing),
//! closed once by two replicas at once, timelocked, executed once, and the next block split by
//! it; an operator's proposal vetoed in its timelock; one short of its quorum rejected; every
//! bad input a clear error that changes nothing; reading public, voters by pseudonym only.

mod terms;

use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_tests::{Backend, Session, TestApp, on_both_engines};
use serde_json::{Value, json};

on_both_engines!(a_change_passes_waits_out_its_timelock_and_splits_the_next_block);

/// An organisation with `stake` $IO staked.
pub(super) async fn staker(app: &TestApp, email: &str, name: &str, stake: &str) -> Session {
    let s = app.signup(email, name).await;
    app.grant_credit(&s.org_id, stake, "IO").await;
    let staked = app
        .post("/v1/stake", Some(&s.access), json!({"amount": stake}))
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    s
}

pub(super) fn ts(v: &Value) -> i64 {
    iocloud_db::Timestamp::parse_rfc3339(v.as_str().unwrap())
        .unwrap()
        .micros()
}

async fn a_change_passes_waits_out_its_timelock_and_splits_the_next_block(b: Backend) {
    let app = TestApp::spawn(b).await;
    let gov = &app.server.state.control.governance;
    let big = staker(&app, "big@example.com", "Big Stake Secret", "1000000").await;
    let small = staker(&app, "small@example.com", "Small Stake", "200000").await;
    let nobody = app.signup("none@example.com", "No Stake").await;
    let ops = app.operator().await;

    let split = |bps: i64| {
        json!({"title": "A larger CPU pool", "body": "CPU providers carry the network's\nsmaller jobs.",
            "change": {"gpu_share_bps": bps}})
    };
    // Bad proposals change nothing.
    let before = app.count("SELECT COUNT(*) FROM proposals").await;
    app.post(
        "/v1/governance/proposals",
        Some(&nobody.access),
        split(7_000),
    )
    .await
    .assert_problem(409, "proposal_stake_short");
    for (body, field) in [
        (split(9_900), "gpu_share_bps"),
        (json!({"title": "t", "body": "b", "change": {}}), "change"),
        (json!({"title": "", "body": "b"}), "title"),
        (
            json!({"title": "t", "body": "b", "change": {"platform_fee_bps": -1}}),
            "platform_fee_bps",
        ),
    ] {
        let refused = app
            .post("/v1/governance/proposals", Some(&big.access), body)
            .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    app.post(
        "/v1/governance/proposals",
        Some(&big.access),
        json!({"title": "t", "body": "b", "change": {"min_stake": 1}}),
    )
    .await
    .assert_problem(422, "invalid_body");
    app.post("/v1/governance/proposals", None, split(7_000))
        .await
        .assert_problem(401, "unauthenticated");
    // A read-only key of a staked organisation may read, not propose or vote.
    let (_, read_only) = app.api_key(&big.access, &["read"]).await;
    app.post("/v1/governance/proposals", Some(&read_only), split(7_000))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(app.count("SELECT COUNT(*) FROM proposals").await, before);

    // The proposal: weights are the stake held now.
    let made = app
        .post("/v1/governance/proposals", Some(&big.access), split(7_000))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let p = &made.body;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["status"], "voting");
    assert_eq!(p["total_weight"], "1200000.00");
    assert_eq!(p["threshold_bps"], 6_666, "a change needs two thirds");
    assert_eq!(p["by_operator"], false);
    let ends_at = ts(&p["ends_at"]);
    assert_eq!(ends_at - ts(&p["starts_at"]), 7 * 24 * MICROS_PER_HOUR);

    // Votes: weighed by the snapshot, replaced by a second vote, refused without stake.
    let vote = |s: &Session, choice: &str| {
        let path = format!("/v1/governance/proposals/{id}/vote");
        let token = s.access.clone();
        let body = json!({ "choice": choice });
        let app = &app;
        async move { app.put(&path, &token, body).await }
    };
    let v = vote(&small, "no").await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.body["weight"], "200000.00");
    vote(&nobody, "yes")
        .await
        .assert_problem(409, "no_voting_weight");
    vote(&big, "maybe")
        .await
        .assert_problem(422, "validation_failed");
    app.put(
        "/v1/governance/proposals/prp_nothing/vote",
        &big.access,
        json!({"choice": "yes"}),
    )
    .await
    .assert_problem(404, "not_found");
    // Stake moved mid-vote weighs nothing: the small staker triples its stake.
    app.grant_credit(&small.org_id, "400000", "IO").await;
    let more = app
        .post(
            "/v1/stake",
            Some(&small.access),
            json!({"amount": "400000"}),
        )
        .await;
    assert_eq!(more.status, 201, "{}", more.text);
    let v = vote(&small, "yes").await;
    assert_eq!(v.body["weight"], "200000.00", "the snapshot's weight");
    app.put(
        &format!("/v1/governance/proposals/{id}/vote"),
        &read_only,
        json!({"choice": "no"}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(vote(&big, "yes").await.status, 200);
    let live = app
        .get_public(&format!("/v1/governance/proposals/{id}"))
        .await;
    assert_eq!(
        (&live.body["yes"], &live.body["no"], &live.body["votes"]),
        (&json!("1200000.00"), &json!("0.00"), &json!(2)),
        "{}",
        live.text
    );
    assert_eq!(live.body["total_weight"], "1200000.00");
    let open = app
        .get_public("/v1/governance/proposals?status=voting")
        .await;
    assert_eq!(open.body["items"][0]["yes"], "1200000.00", "{}", open.text);

    // Nothing closes before the end; two replicas at the end close it once.
    assert_eq!(gov.run_pass(now_micros()).await.unwrap().closed, 0);
    let replica = app.replica(|_| {}).await;
    let other = &replica.server.state.control.governance;
    let (a, b) = tokio::join!(gov.run_pass(ends_at), other.run_pass(ends_at));
    assert_eq!(a.unwrap().closed + b.unwrap().closed, 1);
    let closed = app
        .get_public(&format!("/v1/governance/proposals/{id}"))
        .await;
    assert_eq!(closed.body["status"], "queued", "{}", closed.text);
    let executes_at = ts(&closed.body["executes_at"]);
    assert_eq!(executes_at - ends_at, 48 * MICROS_PER_HOUR);
    vote(&small, "no")
        .await
        .assert_problem(409, "voting_closed");

    // The timelock: nothing applies before its end; then once, whoever runs the pass.
    assert_eq!(gov.run_pass(executes_at - 1).await.unwrap().executed, 0);
    assert_eq!(gov.in_force().version, 1);
    let (a, b) = tokio::join!(
        gov.run_pass(executes_at + 1),
        other.run_pass(executes_at + 1)
    );
    assert_eq!(a.unwrap().executed + b.unwrap().executed, 1);
    assert_eq!(gov.run_pass(executes_at + 2).await.unwrap().executed, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM protocol_params").await, 1);
    let done = app
        .get_public(&format!("/v1/governance/proposals/{id}"))
        .await;
    assert_eq!(done.body["status"], "executed");
    assert_eq!(done.body["params_version"], 2);
    // It takes effect on the hour, at least a quarter of an hour after it executed.
    let params = app.get_public("/v1/governance/params").await;
    assert_eq!(params.status, 200, "{}", params.text);
    assert_eq!(params.body["in_force"]["version"], 1);
    assert_eq!(params.body["next"]["version"], 2);
    assert_eq!(params.body["next"]["params"]["gpu_share_bps"], 7_000);
    let effective = ts(&params.body["next"]["effective_at"]);
    assert_eq!(effective.rem_euclid(MICROS_PER_HOUR), 0);
    assert!(effective >= executes_at + 1 + 15 * 60_000_000);
    assert!(effective < executes_at + 1 + 15 * 60_000_000 + MICROS_PER_HOUR);
    assert_eq!(gov.in_force_at(effective - 1).version, 1);
    assert_eq!(gov.in_force_at(effective).params.gpu_share_bps, 7_000);
    assert_eq!(params.body["history"].as_array().unwrap().len(), 2);
    assert_eq!(params.body["history"][1]["params"]["gpu_share_bps"], 8_000);

    // Blocks: the hour before the change keeps the old split, its hour has the new one.
    let rewards = &app.server.state.control.rewards;
    let change_hour = effective.div_euclid(MICROS_PER_HOUR);
    rewards.run_block(change_hour - 1).await.unwrap();
    rewards.run_block(change_hour).await.unwrap();
    for (hour, version, share) in [(change_hour - 1, 1, 8_000), (change_hour, 2, 7_000)] {
        let (v, emission, gpu_pool): (i64, i64, i64) = (
            app.count(&format!(
                "SELECT params_version FROM reward_blocks WHERE hour = {hour}"
            ))
            .await,
            app.count(&format!(
                "SELECT emission FROM reward_blocks WHERE hour = {hour}"
            ))
            .await,
            app.count(&format!(
                "SELECT gpu_pool FROM reward_blocks WHERE hour = {hour}"
            ))
            .await,
        );
        assert_eq!(v, version, "hour {hour}");
        assert_eq!(gpu_pool, emission * share / 10_000, "hour {hour}");
    }

    // An operator's change, vetoed in its timelock: never applied.
    let by_ops = app
        .post(
            "/v1/governance/proposals",
            Some(&ops.access),
            json!({"title": "No fee", "body": "b", "change": {"platform_fee_bps": 0}}),
        )
        .await;
    assert_eq!(by_ops.status, 201, "{}", by_ops.text);
    assert_eq!(by_ops.body["by_operator"], true);
    let vetoed_id = by_ops.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.put(
            &format!("/v1/governance/proposals/{vetoed_id}/vote"),
            &big.access,
            json!({"choice": "yes"}),
        )
        .await
        .status,
        200
    );
    let veto_path = format!("/v1/admin/governance/proposals/{vetoed_id}/veto");
    app.post(
        &veto_path,
        Some(&ops.access),
        json!({"reason": "too early"}),
    )
    .await
    .assert_problem(409, "invalid_state");
    let ends = ts(&by_ops.body["ends_at"]);
    gov.run_pass(ends).await.unwrap();
    app.post(&veto_path, Some(&big.access), json!({"reason": "mine"}))
        .await
        .assert_problem(403, "forbidden");
    app.post(&veto_path, Some(&ops.access), json!({"reason": " "}))
        .await
        .assert_problem(422, "validation_failed");
    let vetoed = app
        .post(
            &veto_path,
            Some(&ops.access),
            json!({"reason": "a zero fee leaves nothing for operations"}),
        )
        .await;
    assert_eq!(vetoed.status, 200, "{}", vetoed.text);
    assert_eq!(vetoed.body["status"], "vetoed");
    app.post(&veto_path, Some(&ops.access), json!({"reason": "again"}))
        .await
        .assert_problem(409, "invalid_state");
    gov.run_pass(ends + 100 * MICROS_PER_HOUR).await.unwrap();
    let later = gov.in_force_at(ends + 100 * MICROS_PER_HOUR);
    assert_eq!(later.version, 2);
    assert_eq!(later.params.platform_fee_bps, 500);

    // A proposal in words short of its quorum is rejected.
    let words = app
        .post(
            "/v1/governance/proposals",
            Some(&small.access),
            json!({"title": "Hold a community call", "body": "Monthly."}),
        )
        .await;
    assert_eq!(words.status, 201, "{}", words.text);
    assert_eq!(words.body["threshold_bps"], 5_000);
    assert_eq!(words.body["total_weight"], "1600000.00");
    let words_id = words.body["id"].as_str().unwrap();
    gov.run_pass(ts(&words.body["ends_at"])).await.unwrap();
    let rejected = app
        .get_public(&format!("/v1/governance/proposals/{words_id}"))
        .await;
    assert_eq!(rejected.body["status"], "rejected");

    // Public reads: lists, votes by pseudonym, no organisation named; bad filters by field.
    let list = app
        .get_public("/v1/governance/proposals?status=executed")
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    app.get_public("/v1/governance/proposals?status=won")
        .await
        .assert_problem(422, "validation_failed");
    let votes = app
        .get_public(&format!("/v1/governance/proposals/{id}/votes"))
        .await;
    assert_eq!(votes.status, 200, "{}", votes.text);
    let cast = votes.body["items"].as_array().unwrap();
    assert_eq!(cast.len(), 2);
    assert!(
        cast.iter()
            .all(|v| v["voter"].as_str().unwrap().starts_with("v_"))
    );
    assert!(cast.iter().all(|v| v["choice"] == "yes"));
    assert_eq!(
        done.body["proposer"],
        cast.iter().find(|v| v["weight"] == "1000000.00").unwrap()["voter"]
    );
    for answer in [&list, &votes, &done, &params] {
        for secret in [
            big.org_id.as_str(),
            small.org_id.as_str(),
            "Big Stake Secret",
            "big@example.com",
        ] {
            assert!(!answer.text.contains(secret), "{secret}: {}", answer.text);
        }
    }

    // The explorer's pages: the proposals and the parameters, a proposal with its votes.
    let page = app.get_public("/explorer/governance").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("A larger CPU pool") && page.text.contains("Version 2"));
    let one = app
        .get_public(&format!("/explorer/governance/{vetoed_id}"))
        .await;
    assert_eq!(one.status, 200);
    assert!(
        one.text
            .contains("a zero fee leaves nothing for operations")
    );
    assert_eq!(
        app.get_public("/explorer/governance/prp_nothing")
            .await
            .status,
        404
    );
    for answer in [&page, &one] {
        assert!(!answer.text.contains("Big Stake Secret"));
        assert!(!answer.text.contains(big.org_id.as_str()));
    }

    // GraphQL: the same reads without a token; voting needs one.
    let gql = app
        .graphql(
            None,
            "query($id: String!) { governanceProposal(id: $id) { status paramsVersion } \
             protocolParams { next { version params { gpuShareBps } } } \
             governanceVotes(id: $id, limit: 5) { items { voter weight } } }",
            json!({"id": id}),
        )
        .await;
    assert!(gql.body["errors"].is_null(), "{}", gql.text);
    assert_eq!(gql.body["data"]["governanceProposal"]["paramsVersion"], 2);
    assert_eq!(
        gql.body["data"]["protocolParams"]["next"]["params"]["gpuShareBps"],
        7_000
    );
    let anonymous = app
        .graphql(
            None,
            "mutation($id: String!) { vote(id: $id, choice: \"yes\") { weight } }",
            json!({"id": words_id}),
        )
        .await;
    assert!(!anonymous.body["errors"].is_null(), "{}", anonymous.text);
    replica.server.stop().await;
}
