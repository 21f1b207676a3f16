//! `iocloud extend CLUSTER --hours N`: gives a cluster more hours, holding funds for them.

use clap::Args;
use serde_json::json;

use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// The cluster's name or id.
    cluster: String,
    /// Hours to add.
    #[arg(long)]
    hours: i64,
}

pub async fn run(a: ExtendArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .post(
            &format!("/v1/clusters/{}/extend", seg(&a.cluster)),
            &json!({"hours": a.hours}),
        )
        .await?;
    if a.conn.json() {
        render::json(&c);
    } else {
        println!(
            "{} now runs {} hour(s) in all, until {}",
            c["name"].as_str().unwrap_or("?"),
            c["spec"]["duration_hours"],
            c["expires_at"]
                .as_str()
                .unwrap_or("its nodes are up plus that")
        );
    }
    Ok(exit::OK)
}
