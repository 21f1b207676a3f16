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
