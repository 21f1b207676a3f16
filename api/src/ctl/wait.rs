//! Waiting for clusters to run, with one progress line per poll (redrawn in place on a
//! terminal, printed only when it changes otherwise, so logs stay short).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::client::{Client, CtlError, CtlResult, exit, seg};
use super::render;

/// Waits until every cluster runs, showing progress; a cluster that fails ends the wait.
pub async fn running(
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
