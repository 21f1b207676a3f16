//! `iocloud apply -f FILE`: plans every cluster in the file (a dry-run `PUT`), shows the plans,
//! asks, applies what changes at the planned `resource_version`, and waits for the clusters to run.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::client::{Client, CtlError, CtlResult, exit, seg};
use super::{FileArgs, confirm::confirm, render, specs, wait};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub(super) files: FileArgs,
    /// Do not wait for the clusters to run.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// A refusal of a spec, told as a mistake in the file: `FILE:LINE: what the API said`, with
/// the line of the field it named (not the position in the JSON the file was sent as).
fn in_the_file(mut e: CtlError, file: &std::path::Path, name: &str) -> CtlError {
    let Some(problem) = &e.problem else {
        return e;
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or(&e.message);
    // serde's position is in the request body, which the user never wrote.
    let detail = detail
        .split(" at line ")
        .next()
        .unwrap_or(detail)
        .to_string();
    e.message = match specs::locate(&text, name, problem) {
        Some(line) => format!("{}:{line}: cluster {name}: {detail}", file.display()),
        None => format!("{}: cluster {name}: {detail}", file.display()),
    };
    e
}

pub async fn run(a: ApplyArgs) -> CtlResult<i32> {
    let conn = &a.files.conn;
    let client = Client::from_conn(conn)?;
    let specs = specs::read(&a.files.file)?;
    let mut plans = Vec::with_capacity(specs.len());
    for spec in &specs {
        let name = spec["name"].as_str().unwrap_or_default();
        let plan = client
            .put(&format!("/v1/clusters/{}?dry_run=true", seg(name)), spec)
            .await
            .map_err(|e| in_the_file(e, &a.files.file, name))?;
        plans.push(plan);
    }
    let changing: Vec<usize> = (0..plans.len())
        .filter(|i| plans[*i]["action"] != "none")
        .collect();
    if !conn.json() {
        for plan in &plans {
            render::plan(plan);
        }
    }
    if changing.is_empty() {
        if conn.json() {
            render::json(&json!({"plans": plans, "applied": []}));
        } else {
            println!("nothing to change");
        }
        return Ok(exit::OK);
    }
    confirm(&format!("apply {} change(s)?", changing.len()), a.files.yes)?;
    let mut applied = Vec::new();
    for i in changing {
        let name = specs[i]["name"].as_str().unwrap_or_default();
        let mut path = format!("/v1/clusters/{}", seg(name));
        if let Some(v) = plans[i]["resource_version"].as_i64() {
            // What was planned is what is applied: a change since then answers 409.
            path.push_str(&format!("?resource_version={v}"));
        }
        let result = client.put(&path, &specs[i]).await?;
        if !conn.json() {
            println!(
                "{} {}: {}",
                result["plan"]["action"].as_str().unwrap_or("?"),
                name,
                result["cluster"]["id"].as_str().unwrap_or("?")
            );
        }
        applied.push(result);
    }
    let ids: Vec<String> = applied
        .iter()
        .filter_map(|r| r["cluster"]["id"].as_str().map(str::to_string))
        .collect();
    let code = if a.no_wait {
        exit::OK
    } else {
        wait::running(
            &client,
            &ids,
            Duration::from_secs(a.timeout_secs),
            !conn.json(),
        )
        .await?
    };
    if conn.json() {
        let mut clusters = Vec::new();
        for id in &ids {
            clusters.push(client.get(&format!("/v1/clusters/{}", seg(id))).await?);
        }
        render::json(&json!({"plans": plans, "applied": applied, "clusters": clusters}));
    }
    Ok(code)
}
