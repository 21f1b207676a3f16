//! `iocloud destroy -f FILE`: terminates the clusters the file names that still live, after
//! showing them and asking; names that are gone or never existed are skipped.

use serde_json::json;

use super::client::{Client, CtlResult, exit, seg};
use super::{FileArgs, confirm::confirm, render, specs};

pub async fn run(a: FileArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let specs = specs::read(&a.file)?;
    let mut live = Vec::new();
    for spec in &specs {
        let name = spec["name"].as_str().unwrap_or_default();
        match client.get(&format!("/v1/clusters/{}", seg(name))).await {
            Ok(c) if !matches!(c["status"].as_str(), Some("terminated" | "failed")) => live.push(c),
            Ok(_) => {}
            Err(e) if e.problem.as_ref().is_some_and(|p| p["status"] == 404) => {}
            Err(e) => return Err(e),
        }
    }
    if live.is_empty() {
        if a.conn.json() {
            render::json(&json!({"terminated": []}));
        } else {
            println!("nothing to destroy");
        }
        return Ok(exit::OK);
    }
    if !a.conn.json() {
        for c in &live {
            println!(
                "- terminate {} ({}, {})",
                c["name"].as_str().unwrap_or("?"),
                c["id"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            );
        }
    }
    confirm(&format!("terminate {} cluster(s)?", live.len()), a.yes)?;
    let mut ended = Vec::new();
    for c in &live {
        let id = c["id"].as_str().unwrap_or_default();
        let gone = client.delete(&format!("/v1/clusters/{}", seg(id))).await?;
        if !a.conn.json() {
            println!(
                "{} {}",
                gone["name"].as_str().unwrap_or("?"),
                gone["status"].as_str().unwrap_or("?")
            );
        }
        ended.push(gone);
    }
    if a.conn.json() {
        render::json(&json!({"terminated": ended}));
    }
    Ok(exit::OK)
}
