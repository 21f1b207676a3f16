//! Group commit: work that arrives at the same moment is done together. While one batch is in
//! the database the next items queue, and whoever's turn comes takes them all; each caller
//! gets its own item's answer. Under load a batch grows to what arrived during the last one,
//! so the database sees one transaction per batch instead of one per item; alone, an item
//! waits for nobody. A batcher with several lanes lets that many batches run at once, for work
//! too long for one batch at a time to keep up with.

use std::future::Future;

use parking_lot::Mutex;
use tokio::sync::oneshot;

pub struct Batcher<T, R> {
    waiting: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    /// Batches in the database at once.
    turns: tokio::sync::Semaphore,
}

impl<T, R> Default for Batcher<T, R> {
    fn default() -> Self {
        Batcher::with_lanes(1)
    }
}

impl<T, R> Batcher<T, R> {
    /// A batcher that lets `lanes` batches run at once: for work whose items take long enough
    /// that one batch at a time cannot keep up with their arrival.
    pub fn with_lanes(lanes: usize) -> Self {
        assert!(lanes > 0, "a batcher needs a lane");
        Batcher {
            waiting: Mutex::new(Vec::new()),
            turns: tokio::sync::Semaphore::new(lanes),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Queues `item` and, when its turn comes, runs `run` over everything queued (`run` answers
    /// each item, in order). `None` only if the batch's task panicked.
    pub async fn submit<F, Fut>(&self, item: T, run: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        self.waiting.lock().push((item, done));
        {
            let _turn = self.turns.acquire().await;
            let batch = std::mem::take(&mut *self.waiting.lock());
            // Empty when an earlier turn took our item: its answer is on the way.
            if !batch.is_empty() {
                let (items, senders): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
                let work = run(items);
                // Its own task: a caller that goes away mid-batch does not cancel the others'.
                let _ = tokio::spawn(async move {
                    for (sender, result) in senders.into_iter().zip(work.await) {
                        let _ = sender.send(result);
                    }
                })
                .await;
            }
        }
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_arriving_together_share_batches_and_get_their_own_answers() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::default();
        let batches = Arc::new(AtomicUsize::new(0));
        let calls = (0..200u32).map(|i| {
            let (batcher, batches) = (batcher.clone(), batches.clone());
            tokio::spawn(async move {
                batcher
                    .submit(i, move |items| async move {
                        batches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        items.into_iter().map(|x| x * 2).collect()
                    })
                    .await
            })
        });
        let answers = futures::future::join_all(calls).await;
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap(), Some(i as u32 * 2));
        }
        let n = batches.load(Ordering::SeqCst);
        assert!(n < 200, "{n} batches for 200 items arriving at once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_let_batches_run_at_once() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::with_lanes(2));
        let both = Arc::new(tokio::sync::Barrier::new(2));
        let (started, first_running) = oneshot::channel();
        let first = {
            let (batcher, both) = (batcher.clone(), both.clone());
            tokio::spawn(async move {
                batcher
                    .submit(1, move |items| async move {
                        let _ = started.send(());
                        both.wait().await;
                        items
                    })
                    .await
            })
        };
        first_running.await.unwrap();
        // With one lane this batch would wait for the first, which waits for it.
        let second = batcher.submit(2, move |items| async move {
            both.wait().await;
            items
        });
        let (second, first) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            (second.await, first.await.unwrap())
        })
        .await
        .expect("two batches at once");
        assert_eq!((first, second), (Some(1), Some(2)));
    }
}
