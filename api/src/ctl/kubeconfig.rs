//! `iocloud kubeconfig CLUSTER`: a Kubernetes cluster's kubeconfig, printed bare so it can be
//! redirected to a file; `--output json` prints the whole credentials document.

use super::client::{Client, CtlResult, exit, seg};
use super::{OneArgs, render};

pub async fn run(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .get(&format!("/v1/clusters/{}/credentials", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        render::json(&c);
    } else {
        print!("{}", c["kubeconfig"].as_str().unwrap_or_default());
    }
    Ok(exit::OK)
}
