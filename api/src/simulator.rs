//! `iocloud agent simulate`: many node agents in one process, speaking the real agent API over
//! HTTP. Each answers its verification challenge, heartbeats, long-polls for assignments,
//! brings nodes up after a delay (answering each node's test first), proves itself once an
//! hour while it runs no node, and, at configurable rates, fails nodes, answers node tests
//! wrongly or too slowly, answers its hourly proof wrongly or goes silent.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use iocloud_control::providers::agent::Workload;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::ctl::client::retry_after;

mod fleet;

pub use fleet::{register, register_specs, sample_specs};

/// One simulated machine: its id, agent token and GPU count.
#[derive(Clone, Debug)]
pub struct SimDevice {
    pub id: String,
    pub token: String,
    pub gpus: i64,
}

#[derive(Args, Clone, Debug)]
pub struct SimOptions {
    /// Seconds between heartbeats (the server's `heartbeat_interval_secs` by default).
    #[arg(long)]
    pub heartbeat_secs: Option<f64>,
    /// Seconds a node takes from assignment to ready.
    #[arg(long, default_value_t = 3.0)]
    pub node_ready_secs: f64,
    /// Chance that a node fails instead of coming up (0 to 1).
    #[arg(long, default_value_t = 0.02)]
    pub node_failure_rate: f64,
    /// Chance per heartbeat that a device goes silent (then offline) for a while (0 to 1).
    #[arg(long, default_value_t = 0.0005)]
    pub offline_rate: f64,
    /// Seconds a silent device stays silent.
    #[arg(long, default_value_t = 120.0)]
    pub offline_secs: f64,
    /// Chance that a node answers its node test wrongly (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub node_test_wrong_rate: f64,
    /// Chance that a node answers its node test after the test's limit (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub node_test_slow_rate: f64,
    /// The round trip every simulated link measures, ms (the simulated machines share one
    /// network), give or take a fifth.
    #[arg(long, default_value_t = 2.0)]
    pub link_rtt_ms: f64,
    /// The throughput every simulated link measures, Mbit/s.
    #[arg(long, default_value_t = 10_000)]
    pub link_bandwidth_mbps: i64,
    /// Chance per hour that a device answers its hourly proof wrongly (0 to 1); its VRAM is
    /// always reported as its model's.
    #[arg(long, default_value_t = 0.0)]
    pub proof_failure_rate: f64,
    /// Agents start at random within this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub start_spread_secs: f64,
    /// Seed for the random choices, so a run can be repeated.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            heartbeat_secs: None,
            node_ready_secs: 3.0,
            node_failure_rate: 0.02,
            offline_rate: 0.0005,
            offline_secs: 120.0,
            node_test_wrong_rate: 0.0,
            node_test_slow_rate: 0.0,
            link_rtt_ms: 2.0,
            link_bandwidth_mbps: 10_000,
            proof_failure_rate: 0.0,
            start_spread_secs: 5.0,
            seed: 7,
        }
    }
}

/// What the agents have done so far.
#[derive(Debug, Default)]
pub struct SimStats {
    pub verified: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_errors: AtomicU64,
    pub nodes_ready: AtomicU64,
    pub nodes_failed: AtomicU64,
    /// Node tests answered and not passed (wrong or too slow): those nodes failed.
    pub node_tests_failed: AtomicU64,
    pub went_silent: AtomicU64,
    pub proofs_passed: AtomicU64,
    /// Hourly proofs answered and not passed (wrong, late or short of VRAM).
    pub proofs_failed: AtomicU64,
    /// Hourly proofs asked for and refused (an hour already proved, a clock astray).
    pub proofs_refused: AtomicU64,
    /// Seconds the wall clocks of the agents that follow jumps are off by now (see
    /// [`SimStats::jump_clocks`]).
    clock_jump_secs: std::sync::atomic::AtomicI64,
}

impl SimStats {
    /// Moves the wall clock of one agent in ten by `secs` from true time (0: back to true), as
    /// a machine's clock stepped by NTP or set by hand moves: the hourly proofs they schedule
    /// by it come early, late or twice, and the server must take that in its stride.
    pub fn jump_clocks(&self, secs: i64) {
        self.clock_jump_secs.store(secs, Ordering::Relaxed);
    }
}

struct Agent {
    http: reqwest::Client,
    base: String,
    device: SimDevice,
    options: SimOptions,
    stats: Arc<SimStats>,
    /// The nodes it runs now: assigned to it and neither failed nor released.
    running: Mutex<HashSet<String>>,
    /// Whether its wall clock follows [`SimStats::jump_clocks`].
    jumps: bool,
}

/// Seconds in an hour: the hourly proof's period.
const HOUR_SECS: f64 = 3600.0;
/// How long after reporting a node released the agent reports it again if the server still
/// lists it as releasing.
const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// How often an agent waiting for its next proof looks at its clock.
const CLOCK_LOOK_SECS: f64 = 5.0;

/// Seconds since the Unix epoch by the wall clock, which the server's hours follow.
fn wall_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Agent {
    fn url(&self, tail: &str) -> String {
        format!("{}/agent/v1/devices/{}/{tail}", self.base, self.device.id)
    }

    async fn post(&self, tail: &str, body: Value) -> anyhow::Result<Value> {
        self.send(tail, self.http.post(self.url(tail)).json(&body))
            .await
    }

    /// Sends `request` (to `tail`) with the device's token; its JSON answer, or an error with
    /// the status and body when it is not a success.
    async fn send(&self, tail: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let res = request.bearer_auth(&self.device.token).send().await?;
        let status = res.status();
        let text = res.text().await?;
        anyhow::ensure!(status.is_success(), "{tail}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Reports on a node as a real agent would: again and again while the server cannot be
    /// reached or is busy (a restart, say; after the `Retry-After` it asks for), until it takes
    /// the report or refuses it (the node is no longer this device's to report on); for two
    /// minutes at most.
    async fn report(&self, tail: &str, body: Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let sent = self
                .http
                .post(self.url(tail))
                .bearer_auth(&self.device.token)
                .json(&body)
                .send()
                .await;
            let (settled, asked) = match &sent {
                Ok(r) => {
                    let s = r.status();
                    let settled = s.is_success()
                        || (s.is_client_error() && s != reqwest::StatusCode::TOO_MANY_REQUESTS);
                    (settled, retry_after(r.headers()))
                }
                Err(_) => (false, None),
            };
            if settled || std::time::Instant::now() > deadline {
                return;
            }
            let pause = Duration::from_millis(300);
            tokio::time::sleep(asked.map_or(pause, |a| a.max(pause))).await;
        }
    }

    /// Says hello and answers challenges until the device is verified.
    async fn verify(&self) -> anyhow::Result<u64> {
        loop {
            let hello = self
                .post("hello", json!({"agent_version": "iocloud-sim/1"}))
                .await?;
            let interval = hello["heartbeat_interval_secs"].as_u64().unwrap_or(20);
            let Some(c) = hello.get("challenge").filter(|c| !c.is_null()) else {
                return Ok(interval);
            };
            let nonce = c["nonce"].as_str().unwrap_or_default().to_string();
            let difficulty = c["difficulty"].as_u64().unwrap_or(0) as u32;
            let answer = {
                let nonce = nonce.clone();
                tokio::task::spawn_blocking(move || {
                    iocloud_control::providers::verification::solve(&nonce, difficulty)
                })
                .await?
            };
            let verified = self
                .post("challenge", json!({"nonce": nonce, "answer": answer}))
                .await?;
            if verified["status"] != "verification_failed" {
                self.stats.verified.fetch_add(1, Ordering::Relaxed);
                return Ok(interval);
            }
        }
    }

    async fn run(self: Arc<Self>, mut rng: rand::rngs::StdRng) {
        // Machines do not all boot in the same millisecond.
        tokio::time::sleep(Duration::from_secs_f64(
            self.options.start_spread_secs * rng.random::<f64>(),
        ))
        .await;
        // Like a real agent, keep trying while the server is unreachable or busy; give up
        // only when it refuses the device (a bad or retired token).
        let interval = loop {
            match self.verify().await {
                Ok(i) => break self.options.heartbeat_secs.unwrap_or(i as f64),
                Err(e) if e.to_string().contains(" 401 ") || e.to_string().contains(" 403 ") => {
                    tracing::warn!(device = %self.device.id, error = %e, "simulated agent refused");
                    return;
                }
                Err(e) => {
                    tracing::debug!(device = %self.device.id, error = %e, "simulated agent retries verification");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let worker = tokio::spawn(
            self.clone()
                .work(rand::rngs::StdRng::seed_from_u64(rng.random())),
        );
        let prover = tokio::spawn(
            self.clone()
                .prove_hourly(rand::rngs::StdRng::seed_from_u64(rng.random())),
        );
        // Spread the first heartbeats over one interval.
        tokio::time::sleep(Duration::from_secs_f64(interval * rng.random::<f64>())).await;
        loop {
            if rng.random::<f64>() < self.options.offline_rate {
                self.stats.went_silent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs_f64(self.options.offline_secs)).await;
            }
            let running = self.running_nodes();
            let (gpu_pct, cpu_pct) = if running > 0 {
                (rng.random_range(40..100), rng.random_range(20..80))
            } else {
                // Idle: the GPUs rest, and the CPU runs little more than the agent.
                (rng.random_range(0..5), rng.random_range(1..=10))
            };
            let beat = json!({"free_gpus": self.device.gpus, "utilization_pct": gpu_pct,
                "cpu_utilization_pct": cpu_pct, "running_nodes": running,
                "temperature_c": rng.random_range(35..80), "agent_version": "iocloud-sim/1"});
            match self.post("heartbeat", beat).await {
                Ok(_) => self.stats.heartbeats.fetch_add(1, Ordering::Relaxed),
                Err(_) => self.stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed),
            };
            if worker.is_finished() {
                prover.abort();
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64(interval)).await;
        }
    }

    /// Long-polls for assignments and plays each node's life.
    async fn work(self: Arc<Self>, mut rng: rand::rngs::StdRng) {
        let mut seen = std::collections::HashSet::new();
        // Releases reported, by when: one the server still lists a while later is reported
        // again (the report may have been lost, or refused while the server was failing), as
        // an agent reconciling what it runs with what it is told does.
        let mut released: std::collections::HashMap<String, std::time::Instant> =
            Default::default();
        loop {
            let res = self
                .http
                .get(self.url("assignments?wait_secs=25"))
                .bearer_auth(&self.device.token)
                .send()
                .await;
            let body: Value = match res {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
                Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN => return,
                // Busy: come back when it asks; unreachable or failing: in a while.
                Ok(r) => {
                    let asked = retry_after(r.headers());
                    tokio::time::sleep(asked.unwrap_or(Duration::from_secs(5))).await;
                    continue;
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            let mut news = false;
            let listed: HashSet<String> = body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["id"].as_str().map(str::to_string))
                .collect();
            released.retain(|id, _| listed.contains(id));
            for a in body["items"].as_array().into_iter().flatten() {
                let id = a["id"].as_str().unwrap_or_default().to_string();
                let status = a["status"].as_str().unwrap_or_default();
                let tail = format!("nodes/{id}/status");
                if status == "releasing" {
                    if released
                        .get(&id)
                        .is_some_and(|at| at.elapsed() < RELEASE_AGAIN_AFTER)
                    {
                        continue;
                    }
                    news = true;
                    released.insert(id.clone(), std::time::Instant::now());
                    self.running_set().remove(&id);
                    self.report(&tail, json!({"status": "released"})).await;
                    continue;
                }
                if !seen.insert(format!("{id}:{status}")) {
                    continue;
                }
                news = true;
                self.running_set().insert(id.clone());
                let role = a["bootstrap"]["role"]
                    .as_str()
                    .unwrap_or("node")
                    .to_string();
                // A container's ports answer beside its SSH (an agent that knew no workload
                // would find none).
                let ports = Workload::read_from(&a["bootstrap"]).container_ports;
                self.report(&tail, json!({"status": "starting"})).await;
                let ready_in = self.options.node_ready_secs * (0.5 + rng.random::<f64>());
                let fails = rng.random::<f64>() < self.options.node_failure_rate;
                let test = TestPlay {
                    wrong: rng.random::<f64>() < self.options.node_test_wrong_rate,
                    slow: rng.random::<f64>() < self.options.node_test_slow_rate,
                    jitter: 0.8 + 0.4 * rng.random::<f64>(),
                };
                let bootstrap = a["bootstrap"].clone();
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(ready_in)).await;
                    if !fails && !this.pass_node_test(&id, &bootstrap, test).await {
                        this.stats.node_tests_failed.fetch_add(1, Ordering::Relaxed);
                        this.running_set().remove(&id);
                        return;
                    }
                    let report = if fails {
                        this.stats.nodes_failed.fetch_add(1, Ordering::Relaxed);
                        this.running_set().remove(&id);
                        json!({"status": "failed", "reason": "simulated failure: the image did not start"})
                    } else {
                        this.stats.nodes_ready.fetch_add(1, Ordering::Relaxed);
                        let mut ready = json!({"status": "ready", "endpoints": endpoints(&role, &this.device.id, &ports)});
                        if role == "control_plane" {
                            ready["ca_certificate"] = json!(simulated_ca(&this.device.id));
                        }
                        ready
                    };
                    this.report(&tail, report).await;
                });
            }
            // Nothing new in the answer (empty, or only what it has handled): the server
            // answers at once while it lists anything, so wait a little before asking again.
            if !news {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// How a simulated node plays its test: wrongly, too slowly, and the link's jitter.
#[derive(Clone, Copy)]
struct TestPlay {
    wrong: bool,
    slow: bool,
    jitter: f64,
}

impl Agent {
    /// Answers the node's test, if its bootstrap has one: solved off the async threads, with
    /// the link to its peer as the simulated network has it. Whether the node may go on to
    /// `ready` (a test not passed has failed it).
    async fn pass_node_test(&self, node: &str, bootstrap: &Value, play: TestPlay) -> bool {
        let Some((modulus, puzzle, peer)) = iocloud_control::providers::agent::test_of(bootstrap)
        else {
            return true;
        };
        let limit_ms = bootstrap["test"]["limit_ms"].as_i64().unwrap_or(0);
        let started = std::time::Instant::now();
        let solved = tokio::task::spawn_blocking(move || {
            iocloud_control::providers::node_test::solve(&modulus, &puzzle)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        let answer = if play.wrong {
            // The right digest with its last digit changed.
            let mut wrong = solved.clone();
            let last = if wrong.ends_with('0') { "1" } else { "0" };
            wrong.pop();
            wrong + last
        } else {
            solved
        };
        let mut elapsed_ms = started.elapsed().as_millis() as i64;
        if play.slow {
            elapsed_ms = elapsed_ms.max(limit_ms + 1000);
        }
        let mut body = json!({"answer": answer, "elapsed_ms": elapsed_ms});
        if peer.is_some() {
            body["link"] = json!({
                "rtt_ms": (self.options.link_rtt_ms * play.jitter).max(0.01),
                "bandwidth_mbps": self.options.link_bandwidth_mbps,
            });
        }
        let tail = format!("nodes/{node}/test");
        // Again while the server cannot be reached or is busy, as with reports.
        for _ in 0..400 {
            match self.post(&tail, body.clone()).await {
                Ok(result) => return result["outcome"] == "passed",
                Err(e) if e.to_string().contains(": 4") && !e.to_string().contains(": 429") => {
                    tracing::debug!(device = %self.device.id, error = %e, "simulated node test refused");
                    return false;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        false
    }

    /// Its wall clock: true time, or true time moved by the jump its clocks are under.
    fn wall(&self) -> f64 {
        let jump = if self.jumps {
            self.stats.clock_jump_secs.load(Ordering::Relaxed)
        } else {
            0
        };
        wall_secs() + jump as f64
    }

    fn running_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The nodes it runs now, as its heartbeat says: at most one per GPU (one on a CPU-only
    /// device).
    fn running_nodes(&self) -> i64 {
        (self.running_set().len() as i64).min(self.device.gpus.max(1))
    }

    /// Proves the device once per clock hour, at a random instant of the hour (of what is left
    /// of the first), while it runs no node: a device serving a rental is proved by its nodes'
    /// reports. An hour the server needs no proof (the device is not listed) is let pass.
    async fn prove_hourly(self: Arc<Self>, mut rng: rand::rngs::StdRng) {
        let now = self.wall();
        let mut hour = (now / HOUR_SECS).floor();
        let mut at = now + ((hour + 1.0) * HOUR_SECS - now) * rng.random::<f64>();
        loop {
            // Looks at the clock every few seconds: after a jump of more than a minute the
            // schedule is made again from the new time, as an agent does when its clock steps.
            let mut expected = self.wall();
            loop {
                let now = self.wall();
                if (now - expected).abs() > 60.0 {
                    hour = (now / HOUR_SECS).floor();
                    at = now + ((hour + 1.0) * HOUR_SECS - now) * rng.random::<f64>();
                }
                let wait = at - now;
                if wait <= 0.0 {
                    break;
                }
                let step = wait.min(CLOCK_LOOK_SECS);
                tokio::time::sleep(Duration::from_secs_f64(step)).await;
                expected = now + step;
            }
            if self.running_nodes() == 0 {
                match self.prove(&mut rng).await {
                    Ok(passed) => {
                        let counter = if passed {
                            &self.stats.proofs_passed
                        } else {
                            &self.stats.proofs_failed
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    // The device is retired or its token replaced: its agent is done.
                    Err(e)
                        if e.to_string().contains(" 401 ") || e.to_string().contains(" 403 ") =>
                    {
                        return;
                    }
                    Err(e) => {
                        if e.to_string().contains(": 4") {
                            self.stats.proofs_refused.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(device = %self.device.id, error = %e, "simulated agent lets this hour's proof pass");
                    }
                }
            }
            hour += 1.0;
            at = (hour + rng.random::<f64>()) * HOUR_SECS;
        }
    }

    /// Asks for this hour's proof and answers it: solved off the async threads (wrongly at
    /// the configured rate), with each GPU's VRAM as its model has it. Whether it passed.
    async fn prove(&self, rng: &mut rand::rngs::StdRng) -> anyhow::Result<bool> {
        use iocloud_control::providers::verification;
        let challenge = self
            .send("proof", self.http.post(self.url("proof")))
            .await?;
        let nonce = challenge["nonce"].as_str().unwrap_or_default().to_string();
        let difficulty = challenge["difficulty"].as_u64().unwrap_or(0) as u32;
        let vram_gib = challenge["vram_gib"].as_i64().unwrap_or(0);
        let wrong = rng.random::<f64>() < self.options.proof_failure_rate;
        let answer = {
            let nonce = nonce.clone();
            tokio::task::spawn_blocking(move || {
                let right = verification::solve(&nonce, difficulty);
                if !wrong {
                    return right;
                }
                // The next number that does not solve it (nearly always right + 1).
                (right + 1..)
                    .take(1 << 16)
                    .find(|n| !verification::check(&nonce, difficulty, *n))
                    .unwrap_or(right)
            })
            .await?
        };
        let vram_mib = vec![vram_gib * 1024; self.device.gpus.max(0) as usize];
        let result = self
            .post(
                "proof/answer",
                json!({"hour": challenge["hour"], "nonce": nonce, "answer": answer, "vram_mib": vram_mib}),
            )
            .await?;
        Ok(result["outcome"] == "passed")
    }
}

/// Where a simulated node says it answers: what its role serves, and a container's ports as
/// `port-<number>` (the device id stands in for its address).
fn endpoints(role: &str, host: &str, ports: &[u16]) -> Value {
    match role {
        "head" => json!({
            "ray": format!("{host}:6379"),
            "client": format!("ray://{host}:10001"),
            "dashboard": format!("http://{host}:8265"),
        }),
        "control_plane" => json!({"api_server": format!("https://{host}:6443")}),
        _ => {
            let mut served = json!({"ssh": format!("{host}:22")});
            for port in ports {
                served[format!("port-{port}")] = json!(format!("{host}:{port}"));
            }
            served
        }
    }
}

/// The certificate authority a simulated k3s server reports: PEM whose body has the shape of a
/// DER certificate (an ASN.1 sequence), distinct per device. Nothing verifies against it: the
/// simulated API server does not exist.
fn simulated_ca(host: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(host.as_bytes());
    let body: Vec<u8> = digest.iter().cycle().take(256).copied().collect();
    let mut der = vec![0x30, 0x82, 0x01, 0x00];
    der.extend(body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Starts one agent task per device against the server at `base`; they run until the process
/// ends (or their device is retired).
pub fn spawn(base: &str, devices: Vec<SimDevice>, options: SimOptions) -> Arc<SimStats> {
    let stats = Arc::new(SimStats::default());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("an HTTP client");
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    for device in devices {
        let agent = Arc::new(Agent {
            http: http.clone(),
            base: base.trim_end_matches('/').to_string(),
            device,
            options: options.clone(),
            stats: stats.clone(),
            running: Mutex::new(HashSet::new()),
            jumps: rng.random::<f64>() < 0.1,
        });
        tokio::spawn(agent.run(rand::rngs::StdRng::seed_from_u64(rng.random())));
    }
    stats
}
