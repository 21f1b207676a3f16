//! Stopping a replica in a bounded time. On SIGTERM (or [`crate::startup::Server::stop`]) the
//! replica starts draining: `/readyz` answers 503 so a load balancer sends nothing new, the
//! listener stops accepting, requests in flight finish, and long-lived answers (event streams,
//! GraphQL subscriptions) end at once, their clients coming back to another replica and
//! resuming from the last event they saw. Whatever is still open after [`DRAIN_LIMIT`] is cut;
//! then the replica gives up its leases (another replica runs those passes at once, not after
//! they run out) and closes its database pool.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;

/// The longest a stopping replica waits for requests in flight. Short requests finish well
/// within it; streams end by themselves when the drain starts.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Whether this replica is stopping. Cheap to clone.
#[derive(Clone)]
pub struct Drain {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Drain {
    /// Starts draining (once; later calls change nothing).
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves when the drain starts (at once if it has).
    pub fn started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|draining| *draining).await;
        }
    }

    /// `stream` until the drain starts. A follower whose stream ends so reconnects, to another
    /// replica, from its last event id.
    pub fn cut<S>(&self, stream: S) -> impl Stream<Item = S::Item> + Send + 'static
    where
        S: Stream + Send + 'static,
    {
        stream.take_until(self.started())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_ends_when_the_drain_starts() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        let (tx, rx) = futures::channel::mpsc::unbounded::<i32>();
        let mut cut = Box::pin(drain.cut(rx));
        tx.unbounded_send(1).unwrap();
        assert_eq!(cut.next().await, Some(1));
        drain.start();
        drain.start();
        assert!(drain.is_draining());
        tx.unbounded_send(2).unwrap();
        assert_eq!(cut.next().await, None, "nothing after the drain started");
        // A stream opened after the drain started ends at once.
        assert_eq!(
            Box::pin(drain.cut(futures::stream::pending::<i32>()))
                .next()
                .await,
            None
        );
    }
}
