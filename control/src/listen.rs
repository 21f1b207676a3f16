//! Following a channel of the key-value store (Redis pub/sub, or in-process) for as long as
//! the process runs. A subscription can break (Redis restarting, or a subscriber that fell
//! behind and was dropped) and messages published meanwhile are lost, so every listener is
//! told when it may have missed some: when a subscription begins, and while none can be taken.

use std::time::{Duration, Instant};

use futures::StreamExt;
use iocloud_db::Kv;

/// A subscription that lasted less than this was not a healthy one: wait before the next.
const SHORT_LIVED: Duration = Duration::from_secs(5);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Runs `on_message` for each message on `channel`, and `on_gap` whenever messages may have
/// been missed, until the process ends. A subscription that broke after running a while is
/// taken again at once; otherwise the pause before the next try doubles, up to 30 s, so a
/// store that keeps failing (or dropping a replica that keeps falling behind) is not hammered.
pub(crate) fn spawn_listener(
    kv: Kv,
    channel: &'static str,
    on_message: impl Fn(String) + Send + 'static,
    on_gap: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::ZERO;
        loop {
            let began = Instant::now();
            match kv.subscribe(channel).await {
                Ok(mut messages) => {
                    on_gap();
                    while let Some(message) = messages.next().await {
                        on_message(message);
                    }
                    tracing::warn!(channel, "subscription ended; subscribing again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "subscription failed");
                    on_gap();
                }
            }
            pause = if began.elapsed() < SHORT_LIVED {
                (pause * 2).clamp(Duration::from_secs(1), MAX_PAUSE)
            } else {
                Duration::ZERO
            };
            tokio::time::sleep(pause).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_listener_that_fell_behind_is_told_and_listens_again() {
        let kv = Kv::memory();
        let gaps = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, m) = (gaps.clone(), got.clone());
        spawn_listener(
            kv.clone(),
            "test",
            move |message| m.lock().push(message),
            move || {
                g.fetch_add(1, Ordering::SeqCst);
            },
        );
        until("subscribed", || gaps.load(Ordering::SeqCst) == 1).await;
        kv.publish("test", "first").await.unwrap();
        until("first message", || got.lock().contains(&"first".into())).await;
        // Far more than the channel holds, published while the listener cannot run (this
        // test's runtime has one thread): it falls behind.
        for i in 0..10_000 {
            kv.publish("test", &i.to_string()).await.unwrap();
        }
        until("the gap reported on subscribing again", || {
            gaps.load(Ordering::SeqCst) == 2
        })
        .await;
        kv.publish("test", "after").await.unwrap();
        until("a message after the gap", || {
            got.lock().contains(&"after".into())
        })
        .await;
    }
}
