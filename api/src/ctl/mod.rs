//! The customer's command line: `iocloud login | quote | apply | destroy | get | list | events
//! | extend | delete`, over the REST API. Plans are shown before anything changes, `--output
//! json` prints what scripts parse, and exit codes say what happened (`client::exit`).

mod client;
mod render;
pub mod specs;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub use client::drain_sse;
use client::{Client, Conn, CtlError, CtlResult, Stored, exit, seg};

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Sign in (with an API key, or an email and password that make one) and store the key.
    Login(LoginArgs),
    /// Where a cluster would go and what it would cost.
    Quote(QuoteArgs),
    /// Make the clusters in a file (YAML, TOML or JSON) match it: shows the plan, asks, applies,
    /// and waits for them to run.
    Apply(ApplyArgs),
    /// Terminate the clusters a file names (shows them and asks first).
    Destroy(FileArgs),
    /// One cluster, by name or id.
    Get(OneArgs),
    /// A Kubernetes cluster's kubeconfig, by name or id (needs a `write` key; every read is
    /// audited). `iocloud kubeconfig NAME > kubeconfig.yaml`; `--output json` adds the token.
    Kubeconfig(OneArgs),
    /// The organisation's clusters.
    List(ListArgs),
    /// A cluster's events; `--follow` streams them until the cluster ends.
    Events(EventsArgs),
    /// Give a cluster more hours (and hold funds for them).
    Extend(ExtendArgs),
    /// Terminate a cluster, by name or id.
    Delete(OneArgs),
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: Conn,
    /// Sign in with this email; the password comes from IOCLOUD_PASSWORD or standard input.
    #[arg(long)]
    email: Option<String>,
}

#[derive(Args, Debug)]
pub struct QuoteArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long)]
    gpu_model: Option<String>,
    #[arg(long)]
    gpu_class: Option<String>,
    /// GPUs in all.
    #[arg(long)]
    gpus: i64,
    #[arg(long)]
    gpus_per_node: Option<i64>,
    #[arg(long, default_value_t = 1)]
    hours: i64,
    /// A region code; repeat for several.
    #[arg(long = "region")]
    regions: Vec<String>,
    /// USD per GPU-hour, e.g. 3.00.
    #[arg(long)]
    max_price: Option<String>,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    #[command(flatten)]
    conn: Conn,
    /// The file of cluster specs.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Do not ask.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    files: FileArgs,
    /// Do not wait for the clusters to run.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct OneArgs {
    #[command(flatten)]
    conn: Conn,
    /// The cluster's name or id.
    cluster: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only clusters in this status.
    #[arg(long)]
    status: Option<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    conn: Conn,
    cluster: String,
    /// Keep streaming new events until the cluster ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    #[command(flatten)]
    conn: Conn,
    cluster: String,
    #[arg(long)]
    hours: i64,
}

/// Runs a command and answers its exit code; errors are printed here.
pub async fn run(command: CtlCommand) -> i32 {
    let json_errors = match &command {
        CtlCommand::Login(a) => a.conn.json(),
        CtlCommand::Quote(a) => a.conn.json(),
        CtlCommand::Apply(a) => a.files.conn.json(),
        CtlCommand::Destroy(a) => a.conn.json(),
        CtlCommand::Get(a) | CtlCommand::Delete(a) | CtlCommand::Kubeconfig(a) => a.conn.json(),
        CtlCommand::List(a) => a.conn.json(),
        CtlCommand::Events(a) => a.conn.json(),
        CtlCommand::Extend(a) => a.conn.json(),
    };
    let result = match command {
        CtlCommand::Login(a) => login(a).await,
        CtlCommand::Quote(a) => quote(a).await,
        CtlCommand::Apply(a) => apply(a).await,
        CtlCommand::Destroy(a) => destroy(a).await,
        CtlCommand::Get(a) => get(a).await,
        CtlCommand::Kubeconfig(a) => kubeconfig(a).await,
        CtlCommand::List(a) => list(a).await,
        CtlCommand::Events(a) => events(a).await,
        CtlCommand::Extend(a) => extend(a).await,
        CtlCommand::Delete(a) => delete(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if json_errors {
                let body = e
                    .problem
                    .clone()
                    .unwrap_or_else(|| json!({"detail": e.message}));
                println!("{}", json!({"error": body, "exit_code": e.exit}));
            } else {
                eprintln!("iocloud: {}", e.message);
            }
            e.exit
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn login(a: LoginArgs) -> CtlResult<i32> {
    let server = a
        .conn
        .server
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let key = match (&a.email, &a.conn.api_key) {
        (_, Some(key)) => key.clone(),
        (Some(email), None) => {
            let password = match std::env::var("IOCLOUD_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprint!("password for {email}: ");
                    let _ = std::io::stderr().flush();
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| CtlError::new(exit::USAGE, e.to_string()))?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let anon = Client::new(&server, None);
            let session = anon
                .post(
                    "/v1/auth/login",
                    &json!({"email": email, "password": password}),
                )
                .await?;
            let token = session["access_token"].as_str().unwrap_or_default();
            let user = Client::new(&server, Some(token.to_string()));
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
            let made = user
                .post(
                    "/v1/api-keys",
                    &json!({"name": format!("iocloud CLI on {host}"), "scopes": ["read", "write"]}),
                )
                .await?;
            made["secret"].as_str().unwrap_or_default().to_string()
        }
        (None, None) => {
            return Err(CtlError::new(
                exit::USAGE,
                "give --api-key (or IOCLOUD_API_KEY), or --email to sign in",
            ));
        }
    };
    let client = Client::new(&server, Some(key.clone()));
    let me = client.get("/v1/me").await?;
    let path = client::save_stored(&Stored {
        server: server.clone(),
        api_key: key,
    })?;
    if a.conn.json() {
        print_json(&json!({"server": server, "me": me, "credentials": path}));
    } else {
        println!(
            "logged in to {server} (organisation {}); the key is in {}",
            me["organization"]["name"]
                .as_str()
                .or(me["org_id"].as_str())
                .unwrap_or("?"),
            path.display()
        );
    }
    Ok(exit::OK)
}

async fn quote(a: QuoteArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let mut body = json!({"gpu_count": a.gpus, "duration_hours": a.hours});
    for (k, v) in [
        ("gpu_model", a.gpu_model.map(Value::from)),
        ("gpu_class", a.gpu_class.map(Value::from)),
        ("gpus_per_node", a.gpus_per_node.map(Value::from)),
        ("max_price_per_gpu_hour", a.max_price.map(Value::from)),
        (
            "regions",
            (!a.regions.is_empty()).then(|| Value::from(a.regions.clone())),
        ),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let q = client.post("/v1/quotes", &body).await?;
    if a.conn.json() {
        print_json(&q);
    } else {
        render::quote(&q);
    }
    Ok(exit::OK)
}

/// Confirms on the terminal; without one, only `--yes` confirms.
fn confirm(question: &str, yes: bool) -> CtlResult<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CtlError::new(
            exit::NOT_CONFIRMED,
            "not confirmed: add --yes to go ahead without a terminal",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CtlError::new(exit::NOT_CONFIRMED, "not confirmed"))
    }
}

async fn apply(a: ApplyArgs) -> CtlResult<i32> {
    let conn = &a.files.conn;
    let client = Client::from_conn(conn)?;
    let specs = specs::read(&a.files.file)?;
    let mut plans = Vec::with_capacity(specs.len());
    for spec in &specs {
        let name = spec["name"].as_str().unwrap_or_default();
        let plan = client
            .put(&format!("/v1/clusters/{}?dry_run=true", seg(name)), spec)
            .await?;
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
            print_json(&json!({"plans": plans, "applied": []}));
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
        wait_running(
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
        print_json(&json!({"plans": plans, "applied": applied, "clusters": clusters}));
    }
    Ok(code)
}

/// Waits until every cluster runs, showing progress; a cluster that fails ends the wait.
async fn wait_running(
    client: &Client,
    ids: &[String],
    timeout: Duration,
    show: bool,
) -> CtlResult<i32> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let mut parts = Vec::new();
        let mut done = 0;
        for id in ids {
            let c = client.get(&format!("/v1/clusters/{}", seg(id))).await?;
            let status = c["status"].as_str().unwrap_or("?").to_string();
            let name = c["name"].as_str().unwrap_or(id);
            match status.as_str() {
                "running" => done += 1,
                "failed" | "degraded" | "terminating" | "terminated" => {
                    if show {
                        eprintln!();
                    }
                    return Err(CtlError::new(
                        exit::CLUSTER_FAILED,
                        format!(
                            "{name} is {status}: {}",
                            c["status_reason"].as_str().unwrap_or("no reason given")
                        ),
                    ));
                }
                _ => {}
            }
            parts.push(render::progress(name, &status, &c["nodes"]));
        }
        if show {
            let line = parts.join("  ");
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else if line != last_line {
                eprintln!("{line}");
            }
            last_line = line;
        }
        if done == ids.len() {
            if show {
                if tty {
                    eprintln!();
                }
                eprintln!("{done} cluster(s) running");
            }
            return Ok(exit::OK);
        }
        if started.elapsed() > timeout {
            if show && tty {
                eprintln!();
            }
            return Err(CtlError::new(
                exit::TIMED_OUT,
                format!("still not running after {} s", timeout.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn destroy(a: FileArgs) -> CtlResult<i32> {
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
            print_json(&json!({"terminated": []}));
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
        print_json(&json!({"terminated": ended}));
    }
    Ok(exit::OK)
}

async fn get(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .get(&format!("/v1/clusters/{}", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        print_json(&c);
    } else {
        render::cluster(&c);
    }
    Ok(exit::OK)
}

async fn kubeconfig(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .get(&format!("/v1/clusters/{}/credentials", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        print_json(&c);
    } else {
        print!("{}", c["kubeconfig"].as_str().unwrap_or_default());
    }
    Ok(exit::OK)
}

async fn list(a: ListArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = String::from("/v1/clusters?limit=200");
        if let Some(s) = &a.status {
            path.push_str(&format!("&status={}", seg(s)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", seg(c)));
        }
        let page = client.get(&path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    if a.conn.json() {
        print_json(&Value::from(items));
    } else {
        render::list(&items);
    }
    Ok(exit::OK)
}

async fn events(a: EventsArgs) -> CtlResult<i32> {
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

async fn extend(a: ExtendArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .post(
            &format!("/v1/clusters/{}/extend", seg(&a.cluster)),
            &json!({"hours": a.hours}),
        )
        .await?;
    if a.conn.json() {
        print_json(&c);
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

async fn delete(a: OneArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let c = client
        .delete(&format!("/v1/clusters/{}", seg(&a.cluster)))
        .await?;
    if a.conn.json() {
        print_json(&c);
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
