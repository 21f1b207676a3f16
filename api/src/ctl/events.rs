//! `iocloud events CLUSTER [--follow]`: a cluster's events; following reads the server-sent
//! event stream until the cluster ends, and a cluster that failed exits with its own code.

use clap::Args;
use serde_json::Value;

use super::client::{Client, Conn, CtlError, CtlResult, drain_sse, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// The cluster's name or id.
    cluster: String,
    /// Keep streaming new events until the cluster ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

pub async fn run(a: EventsArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let base = format!("/v1/clusters/{}/events", seg(&a.cluster));
    if !a.follow {
        let page = client.get(&format!("{base}?limit=1000")).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for e in &items {
            if a.conn.json() {
                println!("{e}");
            } else {
                render::event(e);
            }
        }
        return Ok(exit::OK);
    }
    let res = client
        .request(reqwest::Method::GET, &format!("{base}?follow=true"))
        .send()
        .await
        .map_err(|e| CtlError::new(exit::FAILED, format!("cannot reach {}: {e}", client.base)))?;
    if !res.status().is_success() {
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        return Err(CtlError {
            exit: if status.as_u16() == 401 {
                exit::UNAUTHENTICATED
            } else {
                exit::REFUSED
            },
            message: format!(
                "{}: {}",
                body["code"].as_str().unwrap_or("error"),
                body["detail"].as_str().unwrap_or("")
            ),
            problem: Some(body),
        });
    }
    let mut res = res;
    let mut buffer = String::new();
    let mut last_kind = String::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| CtlError::new(exit::FAILED, format!("the stream broke: {e}")))?
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        for e in drain_sse(&mut buffer) {
            last_kind = e["kind"].as_str().unwrap_or_default().to_string();
            if a.conn.json() {
                println!("{e}");
            } else {
                render::event(&e);
            }
        }
    }
    Ok(if last_kind == "failed" {
        exit::CLUSTER_FAILED
    } else {
        exit::OK
    })
}
