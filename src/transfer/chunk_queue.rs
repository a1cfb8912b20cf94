//! The queue between a connection's task and the thread that reads or writes a
//! transfer's file: bounded in bytes, with a sender that waits for room half the
//! queue at a time. Where the far end is the slower one, the queue stays full; a
//! sender waiting for each chunk's room would be woken, across threads, once per
//! chunk, and those wake-ups cost more than the chunks' copies. Waiting for half
//! the queue wakes it once per half a queue.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::backlog::Backlog;
use crate::frame::{CREDIT_WINDOW, MAX_CHUNK_LEN};

/// The bytes queued at most between a file being read and its connection.
pub const QUEUE_BYTES: usize = 1 << 20;
/// The bytes queued at most between a connection and the disk: twice a credit
/// window and what its chunks cost beyond their data (down to 1 KiB each). The
/// connection takes room half a queue at a time, so it never waits while what is
/// queued stays within one window, as it does for a sender that keeps to its
/// credit: what is queued never exceeds that window.
pub const ARRIVING_QUEUE_BYTES: usize = 2 * (CREDIT_WINDOW as usize + CREDIT_WINDOW as usize / 16);

/// What one queued chunk costs beyond its data (its allocation and its place in the
/// queue), counted so that a peer's one-byte chunks cannot queue 60 times their size.
pub const CHUNK_OVERHEAD: usize = 64;

/// What the queue carries, and how many bytes of it count against its bound.
pub trait Chunk {
    /// What it costs in the queue.
    fn bytes(&self) -> usize;
    /// The file data it carries.
    fn data_len(&self) -> usize;
}

impl Chunk for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len() + CHUNK_OVERHEAD
    }

    fn data_len(&self) -> usize {
        self.len()
    }
}

/// A failure to pass on weighs nothing, so that it is never held back.
impl<E> Chunk for Result<Vec<u8>, E> {
    fn bytes(&self) -> usize {
        self.as_ref().map_or(0, Chunk::bytes)
    }

    fn data_len(&self) -> usize {
        self.as_ref().map_or(0, Vec::len)
    }
}

/// A queue of [`QUEUE_BYTES`] for a file being read.
pub fn chunk_queue<T: Chunk>() -> (ChunkSender<T>, ChunkReceiver<T>) {
    queue_of(QUEUE_BYTES, None)
}

/// A queue of [`ARRIVING_QUEUE_BYTES`] for data arriving for the disk, counted in
/// its connection's `backlog` while it waits there.
pub fn arriving_queue<T: Chunk>(backlog: Arc<Backlog>) -> (ChunkSender<T>, ChunkReceiver<T>) {
    queue_of(ARRIVING_QUEUE_BYTES, Some(backlog))
}

/// A queue of `capacity` bytes, for chunks of at most half that each.
fn queue_of<T: Chunk>(
    capacity: usize,
    backlog: Option<Arc<Backlog>>,
) -> (ChunkSender<T>, ChunkReceiver<T>) {
    debug_assert!(capacity / 2 >= MAX_CHUNK_LEN + CHUNK_OVERHEAD);
    let (chunks, chunks_rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(capacity));
    let sender = ChunkSender {
        chunks,
        room: room.clone(),
        wake_bytes: capacity / 2,
        credit: 0,
        backlog: backlog.clone(),
    };
    let receiver = ChunkReceiver {
        chunks: chunks_rx,
        room,
        backlog,
    };
    (sender, receiver)
}

/// The producing end. Dropping it ends the queue once its chunks are taken.
#[derive(Debug)]
pub struct ChunkSender<T> {
    chunks: mpsc::UnboundedSender<T>,
    room: Arc<Semaphore>,
    /// The room a sender waits for once the queue is full: half the queue.
    wake_bytes: usize,
    /// Room taken from `room` and not yet filled.
    credit: usize,
    backlog: Option<Arc<Backlog>>,
}

/// The consuming end. Dropping it releases a waiting sender, and whatever it still
/// holds counts as drained.
#[derive(Debug)]
pub struct ChunkReceiver<T: Chunk> {
    chunks: mpsc::UnboundedReceiver<T>,
    room: Arc<Semaphore>,
    backlog: Option<Arc<Backlog>>,
}

/// The other end is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl<T: Chunk> ChunkSender<T> {
    /// The consuming end is gone: nothing queued from now on would be taken.
    pub fn is_closed(&self) -> bool {
        self.chunks.is_closed()
    }

    /// Queues `chunk`, first waiting for room if the queue is full.
    pub async fn send(&mut self, chunk: T) -> Result<(), Closed> {
        let (bytes, data_len) = (chunk.bytes(), chunk.data_len() as u64);
        assert!(
            bytes <= self.wake_bytes,
            "a chunk larger than the queue's step"
        );
        if self.credit < bytes {
            let room = self.room.acquire_many(self.wake_bytes as u32).await;
            room.map_err(|_| Closed)?.forget();
            self.credit += self.wake_bytes;
        }
        self.credit -= bytes;
        // Counted first: the receiver may take it, and count it out, at once.
        if let Some(backlog) = &self.backlog {
            backlog.queued(data_len);
        }
        self.chunks
            .send(chunk)
            .map_err(|mpsc::error::SendError(chunk)| {
                if let Some(backlog) = &self.backlog {
                    backlog.dequeued(chunk.data_len() as u64);
                }
                Closed
            })
    }

    /// [`Self::send`], blocking the thread: for a thread outside the async runtime.
    pub fn blocking_send(&mut self, chunk: T) -> Result<(), Closed> {
        futures_executor::block_on(self.send(chunk))
    }
}

impl<T: Chunk> ChunkReceiver<T> {
    /// The next chunk; `None` once the sender is dropped and every chunk is taken.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        let chunk = self.chunks.recv().await?;
        Some(self.taken(chunk))
    }

    /// [`Self::recv`], blocking the thread: for a thread outside the async runtime.
    pub fn blocking_recv(&mut self) -> Option<T> {
        let chunk = self.chunks.blocking_recv()?;
        Some(self.taken(chunk))
    }

    fn taken(&self, chunk: T) -> T {
        self.room.add_permits(chunk.bytes());
        if let Some(backlog) = &self.backlog {
            backlog.dequeued(chunk.data_len() as u64);
        }
        chunk
    }
}

impl<T: Chunk> Drop for ChunkReceiver<T> {
    fn drop(&mut self) {
        self.room.close();
        self.chunks.close();
        if let Some(backlog) = &self.backlog {
            while let Ok(chunk) = self.chunks.try_recv() {
                backlog.dequeued(chunk.data_len() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};

    use super::*;

    const WAKE_BYTES: usize = QUEUE_BYTES / 2;

    /// The data of a chunk that weighs 64 KiB.
    const CHUNK: usize = (64 << 10) - CHUNK_OVERHEAD;

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_full_queue_makes_room_half_a_queue_at_a_time() {
        let (mut sender, mut receiver) = chunk_queue::<Vec<u8>>();
        let full = QUEUE_BYTES / CHUNK;
        for n in 0..full {
            let send = pin!(sender.send(vec![n as u8; CHUNK]));
            assert_eq!(poll_once(send), Poll::Ready(Ok(())), "chunk {n} waited");
        }
        let mut next = pin!(sender.send(vec![0xff; CHUNK]));
        assert!(poll_once(next.as_mut()).is_pending(), "sent past the bound");
        for n in 0..WAKE_BYTES / CHUNK {
            assert!(poll_once(next.as_mut()).is_pending(), "woken at {n} taken");
            assert_eq!(receiver.blocking_recv(), Some(vec![n as u8; CHUNK]));
        }
        assert_eq!(poll_once(next.as_mut()), Poll::Ready(Ok(())));
    }

    /// A sender that keeps to its credit has at most a window of data queued: the
    /// connection must never wait for room then, whatever the disk takes when.
    #[test]
    fn an_arriving_queue_never_holds_up_data_within_a_credit_window() {
        let (mut sender, mut receiver) = arriving_queue::<Vec<u8>>(Arc::default());
        let window = CREDIT_WINDOW as usize / MAX_CHUNK_LEN;
        let mut queued = 0;
        for taken in [0, 1, window / 2, window - 1, 3] {
            for _ in 0..taken {
                assert!(receiver.blocking_recv().is_some());
                queued -= 1;
            }
            while queued < window {
                let send = pin!(sender.send(vec![0; MAX_CHUNK_LEN]));
                assert_eq!(
                    poll_once(send),
                    Poll::Ready(Ok(())),
                    "waited with {queued} chunks queued"
                );
                queued += 1;
            }
        }
    }

    #[test]
    fn tiny_chunks_are_bounded_by_what_they_cost() {
        let (mut sender, _receiver) = chunk_queue::<Vec<u8>>();
        let mut queued = 0;
        while poll_once(pin!(sender.send(vec![0; 1]))).is_ready() {
            queued += 1;
        }
        assert_eq!(queued, QUEUE_BYTES / (1 + CHUNK_OVERHEAD));
    }

    #[test]
    fn chunks_arrive_in_order_and_end_with_the_sender() {
        let (mut sender, mut receiver) = chunk_queue::<Vec<u8>>();
        for len in [1, CHUNK, 7] {
            let send = pin!(sender.send(vec![len as u8; len]));
            assert_eq!(poll_once(send), Poll::Ready(Ok(())));
        }
        drop(sender);
        for len in [1, CHUNK, 7] {
            assert_eq!(receiver.blocking_recv(), Some(vec![len as u8; len]));
        }
        assert_eq!(receiver.blocking_recv(), None);
    }

    #[test]
    fn a_stopped_disk_thread_releases_a_waiting_sender() {
        let (mut sender, receiver) = chunk_queue::<Vec<u8>>();
        for _ in 0..QUEUE_BYTES / CHUNK {
            assert!(poll_once(pin!(sender.send(vec![0; CHUNK]))).is_ready());
        }
        {
            let mut waiting = pin!(sender.send(vec![0; CHUNK]));
            assert!(poll_once(waiting.as_mut()).is_pending());
            drop(receiver);
            assert_eq!(poll_once(waiting.as_mut()), Poll::Ready(Err(Closed)));
        }
        assert_eq!(
            poll_once(pin!(sender.send(vec![0; 1]))),
            Poll::Ready(Err(Closed))
        );
    }
}
