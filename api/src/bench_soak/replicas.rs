//! The soak's replicas: `iocloud serve` processes of this same binary, each on a port of its
//! own, reaching Postgres through a proxy of its own and Redis through one proxy they share, so
//! the soak can kill a replica, cut or slow its database and cut Redis without touching the
//! machine's services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::proxy::Proxy;

pub struct Replica {
    pub addr: SocketAddr,
    /// Its way to Postgres.
    pub postgres: Proxy,
    env: Vec<(String, String)>,
    log: PathBuf,
    process: Option<tokio::process::Child>,
}

impl Replica {
    /// Starts a replica at `addr` with `env` (its settings) and waits until it is ready.
    pub async fn start(
        addr: SocketAddr,
        postgres: Proxy,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Replica> {
        let mut r = Replica {
            addr,
            postgres,
            env,
            log,
            process: None,
        };
        r.launch().await?;
        Ok(r)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .env("IOCLOUD_LISTEN", self.addr.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // The server logs to stdout: both go to the replica's file.
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        self.process = Some(command.spawn().context("starting a replica")?);
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let ready = client
                .get(format!("{}/readyz", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "replica {} not ready within {limit:?} (log: {})",
                self.addr,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown code runs, leases are left to run out.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.start_kill();
            let _ = p.wait().await;
        }
    }

    /// Starts it again on the same address; the time until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.launch().await?;
        Ok(t.elapsed())
    }

    /// SIGTERM, then waits for it to drain and exit.
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            if let Some(pid) = p.id() {
                // kill(1): the one signal needs no binding to libc.
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), p.wait()).await;
            let _ = p.start_kill();
        }
    }
}
