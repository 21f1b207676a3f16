//! A server in a process of its own, for tests that kill it (SIGKILL) and start it again: the
//! test binary runs itself again with `--ignored --exact` on an entry of its own that calls
//! [`serve_as_child`], which serves on the database and address the environment names and
//! prints a line once ready. Everything the child prints after that reaches the test as lines.

use std::process::Stdio;
use std::time::Duration;

use iocloud_api::{Config, Server};
use tokio::io::{AsyncBufReadExt, BufReader};

const DB: &str = "IOCLOUD_CHILD_DB";
const LISTEN: &str = "IOCLOUD_CHILD_LISTEN";
const READY: &str = "IOCLOUD_CHILD_READY";

/// A child server: its process, and the lines it printed after it was ready.
pub struct ChildServer {
    pub process: tokio::process::Child,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ChildServer {
    /// Kills it with SIGKILL: no shutdown code runs.
    pub async fn kill(&mut self) {
        self.process.start_kill().expect("SIGKILL");
        let _ = self.process.wait().await;
    }
}

/// A loopback address nothing listens on now.
pub fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Starts this test binary again running the ignored test `entry` (a path such as
/// `crash::child_server`) on `db` at `listen`, with `env` beside; waits until it serves. Its
/// log goes to `log` in the temp directory.
pub async fn start_child(
    entry: &str,
    db: &str,
    listen: &str,
    env: &[(&str, String)],
    log: &str,
) -> ChildServer {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB, db)
        .env(LISTEN, listen)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::temp_dir().join(log))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut process = command.spawn().expect("the test binary starts again");
    // Read its output all along, so it never blocks on a full pipe.
    let mut out = BufReader::new(process.stdout.take().unwrap()).lines();
    let (send, mut lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let _ = send.send(line);
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.recv().await {
            if line.contains(READY) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the child server did not start");
    ChildServer { process, lines }
}

/// The child's side: serves on the database and address [`start_child`] named, with `tweak`
/// applied to the test configuration and `started` run once it serves; until killed. Does
/// nothing when not started as a child (a normal test run).
pub fn serve_as_child(
    tweak: impl FnOnce(&mut Config) + Send,
    started: impl FnOnce(&Server) + Send,
) {
    let (Ok(db), Ok(listen)) = (std::env::var(DB), std::env::var(LISTEN)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let _telemetry = iocloud_api::telemetry::init(false, None);
        let mut config = Config::for_tests(&db);
        config.listen = listen.parse().expect("an address");
        tweak(&mut config);
        let server = Server::start(config)
            .await
            .expect("the child server starts");
        started(&server);
        println!("{READY} {}", server.url());
        std::future::pending::<()>().await;
    });
}
