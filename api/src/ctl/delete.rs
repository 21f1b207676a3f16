//! `iocloud delete CLUSTER`: terminates one cluster, by name or id, without asking (`destroy`
//! is the command that shows and asks).

use super::client::{Client, CtlResult, exit, seg};
use super::{OneArgs, render};

pub async fn run(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .delete(&format!("/v1/clusters/{}", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        render::json(&c);
    } else {
        println!(
            "{} ({}) is {}",
            c["name"].as_str().unwrap_or("?"),
            c["id"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?")
        );
    }
    Ok(exit::OK)
}
