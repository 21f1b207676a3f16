//! Waking long-polling agents when a node is assigned to their device.
//!
//! One subscription per replica (`ASSIGNMENTS_CHANNEL`, the device id as the message) fans out
//! to the agents waiting here. A subscription per waiting agent would hold a Redis connection
//! per device; a hundred thousand devices would need a hundred thousand.
//!
//! Every change that gives an agent something to do (a node assigned, a node to tear down)
//! wakes it, so between wake-ups a device's open assignments change only by its own reports.
//! The replica keeps what it last read of them, less what the agent has reported on since: an
//! agent that comes back for more after reporting on everything it was given waits without a
//! read. A wake-up, or a subscription that broke (messages may have been lost), drops it, and
//! while the replica cannot hear wake-ups it keeps nothing: every poll reads.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use iocloud_db::Kv;

use crate::listen::Hearing;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub const ASSIGNMENTS_CHANNEL: &str = "agent:assignments";

/// The devices whose agents are waiting on this replica.
pub struct Wakeups {
    /// Where wake-ups are announced to every replica.
    kv: Kv,
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
    known: Mutex<KnownOpen>,
}

/// Devices' open assignments as this replica knows them.
#[derive(Default)]
struct KnownOpen {
    /// Bumped whenever the map is dropped: a read begun before cannot be kept after.
    epoch: u64,
    /// Wake-ups are not being heard: nothing is kept.
    deaf: bool,
    devices: HashMap<String, Known>,
}

#[derive(Default)]
struct Known {
    /// Wake-ups so far: a read begun before one may have missed what it announced.
    wakeups: u64,
    /// The ids last read, less those reported on since; `None` when a wake-up came after.
    open: Option<Vec<String>>,
}

/// When a read of a device's assignments began: see [`Wakeups::remember`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReadToken {
    epoch: u64,
    wakeups: u64,
}

/// Devices kept in [`KnownOpen`] before it starts over (each costs one read then).
const KNOWN_DEVICES: usize = 100_000;
impl Wakeups {
    pub fn new(kv: Kv) -> Wakeups {
        Wakeups {
            kv,
            waiting: Default::default(),
            known: Default::default(),
        }
    }

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

    /// Wakes the device's agent if it waits here.
    fn wake(&self, device_id: &str) {
        {
            let mut known = self.known.lock();
            let k = known.entry(device_id);
            k.wakeups += 1;
            k.open = None;
        }
        if let Some(n) = self.waiting.lock().get(device_id).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    /// Wake-ups may have been missed: every device's assignments are read again at its
    /// agent's next poll, and, while they are not heard, at every poll. Agents waiting now read
    /// when their wait ends (at most the poll's 25 s); waking them all at once would send every
    /// agent of the fleet to the database together.
    fn hearing(&self, hearing: Hearing) {
        let mut known = self.known.lock();
        known.deaf = hearing == Hearing::Deaf;
        known.forget_all();
    }

    /// Whether wake-ups from other replicas are not being heard now.
    pub fn is_deaf(&self) -> bool {
        self.known.lock().deaf
    }

    /// Whether the device is known to have no open assignment (no read needed).
    pub fn known_idle(&self, device_id: &str) -> bool {
        self.known
            .lock()
            .devices
            .get(device_id)
            .is_some_and(|k| k.open.as_ref().is_some_and(Vec::is_empty))
    }

    /// Taken before reading the device's assignments; hand it to [`Wakeups::remember`].
    pub fn read_token(&self, device_id: &str) -> ReadToken {
        let known = self.known.lock();
        known.token(device_id)
    }

    /// Keeps what a read found, unless a wake-up came (or everything was dropped) while it ran.
    pub fn remember(&self, device_id: &str, token: ReadToken, open: Vec<String>) {
        let mut known = self.known.lock();
        if known.token(device_id) == token && !known.deaf {
            known.entry(device_id).open = Some(open);
        }
    }

    /// The agent reported on a node: it is no longer open (every report moves it out).
    pub fn reported(&self, device_id: &str, node_id: &str) {
        if let Some(open) = self
            .known
            .lock()
            .devices
            .get_mut(device_id)
            .and_then(|k| k.open.as_mut())
        {
            open.retain(|id| id != node_id);
        }
    }
}

impl KnownOpen {
    fn token(&self, device_id: &str) -> ReadToken {
        ReadToken {
            epoch: self.epoch,
            wakeups: self.devices.get(device_id).map_or(0, |k| k.wakeups),
        }
    }

    /// The device's entry; past [`KNOWN_DEVICES`] the others are dropped first.
    fn entry(&mut self, device_id: &str) -> &mut Known {
        if self.devices.len() >= KNOWN_DEVICES {
            self.forget_all();
        }
        self.devices.entry(device_id.to_string()).or_default()
    }

    /// Wake-ups may have been missed: read everything again.
    fn forget_all(&mut self) {
        self.epoch += 1;
        self.devices.clear();
    }
}

impl Wakeups {
    /// Tells the replica where the device's agent waits (perhaps this one) to look again.
    pub async fn announce(&self, device_id: &str) {
        if let Err(e) = self.kv.publish(ASSIGNMENTS_CHANNEL, device_id).await {
            // An agent waiting on another replica finds the assignment at its next poll, at
            // most 25 s later; one waiting here is woken all the same.
            iocloud_db::note_kv_failure(&e, "could not wake an agent on other replicas");
            self.wake(device_id);
        }
    }

    /// Wakes waiting agents for assignments made on any replica, until the process ends.
    /// Whenever wake-ups may have been missed, what is known of devices' assignments is dropped.
    pub fn spawn_listener(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (this, again) = (self.clone(), self.clone());
        crate::listen::spawn_listener(
            self.kv.clone(),
            ASSIGNMENTS_CHANNEL,
            move |device_id| this.wake(&device_id),
            move |hearing| again.hearing(hearing),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_wake_ups_are_not_heard_no_device_is_known_idle() {
        let w = Wakeups::new(Kv::memory());
        let token = w.read_token("dev_1");
        w.remember("dev_1", token, Vec::new());
        assert!(
            w.known_idle("dev_1"),
            "an agent with nothing open waits without a read"
        );

        // A node assigned now on another replica would not wake it: every poll reads.
        w.hearing(Hearing::Deaf);
        assert!(!w.known_idle("dev_1"));
        let token = w.read_token("dev_1");
        w.remember("dev_1", token, Vec::new());
        assert!(!w.known_idle("dev_1"), "nothing is kept while deaf");

        w.hearing(Hearing::Listening);
        assert!(!w.known_idle("dev_1"), "what was missed is read again");
        let token = w.read_token("dev_1");
        w.remember("dev_1", token, Vec::new());
        assert!(w.known_idle("dev_1"));
    }
}
