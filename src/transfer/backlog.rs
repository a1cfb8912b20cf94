//! How much of a connection's arriving file data has left its queues for the disk,
//! so that the receiver can grant the sender more (`Credit`, PROTOCOL.md §6): the
//! sender never has more than [`CREDIT_WINDOW`] bytes on their way or waiting for
//! the disk, so the connection's reader always has room to take them in, and a chat
//! line behind them waits for the network only, never for the disk.
//!
//! Data counts as drained once it is no longer queued: written by the disk thread,
//! discarded, or dropped with a transfer that ended. Disk threads update the count
//! and wake the connection's writer only each [`CREDIT_STEP`] bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::frame::CREDIT_WINDOW;

/// How far the drained count moves before the writer is woken to grant more.
pub const CREDIT_STEP: u64 = CREDIT_WINDOW / 4;

/// One connection's arriving file data: taken in from the connection, and queued
/// for the disk.
#[derive(Debug)]
pub struct Backlog {
    taken_in: AtomicU64,
    queued: AtomicU64,
    /// The drained count last told, each at least [`CREDIT_STEP`] past the one before.
    told: watch::Sender<u64>,
}

impl Backlog {
    pub fn new() -> Self {
        Backlog {
            taken_in: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            told: watch::Sender::new(0),
        }
    }

    /// What the connection's writer watches: the drained count, as told.
    pub fn drained_counts(&self) -> watch::Receiver<u64> {
        self.told.subscribe()
    }

    /// `bytes` of `Chunk` data were taken in from the connection, and whichever of
    /// them were to be queued are queued.
    pub fn taken_in(&self, bytes: u64) {
        self.taken_in.fetch_add(bytes, Ordering::SeqCst);
        self.tell();
    }

    /// `bytes` went into a queue for the disk.
    pub fn queued(&self, bytes: u64) {
        self.queued.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `bytes` left a queue for the disk.
    pub fn dequeued(&self, bytes: u64) {
        self.queued.fetch_sub(bytes, Ordering::SeqCst);
        self.tell();
    }

    /// Everything taken in that is no longer queued. Read in this order, a chunk
    /// being queued is never counted as drained too early: it is queued before it
    /// counts as taken in.
    fn drained(&self) -> u64 {
        let taken_in = self.taken_in.load(Ordering::SeqCst);
        taken_in.saturating_sub(self.queued.load(Ordering::SeqCst))
    }

    fn tell(&self) {
        let drained = self.drained();
        self.told.send_if_modified(|told| {
            let moved = drained >= *told + CREDIT_STEP;
            if moved {
                *told = drained;
            }
            moved
        });
    }
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_counts_as_drained_only_once_it_leaves_the_queue() {
        let backlog = Backlog::new();
        let told = backlog.drained_counts();
        backlog.queued(CREDIT_STEP);
        backlog.taken_in(CREDIT_STEP);
        assert_eq!(*told.borrow(), 0);
        backlog.dequeued(CREDIT_STEP - 1);
        assert_eq!(*told.borrow(), 0, "told before a step was drained");
        backlog.dequeued(1);
        assert_eq!(*told.borrow(), CREDIT_STEP);
    }

    #[test]
    fn data_never_queued_counts_at_once() {
        let backlog = Backlog::new();
        let told = backlog.drained_counts();
        backlog.queued(10);
        backlog.taken_in(10);
        backlog.taken_in(CREDIT_STEP - 10);
        assert_eq!(*told.borrow(), 0, "the queued bytes held back");
        backlog.dequeued(10);
        assert_eq!(*told.borrow(), CREDIT_STEP);
    }
}
