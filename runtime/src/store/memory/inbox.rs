//! Events sent while another thread holds the store's lock.
//!
//! Under load, senders on every worker thread meet the dispatcher's claims and the
//! recorder's batches at the one lock. A sender that waited there would spin, then
//! sleep in the kernel until the holder woke it: two system calls and two context
//! switches for a send that takes well under a microsecond of work. So a sender that
//! finds the lock taken leaves its event here instead, behind a lock held only for a
//! push, and returns; whoever takes the store's lock next (`MemoryStore::lock`) stores
//! the inbox's events first, in the order they were sent, before anything else it does
//! there. Every read and every claim goes through that lock, so an event is in every
//! answer given after its `send` returned, as if the sender had stored it itself; and
//! a sender's events are stored in the order it sent them, whichever way each went.

use super::NewEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// An event waiting to be stored.
pub(super) struct Sent {
    pub event: NewEvent,
    /// Its one function (`append_to`), or `None`: every function its name triggers.
    pub to: Option<u32>,
}

#[derive(Default)]
pub(super) struct Inbox {
    sent: Mutex<Vec<Sent>>,
    /// Whether `sent` may hold events: lets a lock with nothing to store skip the
    /// inbox's own lock.
    full: AtomicBool,
}

impl Inbox {
    /// Leaves an event to be stored by the lock's next holder.
    pub fn push(&self, sent: Sent) {
        let mut events = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        events.push(sent);
        self.full.store(true, Ordering::Release);
    }

    /// The events left here, oldest first (called with the store's lock held).
    pub fn take(&self) -> Vec<Sent> {
        if !self.full.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut events = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        self.full.store(false, Ordering::Release);
        std::mem::take(&mut *events)
    }
}
