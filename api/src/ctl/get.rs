//! `iocloud get CLUSTER`: one cluster, by name or id, with its nodes and what it costs.

use super::client::{Client, CtlResult, exit, seg};
use super::{OneArgs, render};

pub async fn run(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .get(&format!("/v1/clusters/{}", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        render::json(&c);
    } else {
        render::cluster(&c);
    }
    Ok(exit::OK)
}
