//! `iocloud events CLUSTER [--follow]`: a cluster's events; following reads the server-sent
//! event stream until the cluster ends, and a cluster that failed exits with its own code.

use clap::Args;
use serde_json::Value;

use super::client::{Client, Conn, CtlError, CtlResult, drain_sse, exit, retry_after, seg};
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
    // A stream that ends before the cluster does (its server stopping) is opened again, to
    // whichever replica answers, after the last event seen: each event printed once.
    let mut last_seq = 0i64;
    let mut last_status = String::new();
    let mut breaks = 0;
    loop {
        match follow_once(&client, &base, &a.conn, &mut last_seq, &mut last_status).await {
            Ok(()) if matches!(last_status.as_str(), "terminated" | "failed") => break,
            Ok(()) => breaks = 0,
            Err(e) if e.exit == exit::FAILED && breaks < RECONNECTS => breaks += 1,
            Err(e) => return Err(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 * (breaks + 1))).await;
    }
    Ok(if last_status == "failed" {
        exit::CLUSTER_FAILED
    } else {
        exit::OK
    })
}

/// Times in a row a broken stream is opened again before the command gives up.
const RECONNECTS: u64 = 5;

/// Reads the stream after `last_seq` until it ends, printing each event and keeping the last
/// one's sequence number and cluster status.
async fn follow_once(
    client: &Client,
    base: &str,
    conn: &Conn,
    last_seq: &mut i64,
    last_status: &mut String,
) -> CtlResult<()> {
    let res = client
        .request(
            reqwest::Method::GET,
            &format!("{base}?follow=true&after={last_seq}"),
        )
        .send()
        .await
        .map_err(|e| CtlError::new(exit::FAILED, format!("cannot reach {}: {e}", client.base)))?;
    let status = res.status();
    if status.as_u16() == 503 {
        // Stopping, or too busy to take the stream now: wait as long as it asks, then the
        // caller opens it again.
        let wait = retry_after(res.headers()).unwrap_or_default();
        tokio::time::sleep(wait.min(std::time::Duration::from_secs(30))).await;
        return Err(CtlError::new(
            exit::FAILED,
            "the server is stopping or busy",
        ));
    }
    if !status.is_success() {
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
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| CtlError::new(exit::FAILED, format!("the stream broke: {e}")))?
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        for e in drain_sse(&mut buffer) {
            *last_seq = e["seq"].as_i64().unwrap_or(*last_seq);
            *last_status = e["status"].as_str().unwrap_or_default().to_string();
            if conn.json() {
                println!("{e}");
            } else {
                render::event(&e);
            }
        }
    }
    Ok(())
}
