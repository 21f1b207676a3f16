//! Background passes: each replica runs its passes on a timer of its own. A pass that runs
//! long delays the next tick rather than stacking ticks up behind it, and a failed pass is
//! only logged: the next one catches up, since every pass works from what is stored.

use std::future::Future;
use std::time::Duration;

/// Runs `pass` every `interval` until the process ends.
pub fn every<F, Fut>(interval: Duration, mut pass: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            pass().await;
        }
    })
}

/// Runs `pass` every `interval` until the process ends, waiting twice as long after each
/// failure in a row (up to `ceiling`): a pass that fails because its peer is away or busy
/// (a node answering 429) gives it room, and the first success brings back the interval.
pub fn backing_off<F, Fut, E>(
    interval: Duration,
    ceiling: Duration,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut wait = interval;
        loop {
            tokio::time::sleep(wait).await;
            match pass().await {
                Ok(()) => wait = interval,
                Err(e) => {
                    wait = (wait * 2).min(ceiling.max(interval));
                    tracing::warn!(error = %e, retry_in_secs = wait.as_secs_f64(), "background pass failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_stretch_the_wait_and_a_success_restores_it() {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let task = backing_off(Duration::from_secs(1), Duration::from_secs(3), move || {
            let seen = seen.clone();
            async move {
                let mut calls = seen.lock().unwrap();
                calls.push(start.elapsed().as_secs());
                // Fails twice, then succeeds.
                if calls.len() <= 2 {
                    Err("away")
                } else {
                    Ok(())
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(7_500)).await;
        task.abort();
        // 1 s, then 2 s after the first failure, 3 s (the ceiling, not 4) after the second,
        // and 1 s again after the success.
        assert_eq!(*calls.lock().unwrap(), vec![1, 3, 6, 7]);
    }
}
