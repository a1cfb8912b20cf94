//! Single-connection mode: one TLS connection carries both directions. A reader
//! hands each arriving frame to the half it belongs to, and a writer interleaves
//! what the two halves send, answers first. `Finish` and `FinishAck` end one
//! direction, as `close_notify` does when a direction has a connection of its own.
//!
//! The connection is whole or gone: when either half fails, or the peer closes it
//! without ending both directions, both halves see it lost, and the side that dials
//! is told to dial again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::lane::{Lane, LaneReader, LaneWriter, Outgoing, Routed};
use crate::frame::Frame;
use crate::link::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::link::handshake::{Link, Tls};

/// Frames waiting for the receiving half before reading from the peer pauses.
const TO_RECEIVE: usize = 16;
/// Accepts and verdicts for our sending half that may wait unread. Reading never
/// waits on the sending half, which may itself be waiting for the peer to read:
/// that would let two peers that send at once block each other. Acknowledgements
/// are cumulative, so those that cannot wait are merged into the latest; accepts
/// and verdicts answer our offers, one each, so more than this is a protocol error.
pub const MAX_UNREAD_ANSWERS: usize = 4096;
/// What our sending half may hand the writer ahead of the wire: one frame, so that
/// a chat line waits behind at most one chunk.
const TO_SEND: usize = 1;
/// What our receiving half may hand the writer ahead of the wire.
const ANSWERS: usize = 64;

/// The task that carries the connection; dropping it drops the connection, without
/// `close_notify`, as a replaced connection is dropped.
#[derive(Debug)]
pub struct Carrier(JoinHandle<()>);

impl Drop for Carrier {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Carrier {
    /// Waits until the connection is closed, or lost.
    pub async fn closed(&mut self) {
        let _ = (&mut self.0).await;
    }
}

/// Splits `link` into the sending half's lane and the receiving half's lane.
/// `on_loss` is told if the connection is lost, and dropped untold when both
/// directions ended.
pub fn split(link: Link, on_loss: Option<oneshot::Sender<()>>) -> (Lane, Lane, Carrier) {
    let dialed = link.dialed();
    let (reader, writer) = link.connection.into_split();
    let (answers_tx, answers_rx) = mpsc::channel(MAX_UNREAD_ANSWERS);
    let (arrivals_tx, arrivals_rx) = mpsc::channel(TO_RECEIVE);
    let (sends_tx, sends_rx) = mpsc::channel(TO_SEND);
    let (replies_tx, replies_rx) = mpsc::channel(ANSWERS);
    let (sending_lost, sending_lost_rx) = oneshot::channel();
    let (receiving_lost, receiving_lost_rx) = oneshot::channel();
    let lane = |reader, writer, on_loss| Lane {
        reader: LaneReader::Shared(reader),
        writer: LaneWriter::Shared(writer),
        peer_name: link.peer_name.clone(),
        peer_fingerprint: link.peer_fingerprint,
        peer_session: link.peer_session,
        version: link.version,
        dialed,
        on_loss: Some(on_loss),
        retire: None,
    };
    let sending = lane(answers_rx, sends_tx, sending_lost);
    let receiving = lane(arrivals_rx, replies_tx, receiving_lost);
    let left = Arc::new(Left::default());
    let reading = Reading {
        reader,
        answers: answers_tx,
        unsent_ack: None,
        arrivals: arrivals_tx,
        left: left.clone(),
    };
    let writing = Writing {
        writer,
        sends: sends_rx,
        replies: replies_rx,
        left,
    };
    let halves_lost = [sending_lost_rx, receiving_lost_rx];
    let carrier = Carrier(tokio::spawn(carry(reading, writing, halves_lost, on_loss)));
    (sending, receiving, carrier)
}

/// The connection broke; both halves have been, or will be, told.
struct Broken;

/// Who said `Leave`: after it, nothing but `close_notify` is sent, and what
/// arrives is read only so that the connection closes without a reset.
#[derive(Default)]
struct Left {
    peer: AtomicBool,
    we: AtomicBool,
    /// Our `Finish` is on its way: only now may the peer's `FinishAck` come.
    we_finished: AtomicBool,
}

impl Left {
    fn anyone(&self) -> bool {
        self.peer.load(Ordering::SeqCst) || self.we.load(Ordering::SeqCst)
    }
}

/// Runs the connection until both directions ended, or until it breaks: the
/// reader or writer fails, or a half says it lost the connection (its `on_loss`
/// told; dropped untold, the half simply ended).
async fn carry(
    reading: Reading,
    writing: Writing,
    halves_lost: [oneshot::Receiver<()>; 2],
    on_loss: Option<oneshot::Sender<()>>,
) {
    let read = reading.run();
    let write = writing.run();
    let lost = either_told(halves_lost);
    tokio::pin!(read, write, lost);
    let (mut read_done, mut write_done) = (false, false);
    while !(read_done && write_done) {
        let result = tokio::select! {
            result = &mut read, if !read_done => { read_done = true; result }
            result = &mut write, if !write_done => { write_done = true; result }
            () = &mut lost => Err(Broken),
        };
        if result.is_err() {
            if let Some(on_loss) = on_loss {
                let _ = on_loss.send(());
            }
            return;
        }
    }
}

/// Returns once either half tells its loss; a half that ended untold is not waited for.
async fn either_told([first, second]: [oneshot::Receiver<()>; 2]) {
    async fn told(loss: oneshot::Receiver<()>) {
        if loss.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::select! {
        () = told(first) => {}
        () = told(second) => {}
    }
}

/// Where an arriving frame goes.
enum Route {
    /// An answer to what we sent.
    Answer,
    /// Part of the peer's direction.
    Arrival,
}

struct Reading {
    reader: FrameReader<ReadHalf<Tls>>,
    answers: mpsc::Sender<Routed>,
    /// The highest `Ack` that found no room among the answers: delivered as soon
    /// as there is, standing for every one before it.
    unsent_ack: Option<u64>,
    arrivals: mpsc::Sender<Routed>,
    left: Arc<Left>,
}

/// One direction's state, as the reader sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arriving {
    Open,
    /// The peer ended it; nothing more may arrive for it.
    Ended,
}

impl Reading {
    async fn run(mut self) -> Result<(), Broken> {
        let mut answers = Arriving::Open;
        let mut arrivals = Arriving::Open;
        loop {
            let read = tokio::select! {
                read = self.reader.read_frame() => read,
                room = self.answers.reserve(), if self.unsent_ack.is_some() => {
                    let seq = self.unsent_ack.take().expect("guarded");
                    if let Ok(room) = room {
                        room.send(Routed::Frame(Frame::Ack { seq }));
                    }
                    continue;
                }
            };
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) if self.left.anyone() => return Ok(()),
                Ok(None) if answers == Arriving::Ended && arrivals == Arriving::Ended => {
                    return Ok(());
                }
                Ok(None) => return Err(self.fail(ConnectionError::Unfinished)),
                Err(err) => return Err(self.fail(err)),
            };
            if self.left.anyone() {
                continue;
            }
            let (route, routed) = match frame {
                Frame::Leave => {
                    self.left.peer.store(true, Ordering::SeqCst);
                    self.flush_ack().await;
                    self.answer(Routed::Frame(Frame::Leave))?;
                    let _ = self.arrivals.send(Routed::Frame(Frame::Leave)).await;
                    continue;
                }
                Frame::Ack { .. }
                | Frame::Accept { .. }
                | Frame::Verdict { .. }
                | Frame::Credit { .. } => (Route::Answer, Routed::Frame(frame)),
                Frame::FinishAck if self.left.we_finished.load(Ordering::SeqCst) => {
                    (Route::Answer, Routed::End)
                }
                Frame::FinishAck => return Err(self.unexpected(&frame)),
                Frame::Message { .. }
                | Frame::Offer { .. }
                | Frame::OfferUnhashed { .. }
                | Frame::Chunk { .. }
                | Frame::Digest { .. }
                | Frame::Cancel { .. }
                | Frame::Folder { .. }
                | Frame::Manifest { .. } => (Route::Arrival, Routed::Frame(frame)),
                Frame::Finish => (Route::Arrival, Routed::End),
                Frame::Hello { .. } => return Err(self.unexpected(&frame)),
            };
            let ends = matches!(routed, Routed::End);
            let state = match route {
                Route::Answer => &mut answers,
                Route::Arrival => &mut arrivals,
            };
            if *state == Arriving::Ended {
                return Err(self.unexpected(&frame_of(&routed, &route)));
            }
            if ends {
                *state = Arriving::Ended;
            }
            match (route, routed) {
                (Route::Answer, Routed::Frame(Frame::Ack { seq })) => self.acknowledge(seq),
                (Route::Answer, routed) => {
                    // `FinishAck` comes after the last `Ack`: so it is delivered.
                    if matches!(routed, Routed::End) {
                        self.flush_ack().await;
                    }
                    self.answer(routed)?;
                }
                // Waits while the receiving half is busy: that is the flow control.
                (Route::Arrival, routed) => {
                    let _ = self.arrivals.send(routed).await;
                }
            }
        }
    }

    /// Hands `seq` to the sending half, or merges it into the one waiting for room.
    fn acknowledge(&mut self, seq: u64) {
        if let Some(unsent) = &mut self.unsent_ack {
            *unsent = (*unsent).max(seq);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.answers.try_send(Routed::Frame(Frame::Ack { seq }))
        {
            self.unsent_ack = Some(seq);
        }
    }

    /// Delivers a waiting `Ack` before what must follow it. Waits only while the
    /// sending half is full of accepts and verdicts, which it is reading.
    async fn flush_ack(&mut self) {
        if let Some(seq) = self.unsent_ack.take() {
            let _ = self.answers.send(Routed::Frame(Frame::Ack { seq })).await;
        }
    }

    /// Hands an answer other than `Ack` to the sending half, never waiting.
    fn answer(&self, routed: Routed) -> Result<(), Broken> {
        match self.answers.try_send(routed) {
            // Our sending half has finished, or given up the connection.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(self.fail(ConnectionError::TooManyAnswers(MAX_UNREAD_ANSWERS)))
            }
        }
    }

    fn unexpected(&self, frame: &Frame) -> Broken {
        self.fail(ConnectionError::Misplaced(frame.kind()))
    }

    /// Tells both halves why the connection is gone.
    fn fail(&self, err: ConnectionError) -> Broken {
        let _ = self.answers.try_send(Routed::Failed(err.duplicate()));
        let _ = self.arrivals.try_send(Routed::Failed(err));
        Broken
    }
}

/// The frame behind a routed item, for an error message.
fn frame_of(routed: &Routed, route: &Route) -> Frame {
    match (routed, route) {
        (Routed::Frame(frame), _) => frame.clone(),
        (_, Route::Answer) => Frame::FinishAck,
        (_, Route::Arrival) => Frame::Finish,
    }
}

struct Writing {
    writer: FrameWriter<WriteHalf<Tls>>,
    sends: mpsc::Receiver<Outgoing>,
    replies: mpsc::Receiver<Outgoing>,
    left: Arc<Left>,
}

/// One direction's state, as the writer sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    Open,
    /// Its end is on the wire.
    Ended,
    /// Its half dropped it without ending it.
    Dropped,
}

impl Writing {
    async fn run(mut self) -> Result<(), Broken> {
        let mut sends = Leaving::Open;
        let mut replies = Leaving::Open;
        let mut said_leave = false;
        let mut closed = false;
        while sends == Leaving::Open || replies == Leaving::Open {
            let (item, lane, end) = tokio::select! {
                biased;
                item = self.replies.recv(), if replies == Leaving::Open => {
                    (item, &mut replies, Frame::FinishAck)
                }
                item = self.sends.recv(), if sends == Leaving::Open => {
                    (item, &mut sends, Frame::Finish)
                }
            };
            let quiet = said_leave || self.left.anyone();
            match item {
                Some(Outgoing::Frame(_)) if said_leave => {}
                Some(Outgoing::Frame(frame)) => {
                    said_leave = frame == Frame::Leave;
                    self.left.we.store(said_leave, Ordering::SeqCst);
                    self.write(&frame).await?;
                    if said_leave {
                        closed = self.writer.shutdown().await.is_ok();
                    }
                }
                Some(Outgoing::End(done)) => {
                    if !said_leave {
                        if end == Frame::Finish {
                            self.left.we_finished.store(true, Ordering::SeqCst);
                        }
                        self.write(&end).await?;
                    }
                    *lane = Leaving::Ended;
                    if !closed && sends == Leaving::Ended && replies == Leaving::Ended {
                        closed = self.writer.shutdown().await.is_ok();
                    }
                    let _ = done.send(());
                }
                None if quiet => *lane = Leaving::Dropped,
                // A half gave up the connection: a loss, or the peer broke the protocol.
                None => return Err(Broken),
            }
        }
        if !closed && self.left.anyone() {
            let _ = self.writer.shutdown().await;
        }
        Ok(())
    }

    async fn write(&mut self, frame: &Frame) -> Result<(), Broken> {
        self.writer.write_frame(frame).await.map_err(|_| Broken)
    }
}
