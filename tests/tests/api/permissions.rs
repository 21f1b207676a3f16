//! The role × action matrix, driven over HTTP and checked against the permission table.

use iocloud_control::permissions::{Action, Role, Scope, role_allows, scopes_allow};
use iocloud_tests::{Session, TestApp, on_both_engines};
use reqwest::Method;
use serde_json::{Value, json};

on_both_engines!(role_matrix, owner_rules, api_key_scopes);

/// One request per action the API exposes so far, with the status it answers when allowed.
fn requests(target_user: &str, n: usize) -> Vec<(Action, Method, String, Option<Value>, u16)> {
    vec![
        (Action::OrgRead, Method::GET, "/v1/org".into(), None, 200),
        (
            Action::OrgUpdate,
            Method::PATCH,
            "/v1/org".into(),
            Some(json!({"name": format!("Renamed {n}")})),
            200,
        ),
        (
            Action::MembersRead,
            Method::GET,
            "/v1/members".into(),
            None,
            200,
        ),
        (
            Action::MembersManage,
            Method::PATCH,
            format!("/v1/members/{target_user}"),
            Some(json!({"role": "viewer"})),
            200,
        ),
        (
            Action::InvitationsRead,
            Method::GET,
            "/v1/invitations".into(),
            None,
            200,
        ),
        (
            Action::InvitationsManage,
            Method::POST,
            "/v1/invitations".into(),
            Some(json!({"email": format!("new{n}@example.com"), "role": "viewer"})),
            201,
        ),
        (
            Action::ApiKeysRead,
            Method::GET,
            "/v1/api-keys".into(),
            None,
            200,
        ),
        (
            Action::ApiKeysManage,
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "k", "scopes": ["read"]})),
            201,
        ),
        (
            Action::AuditRead,
            Method::GET,
            "/v1/audit-events".into(),
            None,
            200,
        ),
        // No machines are listed: an allowed placement quote finds no capacity.
        (
            Action::QuotesCreate,
            Method::POST,
            "/v1/quotes".into(),
            Some(json!({"gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1})),
            422,
        ),
        (
            Action::QuotesCreate,
            Method::POST,
            "/v1/price-quotes".into(),
            Some(json!({"amount_usd": "5", "currency": "USD"})),
            201,
        ),
    ]
}

async fn role_matrix(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Acme").await;
    let target = app.add_member(&owner, "target@example.com", "viewer").await;
    let mut members: Vec<(Role, Session)> = vec![(Role::Owner, owner.clone())];
    for role in [Role::Admin, Role::Member, Role::Billing, Role::Viewer] {
        let s = app
            .add_member(
                &owner,
                &format!("{}@example.com", role.as_str()),
                role.as_str(),
            )
            .await;
        members.push((role, s));
    }
    let mut n = 0;
    for (role, session) in &members {
        for (action, method, path, body, ok_status) in requests(&target.user_id, n) {
            n += 1;
            let a = app
                .request(method.clone(), &path, Some(&session.access), body)
                .await;
            if role_allows(*role, action) {
                assert_eq!(
                    a.status.as_u16(),
                    ok_status,
                    "{role:?} {action:?} {method} {path}: {}",
                    a.text
                );
            } else {
                assert_eq!(
                    a.status.as_u16(),
                    403,
                    "{role:?} {action:?} {method} {path}: {}",
                    a.text
                );
                assert_eq!(a.code(), "forbidden");
            }
        }
    }
    app.stop().await;
}

async fn owner_rules(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Acme").await;
    let admin = app.add_member(&owner, "admin@example.com", "admin").await;
    let member = app.add_member(&owner, "member@example.com", "member").await;

    // The last owner can neither be demoted nor leave.
    app.patch(
        &format!("/v1/members/{}", owner.user_id),
        &owner.access,
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(409, "last_owner");
    app.delete(&format!("/v1/members/{}", owner.user_id), &owner.access)
        .await
        .assert_problem(409, "last_owner");
    // Admins manage members but not owners.
    app.patch(
        &format!("/v1/members/{}", member.user_id),
        &admin.access,
        json!({"role": "owner"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.patch(
        &format!("/v1/members/{}", owner.user_id),
        &admin.access,
        json!({"role": "viewer"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.delete(&format!("/v1/members/{}", owner.user_id), &admin.access)
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/v1/invitations",
        Some(&admin.access),
        json!({"email": "x@example.com", "role": "owner"}),
    )
    .await
    .assert_problem(403, "forbidden");
    // Nobody grants a role that can do more than they can: `billing` manages billing, stakes
    // and withdraws, which admins may not. Neither by REST nor GraphQL, by role change or invite.
    app.patch(
        &format!("/v1/members/{}", member.user_id),
        &admin.access,
        json!({"role": "billing"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/v1/invitations",
        Some(&admin.access),
        json!({"email": "y@example.com", "role": "billing"}),
    )
    .await
    .assert_problem(403, "forbidden");
    for (query, variables) in [
        (
            "mutation($u: String!) { changeMemberRole(userId: $u, role: BILLING) { role } }",
            json!({"u": member.user_id}),
        ),
        (
            "mutation { createInvitation(email: \"z@example.com\", role: BILLING) { id } }",
            json!({}),
        ),
    ] {
        let g = app.graphql(Some(&admin.access), query, variables).await;
        assert_eq!(
            g.body["errors"][0]["extensions"]["code"], "forbidden",
            "{}",
            g.text
        );
    }
    let unchanged = app
        .get(&format!("/v1/members/{}", member.user_id), &owner.access)
        .await;
    assert_eq!(unchanged.body["role"], "member", "{}", unchanged.text);
    let ok = app
        .patch(
            &format!("/v1/members/{}", member.user_id),
            &owner.access,
            json!({"role": "billing"}),
        )
        .await;
    assert_eq!(ok.body["role"], "billing", "{}", ok.text);
    // What an admin holds, an admin may hand out.
    let ok = app
        .post(
            "/v1/invitations",
            Some(&admin.access),
            json!({"email": "w@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);

    // With a second owner, the first may step down.
    let promoted = app
        .patch(
            &format!("/v1/members/{}", admin.user_id),
            &owner.access,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(promoted.body["role"], "owner", "{}", promoted.text);
    let down = app
        .patch(
            &format!("/v1/members/{}", owner.user_id),
            &owner.access,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(down.body["role"], "admin", "{}", down.text);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM memberships WHERE role = 'owner'")
            .await,
        3,
        "one owner left in Acme, plus the newcomers owning their own organisations"
    );

    // A key can do no more than its maker: admins (as the first owner now is) may not mint
    // `admin` keys, since that scope can manage billing, which an admin cannot.
    app.post(
        "/v1/api-keys",
        Some(&owner.access),
        json!({"name": "too much", "scopes": ["admin"]}),
    )
    .await
    .assert_problem(403, "forbidden");
    let (_, member_key) = {
        let promoted = app
            .patch(
                &format!("/v1/members/{}", member.user_id),
                &owner.access,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(promoted.status, 200);
        let again = app.login("member@example.com", Some(&owner.org_id)).await;
        app.api_key(&again.access, &["read"]).await
    };
    assert_eq!(app.get("/v1/org", &member_key).await.status, 200);

    // Anyone may leave; a removed member's tokens and keys stop working in this organisation.
    let left = app
        .delete(&format!("/v1/members/{}", member.user_id), &member.access)
        .await;
    assert_eq!(left.status, 204, "{}", left.text);
    app.get("/v1/org", &member.access)
        .await
        .assert_problem(401, "invalid_token");
    app.get("/v1/org", &member_key)
        .await
        .assert_problem(401, "invalid_token");
    app.stop().await;
}

async fn api_key_scopes(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Acme").await;
    let target = app.add_member(&owner, "target@example.com", "viewer").await;
    let mut n = 100;
    for scope in Scope::ALL {
        let (_, secret) = app.api_key(&owner.access, &[scope.as_str()]).await;
        for (action, method, path, body, ok_status) in requests(&target.user_id, n) {
            n += 1;
            let a = app
                .request(method.clone(), &path, Some(&secret), body)
                .await;
            let expected = if scopes_allow(&[scope], action) {
                ok_status
            } else {
                403
            };
            assert_eq!(
                a.status.as_u16(),
                expected,
                "{scope:?} key, {action:?} {method} {path}: {}",
                a.text
            );
        }
        // GraphQL asks the same domain call as `POST /v1/quotes`.
        let g = app
            .graphql(
                Some(&secret),
                "mutation { quote(input: {gpuModel: \"h100-sxm\", gpuCount: 8, durationHours: 1}) { id } }",
                json!({}),
            )
            .await;
        let expected = if scopes_allow(&[scope], Action::QuotesCreate) {
            "insufficient_capacity"
        } else {
            "forbidden"
        };
        assert_eq!(
            g.body["errors"][0]["extensions"]["code"], expected,
            "{scope:?}: {}",
            g.text
        );
    }
    app.stop().await;
}
