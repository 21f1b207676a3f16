//! Following a channel of the key-value store (Redis pub/sub, or in-process) for as long as
//! the process runs. A subscription can break (Redis restarting, or a subscriber that fell
//! behind and was dropped) and messages published meanwhile are lost, so every listener is
//! told when it may have missed some: when its subscription begins and when it ends.

use futures::StreamExt;
use iocloud_db::Kv;

/// Runs `on_message` for each message on `channel`, and `on_gap` whenever messages may have
/// been missed, until the process ends. A broken subscription is taken again at once; one
/// that cannot be taken is tried again every second.
pub(crate) fn spawn_listener(
    kv: Kv,
    channel: &'static str,
    on_message: impl Fn(String) + Send + 'static,
    on_gap: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match kv.subscribe(channel).await {
                Ok(mut messages) => {
                    on_gap();
                    while let Some(message) = messages.next().await {
                        on_message(message);
                    }
                    on_gap();
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "subscription failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    })
}
