//! The console in headless Chromium, driven by playwright-core (`tests/e2e/`), against a server
//! with a fleet of simulated agents, so its customer can rent GPUs and watch them come up; email
//! through the SMTP peer and cards through localstripe when they are there. The agent command
//! the console gives a provider for a new device is run here, in this process, as the machine's
//! owner would run it there. Needs
//! Node.js, Debian's `chromium` and `npm ci` in `tests/e2e`; without them the test says so and
//! passes, unless `IOCLOUD_E2E_REQUIRED=1` (CI sets it), where a missing piece fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

use iocloud_tests::{Backend, PASSWORD, fleet, frankfurt, smtp_peer, stripe_url, take_cards};

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

fn missing_prerequisite() -> Option<String> {
    let chromium = std::env::var("IOCLOUD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium}"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH".into());
    }
    for package in ["playwright-core", "axe-core"] {
        if !e2e_dir().join("node_modules").join(package).exists() {
            return Some(format!(
                "{package} not installed (run `npm ci` in tests/e2e)"
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            std::env::var("IOCLOUD_E2E_REQUIRED").is_err(),
            "browser test required but {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    // Two machines of eight H100s in Frankfurt, each run by a simulated agent, and a customer
    // with 1,000 USD of credit to rent them; cards through localstripe when it is there (its
    // stand-in for Stripe.js included).
    let stripe = stripe_url();
    let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let smtp = smtp_peer();
    let f = fleet(Backend::Sqlite, frankfurt(2), true, |c| {
        if let Some(stripe) = &stripe {
            take_cards(c, stripe, &webhook_secret);
        }
        if let Some((url, _)) = &smtp {
            c.smtp_url = Some(url.parse().unwrap());
        }
    })
    .await;
    let endpoint = stripe.as_ref().map(|s| {
        format!(
            "{s}/_config/webhooks/iocloud-e2e-{}",
            uuid::Uuid::new_v4().simple()
        )
    });
    if let Some(endpoint) = &endpoint {
        let url = f.app.url("/webhooks/stripe");
        let answer = reqwest::Client::new()
            .post(endpoint)
            .form(&[("url", url.as_str()), ("secret", webhook_secret.as_str())])
            .send()
            .await
            .expect("localstripe answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }
    let cards = if endpoint.is_some() { "1" } else { "" };
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots");
    let agent_file = std::env::temp_dir().join(format!(
        "iocloud-e2e-agent-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let agent = tokio::spawn(run_agent_when_asked(agent_file.clone()));
    let mail_peer = smtp.map(|(_, peer)| peer).unwrap_or_default();
    let base = f.app.base.clone();
    let customer = f.customer.email.clone();
    let provider = f.provider.email.clone();
    let handoff = agent_file.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1"])
            .args(["console.test.mjs", "journey.test.mjs"])
            .current_dir(e2e_dir())
            .env("IOCLOUD_E2E_URL", base)
            .env("IOCLOUD_E2E_SCREENSHOTS", shots)
            .env("IOCLOUD_E2E_CUSTOMER_EMAIL", customer)
            .env("IOCLOUD_E2E_CUSTOMER_PASSWORD", PASSWORD)
            .env("IOCLOUD_E2E_PROVIDER_EMAIL", provider)
            .env("IOCLOUD_E2E_PROVIDER_PASSWORD", PASSWORD)
            .env("IOCLOUD_E2E_CARDS", cards)
            .env("IOCLOUD_E2E_SMTP_PEER_URL", mail_peer)
            .env("IOCLOUD_E2E_AGENT_FILE", &handoff)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(endpoint) = &endpoint {
        let _ = reqwest::Client::new().delete(endpoint).send().await;
    }
    agent.abort();
    let _ = std::fs::remove_file(&agent_file);
    assert!(output.status.success(), "browser tests failed:\n{text}");
    // The card test runs only with localstripe; without it, it is skipped, saying so.
    let expected = if cards.is_empty() {
        "# pass 6"
    } else {
        "# pass 7"
    };
    assert!(text.contains(expected), "{expected}:\n{text}");
    f.app.stop().await;
}

/// Waits for the browser test to write the agent command the console showed into `file`,
/// then runs it: `iocloud agent run …`, parsed as the command line parses it.
async fn run_agent_when_asked(file: PathBuf) {
    let command = loop {
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => break text,
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    use iocloud_api::cli::{AgentCommand, Cli, Command};
    let cli = Cli::try_parse_from(command.split_whitespace())
        .unwrap_or_else(|e| panic!("the console's agent command {command:?} parses: {e}"));
    let Command::Agent {
        command: AgentCommand::Run(args),
    } = cli.command
    else {
        panic!("not an agent command: {command}");
    };
    if let Err(e) = iocloud_api::cli::run_agent(args).await {
        panic!("the agent stopped: {e:#}");
    }
}
