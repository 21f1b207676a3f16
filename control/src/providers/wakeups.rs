//! Waking long-polling agents when a node is assigned to their device.
//!
//! One subscription per replica (`ASSIGNMENTS_CHANNEL`, the device id as the message) fans out
//! to the agents waiting here. A subscription per waiting agent would hold a Redis connection
//! per device; a hundred thousand devices would need a hundred thousand.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::Control;

pub const ASSIGNMENTS_CHANNEL: &str = "agent:assignments";

/// The devices whose agents are waiting on this replica.
#[derive(Default)]
pub struct Wakeups {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Wakeups {
    /// What a waiting agent holds; it is woken while it holds it.
    pub fn watch(&self, device_id: &str) -> Arc<Notify> {
        let mut waiting = self.waiting.lock();
        if let Some(n) = waiting.get(device_id).and_then(Weak::upgrade) {
            return n;
        }
        if waiting.len() >= 1024 && waiting.len().is_power_of_two() {
            // Forget devices nobody waits for any more, now and then as the map grows.
            waiting.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        waiting.insert(device_id.to_string(), Arc::downgrade(&n));
        n
    }

    fn wake(&self, device_id: &str) {
        if let Some(n) = self.waiting.lock().get(device_id).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

impl Control {
    /// Tells the replica where the device's agent waits (perhaps this one) to look again.
    pub(crate) async fn wake_agent(&self, device_id: &str) {
        if let Err(e) = self.kv.publish(ASSIGNMENTS_CHANNEL, device_id).await {
            // The agent finds the assignment at its next poll, at most 25 s later.
            tracing::warn!(error = %e, "could not wake an agent");
        }
    }

    /// Wakes waiting agents for assignments made on any replica, until the process ends.
    pub fn spawn_wakeup_listener(&self) -> tokio::task::JoinHandle<()> {
        use futures::StreamExt;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.kv.subscribe(ASSIGNMENTS_CHANNEL).await {
                    Ok(mut messages) => {
                        while let Some(device_id) = messages.next().await {
                            this.wakeups.wake(&device_id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "assignment wake-up subscription failed"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    }
}
