//! The CLI's side of the API: where the server is, the stored key, requests, and the exit
//! code each kind of failure maps to.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit codes scripts can rely on (also in `docs/cli.md`).
pub mod exit {
    pub const OK: i32 = 0;
    /// The server could not be reached, or answered something unexpected.
    pub const FAILED: i32 = 1;
    /// Bad arguments or an unreadable file (clap uses 2 for its own usage errors too).
    pub const USAGE: i32 = 2;
    /// A plan was not confirmed.
    pub const NOT_CONFIRMED: i32 = 3;
    /// The API refused the request (4xx): invalid, not found, conflict, quota, funds...
    pub const REFUSED: i32 = 4;
    /// A cluster failed (or degraded) while we waited for it.
    pub const CLUSTER_FAILED: i32 = 5;
    /// Waiting timed out.
    pub const TIMED_OUT: i32 = 6;
    /// No credentials: run `iocloud login`.
    pub const UNAUTHENTICATED: i32 = 7;
}

/// A failure, with its exit code and what to print.
#[derive(Debug)]
pub struct CtlError {
    pub exit: i32,
    pub message: String,
    /// The problem document, when the API refused.
    pub problem: Option<Value>,
}

impl CtlError {
    pub fn new(exit: i32, message: impl Into<String>) -> CtlError {
        CtlError {
            exit,
            message: message.into(),
            problem: None,
        }
    }
}

pub type CtlResult<T> = Result<T, CtlError>;

/// Where the API is and who we are; flags and environment over the stored login.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The control plane's base URL (default: the one `iocloud login` stored).
    #[arg(long, env = "IOCLOUD_SERVER", global = true)]
    pub server: Option<String>,
    /// An API key (default: the one `iocloud login` stored).
    #[arg(long, env = "IOCLOUD_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// `text` for people, `json` for scripts.
    #[arg(long, short = 'o', default_value = "text", value_parser = ["text", "json"], global = true)]
    pub output: String,
}

impl Conn {
    pub fn json(&self) -> bool {
        self.output == "json"
    }
}

/// What `iocloud login` keeps, in `$IOCLOUD_HOME/credentials.json` (default
/// `~/.config/iocloud`), readable by its owner only.
#[derive(Serialize, Deserialize, Default)]
pub struct Stored {
    pub server: String,
    pub api_key: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("server", &self.server)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

pub fn credentials_path() -> PathBuf {
    if let Some(home) = std::env::var_os("IOCLOUD_HOME") {
        return PathBuf::from(home).join("credentials.json");
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("iocloud").join("credentials.json")
}

pub fn load_stored() -> Option<Stored> {
    let text = std::fs::read_to_string(credentials_path()).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn save_stored(stored: &Stored) -> CtlResult<PathBuf> {
    let path = credentials_path();
    let fail = |e: std::io::Error| CtlError::new(exit::FAILED, format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(stored).unwrap_or_default();
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
    }
    #[cfg(not(unix))]
    std::fs::write(&path, text).map_err(fail)?;
    Ok(path)
}

/// The server: `--server`, `IOCLOUD_SERVER`, the stored login's, or the local default.
fn server_of(conn: &Conn, stored: Option<&Stored>) -> String {
    conn.server
        .clone()
        .or_else(|| stored.map(|s| s.server.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
}

pub struct Client {
    http: reqwest::Client,
    pub base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(server: &str, key: Option<String>) -> Client {
        Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            base: server.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// For public reads (the explorer, governance): the server from flags, environment or the
    /// stored login, and the key when there is one.
    pub fn public(conn: &Conn) -> Client {
        let stored = load_stored();
        let key = conn
            .api_key
            .clone()
            .or_else(|| stored.as_ref().map(|s| s.api_key.clone()))
            .filter(|k| !k.is_empty());
        Client::new(&server_of(conn, stored.as_ref()), key)
    }

    /// From flags, environment and the stored login; refuses without a key.
    pub fn from_conn(conn: &Conn) -> CtlResult<Client> {
        let stored = load_stored();
        let server = server_of(conn, stored.as_ref());
        let key = conn
            .api_key
            .clone()
            .or_else(|| stored.map(|s| s.api_key))
            .filter(|k| !k.is_empty());
        if key.is_none() {
            return Err(CtlError::new(
                exit::UNAUTHENTICATED,
                "not logged in: run `iocloud login` or set IOCLOUD_API_KEY",
            ));
        }
        Ok(Client::new(&server, key))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// Sends and reads the JSON answer; a problem document becomes the error. A request the
    /// server turned away before doing anything of it (`overloaded`, `rate_limited`) is sent
    /// again after its `Retry-After`, up to [`BUSY_TRIES`] times in all.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> CtlResult<Value> {
        let mut tries = 1;
        let (status, body, text) = loop {
            // A body that cannot be copied (a stream) is sent once.
            let Some(copy) = req.try_clone() else {
                let (status, body, text, _) = self.answer(req).await?;
                break (status, body, text);
            };
            let (status, body, text, wait) = self.answer(copy).await?;
            match wait {
                Some(wait) if tries < BUSY_TRIES => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => break (status, body, text),
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let detail = body["detail"].as_str().unwrap_or(&text).to_string();
        let code = body["code"].as_str().unwrap_or("error");
        let exit = match status.as_u16() {
            401 => exit::UNAUTHENTICATED,
            400..=499 => exit::REFUSED,
            _ => exit::FAILED,
        };
        Err(CtlError {
            exit,
            message: format!("{code}: {detail}"),
            problem: Some(body),
        })
    }

    /// The answer's status, JSON body and text, and how long to wait before sending it again
    /// when the server turned it away as busy.
    async fn answer(
        &self,
        req: reqwest::RequestBuilder,
    ) -> CtlResult<(reqwest::StatusCode, Value, String, Option<Duration>)> {
        let res = req
            .send()
            .await
            .map_err(|e| CtlError::new(exit::FAILED, format!("cannot reach {}: {e}", self.base)))?;
        let (status, after) = (res.status(), retry_after(res.headers()));
        let text = res.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let wait = busy_wait(body["code"].as_str(), after);
        Ok((status, body, text, wait))
    }

    pub async fn get(&self, path: &str) -> CtlResult<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> CtlResult<Value> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> CtlResult<Value> {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> CtlResult<Value> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }
}

/// Attempts at a request the server turns away as busy before giving up.
pub const BUSY_TRIES: u32 = 5;
/// The longest `Retry-After` honoured; a longer one is cut to this.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// How long to wait before sending again a request the server turned away before doing
/// anything of it (its problem's `code` is `overloaded` or `rate_limited`): its `Retry-After`,
/// 1 s when absent, at most [`LONGEST_WAIT`]. `None` for any other answer: a login refused for
/// too many attempts, say, must not count more.
pub fn busy_wait(code: Option<&str>, retry_after: Option<Duration>) -> Option<Duration> {
    matches!(code, Some("overloaded" | "rate_limited")).then(|| {
        retry_after
            .unwrap_or(Duration::from_secs(1))
            .min(LONGEST_WAIT)
    })
}

/// An answer's `Retry-After` in seconds (the only form this server sends).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A path segment, escaped.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The events of every complete server-sent-event frame in `buffer` (their `data:` lines as
/// JSON), removing those frames and leaving a partial one for the next chunk.
pub fn drain_sse(buffer: &mut String) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let frame: String = buffer.drain(..end + 2).collect();
        let data: String = frame
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if let Ok(e) = serde_json::from_str::<Value>(&data) {
            out.push(e);
        }
    }
    out
}
