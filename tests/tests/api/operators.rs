//! Platform operators are made on the server's own machine with `iocloud admin`, never over the API.

use clap::Parser;
use iocloud_api::cli::{Cli, run};
use iocloud_tests::{TestApp, on_both_engines};

on_both_engines!(grant_operator_from_the_command_line);

async fn grant_operator_from_the_command_line(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ops@example.com", "Ops").await;
    assert_eq!(
        app.get("/v1/me", &s.access).await.body["user"]["is_operator"],
        false
    );

    let url = app.db.url().to_string();
    let grant = Cli::try_parse_from([
        "iocloud",
        "admin",
        "--database-url",
        &url,
        "grant-operator",
        "OPS@example.com",
    ])
    .unwrap();
    run(grant).await.expect("grant-operator succeeds");
    assert_eq!(
        app.get("/v1/me", &s.access).await.body["user"]["is_operator"],
        true
    );

    let unknown = Cli::try_parse_from([
        "iocloud",
        "admin",
        "--database-url",
        &url,
        "grant-operator",
        "nobody@example.com",
    ])
    .unwrap();
    assert!(run(unknown).await.is_err(), "an unknown email is an error");

    let revoke = Cli::try_parse_from([
        "iocloud",
        "admin",
        "--database-url",
        &url,
        "revoke-operator",
        "ops@example.com",
    ])
    .unwrap();
    run(revoke).await.unwrap();
    assert_eq!(
        app.get("/v1/me", &s.access).await.body["user"]["is_operator"],
        false
    );
    app.stop().await;
}
