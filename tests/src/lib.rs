//! Test harness: start the real server on a random port against a database of its own (a temp
//! SQLite file, or a fresh Postgres database when `IOCLOUD_TEST_POSTGRES_URL` is set) and talk
//! to it over HTTP and GraphQL like any client. The fiat rail's tests talk to a localstripe
//! peer when `IOCLOUD_TEST_STRIPE_URL` names one ([`stripe_url`]).
//!
//! Beside the harness: a provider's fleet to rent from (`fleet`), a device driven as its agent
//! drives it (`devices`), making and reading clusters as their customer does (`clusters`), a
//! GraphQL WebSocket client (`graphql_ws`), a server in a process of its own to kill (`child`), money as exact micro-units (`money`) and the few
//! checks only the database or the ledger can answer (`books`).

mod books;
mod child;
mod cli;
mod clusters;
mod devices;
mod fleet;
mod graphql_ws;
mod money;
mod solana;
mod stripe;

use std::time::Duration;

use iocloud_api::{Config, Server};
use iocloud_db::scratch::ScratchDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use books::{GPU_BOOKS_WRONG, QUOTAS_WRONG, ledger_balances};
pub use child::{ChildServer, free_address, serve_as_child, start_child};
pub use cli::{iocloud, iocloud_with_key};
pub use clusters::{
    cluster, clusters, create, current_nodes, follow, kinds, running_cluster, wait_status,
};
pub use devices::{
    agent, beat, cpu_box, heartbeat, proof, rig, staked_rig, verified_device, verified_rig,
};
pub use fleet::{
    Fleet, agent_report, assignment, fleet, fleet_run_by, frankfurt, gpus_free, machine,
    node_test_answer, pass_node_test, post_node_test, provider_devices, ready_node, wait_for,
};
pub use graphql_ws::{Socket, answer_to, connect, error_code, next_json, send_op};
pub use iocloud_api::proxy::{Proxy, address_of};
pub use money::{balance, micros, units};
pub use solana::{ChainApp, Peer, earn, solana_url};
pub use stripe::{CardApp, STRIPE_KEY, dispute, now_secs, send_webhook, stripe_event, take_cards};

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The admin URL of a Postgres server; each test creates and drops its own database.
    Postgres(String),
}

impl Backend {
    /// Postgres when `IOCLOUD_TEST_POSTGRES_URL` is set; otherwise the test is skipped.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                eprintln!("IOCLOUD_TEST_POSTGRES_URL is not set: skipping the Postgres run");
                None
            }
        }
    }
}

/// `IOCLOUD_TEST_REDIS_URL`, when set.
pub fn redis_url() -> Option<String> {
    std::env::var("IOCLOUD_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The SMTP peer (`IOCLOUD_TEST_SMTP_URL`, `IOCLOUD_TEST_SMTP_PEER_URL`, which
/// `infra/scripts/services.sh` starts and prints): the server's address and the peer's HTTP
/// side, where tests read what it received; otherwise `None`, and the test says it goes on
/// without.
pub fn smtp_peer() -> Option<(String, String)> {
    match (
        std::env::var("IOCLOUD_TEST_SMTP_URL"),
        std::env::var("IOCLOUD_TEST_SMTP_PEER_URL"),
    ) {
        (Ok(smtp), Ok(peer)) if !smtp.is_empty() && !peer.is_empty() => Some((smtp, peer)),
        _ => {
            eprintln!("IOCLOUD_TEST_SMTP_URL is not set: no email through the SMTP peer");
            None
        }
    }
}

/// The base URL of the localstripe peer (`IOCLOUD_TEST_STRIPE_URL`, which
/// `infra/scripts/services.sh` starts and prints); otherwise the test is skipped.
pub fn stripe_url() -> Option<String> {
    match std::env::var("IOCLOUD_TEST_STRIPE_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ => {
            eprintln!("IOCLOUD_TEST_STRIPE_URL is not set: skipping the Stripe run");
            None
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = $crate::Backend::postgres() {
                        super::$name(b).await
                    }
                }
            }
        )*
    };
}

/// A database that exists for one test and is removed after it.
pub struct TestDb(ScratchDb);

impl TestDb {
    pub async fn create(backend: &Backend) -> TestDb {
        TestDb(match backend {
            Backend::Sqlite => ScratchDb::sqlite().expect("temp dir"),
            Backend::Postgres(admin) => ScratchDb::postgres(admin)
                .await
                .expect("create a Postgres test database"),
        })
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }
}

/// A running app and a client for it.
pub struct TestApp {
    pub server: Server,
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
}

/// An answer: status, headers and the JSON body (or `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text);
        assert_eq!(self.code(), code, "code of {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"].as_u64(), Some(u64::from(status)));
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

/// Another server on a test app's database: a second replica.
pub struct Replica {
    pub server: Server,
    pub base: String,
}

/// A signed-up user acting in their own organisation.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub org_id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create(&backend).await;
        Self::spawn_on(db, tweak).await
    }

    /// Starts an app on an existing test database (a second replica, say).
    pub async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(db.url());
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let base = server.url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        TestApp {
            server,
            base,
            client,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts another server on this app's database (give it the same Redis in `tweak`).
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> Replica {
        let mut config = Config::for_tests(self.db.url());
        tweak(&mut config);
        let server = Server::start(config).await.expect("replica starts");
        Replica {
            base: server.url(),
            server,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req.send().await.expect("request sent")).await
    }

    pub async fn answer(res: reqwest::Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// A GET without credentials (pages, probes, documents).
    pub async fn get_public(&self, path: &str) -> Answer {
        self.request(Method::GET, path, None, None).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None).await
    }

    /// Every item of a paged list (`items`, `next_cursor`), following the cursor to the end.
    pub async fn items(&self, path: &str, token: &str) -> Vec<Value> {
        let join = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}{join}limit=200&cursor={c}"),
                None => format!("{path}{join}limit=200"),
            };
            let page = self.get(&page_path, token).await;
            assert_eq!(page.status, 200, "{page_path}: {}", page.text);
            items.extend(page.body["items"].as_array().unwrap().iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// Sends raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::answer(req.send().await.expect("request sent")).await
    }

    pub async fn signup(&self, email: &str, org: &str) -> Session {
        let a = self
            .post(
                "/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Test User", "org_name": org}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "signup: {}", a.text);
        session(&a.body)
    }

    /// A new platform operator, signed in.
    pub async fn operator(&self) -> Session {
        let email = format!("ops-{}@example.com", rand_suffix());
        let ops = self.signup(&email, "Platform").await;
        self.exec(
            "UPDATE users SET is_operator = TRUE WHERE email = $1",
            &email,
        )
        .await;
        ops
    }

    /// A platform operator (a new one each call) grants `amount` of `currency` to `org_id`.
    pub async fn grant_credit(&self, org_id: &str, amount: &str, currency: &str) {
        let ops = self.operator().await;
        let g = self
            .post(
                "/v1/admin/credits",
                Some(&ops.access),
                json!({"org_id": org_id, "amount": amount, "currency": currency, "reason": "test grant"}),
            )
            .await;
        assert_eq!(g.status, StatusCode::OK, "grant: {}", g.text);
    }

    pub async fn login(&self, email: &str, org_id: Option<&str>) -> Session {
        let a = self
            .post(
                "/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD, "org_id": org_id}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "login: {}", a.text);
        session(&a.body)
    }

    /// Creates an API key with these scopes and returns (id, secret).
    pub async fn api_key(&self, token: &str, scopes: &[&str]) -> (String, String) {
        let a = self
            .post(
                "/v1/api-keys",
                Some(token),
                json!({"name": "test key", "scopes": scopes}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "create key: {}", a.text);
        (
            a.body["api_key"]["id"].as_str().unwrap().to_string(),
            a.body["secret"].as_str().unwrap().to_string(),
        )
    }

    /// The invitation token from the latest email this server delivered to `email` (emails are
    /// logged, not sent; the database keeps no token).
    pub async fn invitation_token(&self, email: &str) -> String {
        let body = self
            .server
            .state
            .control
            .outbox
            .mailbox()
            .latest_to(email)
            .expect("an email was delivered")
            .body;
        let start = body.find("ioinv_").expect("token in the email");
        body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }

    /// Brings `email` into the session's organisation with `role`, returning their session there.
    pub async fn add_member(&self, owner: &Session, email: &str, role: &str) -> Session {
        let a = self
            .post(
                "/v1/invitations",
                Some(&owner.access),
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "invite: {}", a.text);
        let token = self.invitation_token(email).await;
        let newcomer = self.signup(email, "Own org").await;
        let a = self
            .post(
                "/v1/invitations/accept",
                Some(&newcomer.access),
                json!({"token": token}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "accept: {}", a.text);
        self.login(email, Some(&owner.org_id)).await
    }

    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Answer {
        self.post(
            "/graphql",
            token,
            json!({"query": query, "variables": variables}),
        )
        .await
    }

    /// One text value from the test database.
    pub async fn scalar(&self, sql: &str, arg: &str) -> String {
        iocloud_db::db_run!(&self.server.state.control.db, |p| sqlx::query_scalar(sql)
            .bind(arg)
            .fetch_one(p)
            .await)
        .expect("query")
    }

    /// A count from the test database.
    pub async fn count(&self, sql: &str) -> i64 {
        iocloud_db::db_run!(&self.server.state.control.db, |p| sqlx::query_scalar(sql)
            .fetch_one(p)
            .await)
        .expect("query")
    }

    /// Runs a statement with one text argument on the test database.
    pub async fn exec(&self, sql: &str, arg: &str) {
        iocloud_db::db_run!(&self.server.state.control.db, |p| sqlx::query(sql)
            .bind(arg)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .expect("exec");
    }

    pub async fn stop(self) {
        let TestApp { server, db, .. } = self;
        server.stop().await;
        drop(db);
    }
}

pub fn session(body: &Value) -> Session {
    Session {
        user_id: body["user"]["id"].as_str().expect("user id").to_string(),
        org_id: body["organization"]["id"]
            .as_str()
            .expect("org id")
            .to_string(),
        email: body["user"]["email"].as_str().expect("email").to_string(),
        access: body["access_token"]
            .as_str()
            .expect("access token")
            .to_string(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_string(),
    }
}

/// A short random suffix, for names a test must not repeat.
fn rand_suffix() -> String {
    iocloud_db::ids::new_id("x")[2..].to_lowercase()
}
