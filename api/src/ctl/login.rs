//! `iocloud login`: checks an API key (or signs in with an email and password and makes one)
//! and stores it for the other commands.

use std::io::{BufRead, Write};

use clap::Args;
use serde_json::json;

use super::client::{self, Client, Conn, CtlError, CtlResult, Stored, exit};
use super::render;

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// Sign in with this email; the password comes from IOCLOUD_PASSWORD or standard input.
    #[arg(long)]
    email: Option<String>,
}

pub async fn run(a: LoginArgs) -> CtlResult<i32> {
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
        render::json(&json!({"server": server, "me": me, "credentials": path}));
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
