//! Following a channel of the key-value store (Redis pub/sub, or in-process) for as long as
//! the process runs. A subscription can break (Redis restarting, or a subscriber that fell
//! behind and was dropped) and messages published meanwhile are lost, so every listener is
//! told when it stops hearing ([`Hearing::Deaf`]) and when it hears again
//! ([`Hearing::Listening`], after which it must assume it missed something). What a replica
//! keeps because it would be told of a change (cached credentials, agents known idle) must not
//! be trusted while it is deaf.

use std::time::{Duration, Instant};

use futures::StreamExt;
use iocloud_db::Kv;

/// A subscription that lasted less than this was not a healthy one: wait before the next.
const SHORT_LIVED: Duration = Duration::from_secs(5);
/// The longest pause between tries while the store is away: how long after it is back a
/// replica may still be deaf.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often a subscription checks that the store still answers other calls: a connection cut
/// without a word (a network that drops packets) never ends the stream by itself.
const CHECK: Duration = Duration::from_secs(1);

/// Whether a listener hears its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hearing {
    /// Subscribed (again): messages sent before may have been missed.
    Listening,
    /// Not subscribed: messages are being missed until [`Hearing::Listening`].
    Deaf,
}

/// Runs `on_message` for each message on `channel`, and `on_change` whenever it starts or stops
/// hearing, until the process ends. A subscription that broke after running a while is taken
/// again at once; otherwise the pause before the next try doubles, up to [`MAX_PAUSE`], so a
/// store that keeps failing (or dropping a replica that keeps falling behind) is not hammered.
pub(crate) fn spawn_listener(
    kv: Kv,
    channel: &'static str,
    on_message: impl Fn(String) + Send + 'static,
    on_change: impl Fn(Hearing) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::ZERO;
        loop {
            let began = Instant::now();
            match kv.subscribe(channel).await {
                Ok(mut messages) => {
                    on_change(Hearing::Listening);
                    let mut check = tokio::time::interval(CHECK);
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(message) => on_message(message),
                                None => {
                                    tracing::warn!(channel, "subscription ended; subscribing again");
                                    break;
                                }
                            },
                            _ = check.tick() => if kv.is_unreachable() {
                                tracing::warn!(channel, "the store stopped answering; subscribing again");
                                break;
                            },
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, channel, "subscription failed"),
            }
            on_change(Hearing::Deaf);
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
        let deaf = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, d, m) = (gaps.clone(), deaf.clone(), got.clone());
        spawn_listener(
            kv.clone(),
            "test",
            move |message| m.lock().push(message),
            move |hearing| {
                let count = match hearing {
                    Hearing::Listening => &g,
                    Hearing::Deaf => &d,
                };
                count.fetch_add(1, Ordering::SeqCst);
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
        assert_eq!(
            deaf.load(Ordering::SeqCst),
            1,
            "told it was deaf in between"
        );
        kv.publish("test", "after").await.unwrap();
        until("a message after the gap", || {
            got.lock().contains(&"after".into())
        })
        .await;
    }
}
