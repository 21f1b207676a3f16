//! The console in headless Chromium, driven by playwright-core (`tests/e2e/`), against a server
//! with a fleet of simulated agents, so its customer can rent GPUs and watch them come up. Needs
//! Node.js, Debian's `chromium` and `npm ci` in `tests/e2e`; without them the test says so and
//! passes, unless `IOCLOUD_E2E_REQUIRED=1` (CI sets it), where a missing piece fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use iocloud_tests::{Backend, PASSWORD, fleet, frankfurt};

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
    // with 1,000 USD of credit to rent them.
    let f = fleet(Backend::Sqlite, frankfurt(2), true, |_| {}).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots");
    let base = f.app.base.clone();
    let customer = f.customer.email.clone();
    let provider = f.provider.email.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("--test")
            .arg("console.test.mjs")
            .current_dir(e2e_dir())
            .env("IOCLOUD_E2E_URL", base)
            .env("IOCLOUD_E2E_SCREENSHOTS", shots)
            .env("IOCLOUD_E2E_CUSTOMER_EMAIL", customer)
            .env("IOCLOUD_E2E_CUSTOMER_PASSWORD", PASSWORD)
            .env("IOCLOUD_E2E_PROVIDER_EMAIL", provider)
            .env("IOCLOUD_E2E_PROVIDER_PASSWORD", PASSWORD)
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
    assert!(output.status.success(), "browser tests failed:\n{text}");
    assert!(
        text.contains("# pass 4"),
        "four browser tests passed:\n{text}"
    );
    f.app.stop().await;
}
