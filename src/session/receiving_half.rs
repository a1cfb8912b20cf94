//! The receiving half: shows each of the peer's lines exactly once, in order, stores
//! its files, and answers both on the lane that carries this direction now.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::event::{Event, Shown, ShownWatch};
use super::lane::{Lane, LaneReader, LaneWriter};
use crate::frame::{CREDIT_WINDOW, Frame, takes_credit};
use crate::link::connection::ConnectionError;
use crate::transfer::TransferViolation;
use crate::transfer::incoming::ReceiveLimits;
use crate::transfer::receiving::Receiving;

/// How long closing waits for our last acknowledgement and close_notify to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines accepted but not yet written out before reading from the peer pauses.
pub const MAX_UNSHOWN_LINES: u64 = 256;
/// Verdicts and acceptances waiting to be written before reading from the peer pauses.
const REPLIES_IN_FLIGHT: usize = 64;

/// What we remember about the peer's messages across its reconnects.
#[derive(Debug, Default)]
pub struct ReceiveState {
    /// The sender session the counter below belongs to.
    session: Option<u64>,
    /// The highest sequence number shown.
    delivered: u64,
}

/// What to do with an arriving message.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New: show it.
    Show,
    /// Already shown before a reconnect: acknowledge again, show nothing.
    Duplicate,
}

/// Why the receiving direction failed.
#[derive(Debug, Error)]
pub enum ReceivingError {
    /// Sequence numbers skipped ahead: a line would be lost.
    #[error("message {got} arrived but {expected} was next")]
    Gap { expected: u64, got: u64 },
    /// Sequence numbers start at 1; 0 is never valid (nor is wrapping past `u64::MAX`).
    #[error("message with sequence number 0")]
    ZeroSeq,
    /// A frame that has no meaning on this direction.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    #[error("protocol error: {0}")]
    Transfer(#[from] TransferViolation),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

/// How a receiving connection ended.
#[derive(Debug)]
pub enum ReceivingEnd {
    /// The peer closed its direction cleanly after its last line.
    Finished,
    /// We closed it on request.
    Closed,
    /// It failed; the peer may come back.
    Lost(ReceivingError),
}

impl ReceiveState {
    /// Decides whether message `seq` from sender session `session` is new.
    ///
    /// The first message of a session we have not seen sets the baseline, because
    /// an earlier run of ours may already have shown the lines before it.
    /// The highest sequence number shown: what an acknowledgement may claim.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn arrive(&mut self, session: u64, seq: u64) -> Result<Arrival, ReceivingError> {
        if seq == 0 {
            return Err(ReceivingError::ZeroSeq);
        }
        if self.session != Some(session) {
            self.session = Some(session);
            self.delivered = seq.saturating_sub(1);
        }
        if seq <= self.delivered {
            return Ok(Arrival::Duplicate);
        }
        let expected = self.delivered + 1;
        if seq != expected {
            return Err(ReceivingError::Gap { expected, got: seq });
        }
        self.delivered = seq;
        Ok(Arrival::Show)
    }
}

/// What the session may ask of a receiving connection while it runs.
pub struct Controls {
    /// Fires when we quit.
    pub close: oneshot::Receiver<()>,
    /// Arriving files the person cancelled, and whether to keep their parts.
    pub cancels: mpsc::Receiver<(u64, bool)>,
}

/// Receives on `lane` until the peer finishes, the link fails, or `close` fires.
///
/// A line is acknowledged only once the front end has written it (`shown`), and at
/// most [`MAX_UNSHOWN_LINES`] wait to be written: past that, reading from the peer
/// pauses, so a stalled terminal holds the lines at the sender, never in memory here.
///
/// How it ends decides how the connection is closed: after the peer finished, with
/// our last answers and `close_notify`; when we quit, with `Leave` first (version 2);
/// when it was lost or broke the protocol, with no `close_notify` at all, so that the
/// peer sees a loss too and reconnects rather than conclude that we left.
pub async fn receive(
    lane: Lane,
    state: Arc<Mutex<ReceiveState>>,
    shown: ShownWatch,
    limits: ReceiveLimits,
    events: mpsc::UnboundedSender<Event>,
    controls: Controls,
) -> ReceivingEnd {
    let Controls {
        mut close,
        mut cancels,
    } = controls;
    let session = lane.peer_session;
    let says_leave = lane.version >= 2;
    let peer = lane.peer_name.clone();
    let version = lane.version;
    let (mut reader, writer) = (lane.reader, lane.writer);
    let (replies, replies_rx) = mpsc::channel(REPLIES_IN_FLIGHT);
    let goodbye = replies.clone();
    let mut written = shown.subscribe();
    let acks = Acks {
        session,
        shown: shown.subscribe(),
    };
    let sender = lane.peer_fingerprint;
    let mut files = Receiving::new(
        limits,
        peer.clone(),
        sender,
        version,
        replies,
        events.clone(),
    );
    let credits = takes_credit(version).then(|| files.backlog().drained_counts());
    let answering = Answering(tokio::spawn(answer(writer, acks, credits, replies_rx)));
    let incoming = Incoming {
        session,
        peer: &peer,
        state: &state,
        shown: &shown,
        events: &events,
    };

    let end = loop {
        let backlog = async {
            let delivered = state.lock().expect("receive state poisoned").delivered();
            let _ = written
                .wait_for(|&(s, seq)| {
                    s != session || delivered - seq.min(delivered) < MAX_UNSHOWN_LINES
                })
                .await;
        };
        let frame = tokio::select! {
            biased;
            _ = &mut close => break ReceivingEnd::Closed,
            Some((id, keep)) = cancels.recv() => {
                if let Err(why) = files.cancel_here(id, keep).await {
                    let _ = events.send(Event::Note { text: why });
                }
                continue;
            }
            prepared = files.next_prepared() => {
                files.prepared(prepared).await;
                continue;
            }
            frame = async { backlog.await; reader.read_frame().await } => frame,
        };
        let result = match frame {
            Ok(None) | Ok(Some(Frame::Leave)) => break ReceivingEnd::Finished,
            Err(err) => Err(err.into()),
            Ok(Some(frame)) => incoming.handle(frame, &mut files).await,
        };
        if let Err(err) = result {
            break ReceivingEnd::Lost(err);
        }
    };
    let (why, keep_partial) = match &end {
        ReceivingEnd::Finished => ("the sender closed the connection", true),
        ReceivingEnd::Closed => ("we closed the connection", true),
        ReceivingEnd::Lost(ReceivingError::Connection(err)) if err.is_disconnect() => {
            ("the connection was lost", true)
        }
        ReceivingEnd::Lost(_) => ("the sender broke the protocol", false),
    };
    files.abandon(why, keep_partial).await;
    drop(files);
    close_connection(&end, says_leave, goodbye, answering, reader).await;
    end
}

/// Closes the connection as `end` requires: lost, by dropping it without
/// `close_notify`; otherwise after our last answers (and `Leave`, when we quit).
async fn close_connection(
    end: &ReceivingEnd,
    says_leave: bool,
    goodbye: mpsc::Sender<Frame>,
    mut answering: Answering,
    mut reader: LaneReader,
) {
    if matches!(end, ReceivingEnd::Lost(_)) {
        return;
    }
    let quitting = matches!(end, ReceivingEnd::Closed);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if quitting && says_leave {
            let _ = goodbye.send(Frame::Leave).await;
        }
        drop(goodbye);
        // After our Leave, read and discard until the peer closes: closing with its
        // data unread would reset the connection, and a reset can overtake the
        // Leave, so that the peer would see a loss and keep trying.
        let linger =
            async { while quitting && matches!(reader.read_frame().await, Ok(Some(_))) {} };
        tokio::join!(&mut answering.0, linger)
    })
    .await;
}

/// The task that writes our answers; dropping it closes our direction without
/// `close_notify`.
struct Answering(JoinHandle<Result<(), ConnectionError>>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What handling one frame needs besides the transfers.
struct Incoming<'a> {
    session: u64,
    peer: &'a str,
    state: &'a Mutex<ReceiveState>,
    shown: &'a ShownWatch,
    events: &'a mpsc::UnboundedSender<Event>,
}

impl Incoming<'_> {
    async fn handle(&self, frame: Frame, files: &mut Receiving) -> Result<(), ReceivingError> {
        match frame {
            Frame::Message { seq, text } => {
                let (arrival, new_session) = {
                    let mut state = self.state.lock().expect("receive state poisoned");
                    let new_session = state.session != Some(self.session);
                    (state.arrive(self.session, seq)?, new_session)
                };
                if new_session {
                    // The lines before a new session's first are taken as shown (by an
                    // earlier run of ours); count what waits to be written from there.
                    self.shown.send_replace((self.session, seq - 1));
                }
                if arrival == Arrival::Show {
                    let _ = self.events.send(Event::Message {
                        from: self.peer.to_owned(),
                        text,
                        shown: Shown::new(self.session, seq, self.shown.clone()),
                    });
                }
            }
            Frame::Offer {
                id,
                size,
                sha256,
                name,
            } => files.offer(id, &name, size, Some(sha256)).await?,
            Frame::OfferUnhashed { id, size, name } => files.offer(id, &name, size, None).await?,
            Frame::Digest { id, sha256 } => files.digest(id, sha256)?,
            Frame::Chunk { id, data } => files.chunk(id, data).await?,
            Frame::Cancel { id, reason } => files.cancel(id, &reason).await?,
            Frame::Folder {
                id,
                entries,
                manifest_len,
                size,
                name,
            } => files.folder(id, entries, manifest_len, size, &name).await?,
            Frame::Manifest { id, data } => files.manifest(id, data).await?,
            other => return Err(ReceivingError::Unexpected(other.kind())),
        }
        Ok(())
    }
}

/// Which written lines this connection acknowledges: those of its sender's session.
struct Acks {
    session: u64,
    shown: watch::Receiver<(u64, u64)>,
}

impl Acks {
    /// The acknowledgement to send now, if it moved past `acked`. Acknowledgements
    /// never go backwards, even for a resent line.
    fn due(&mut self, acked: u64) -> Option<u64> {
        let (session, seq) = *self.shown.borrow_and_update();
        (session == self.session && seq > acked).then_some(seq)
    }
}

/// Writes acknowledgements, credit for file data and transfer replies, so reading
/// never waits on writing. Acknowledgements are cumulative, so only the latest is
/// sent, including, first of all, lines written before this connection existed;
/// so is credit. When the receiver is done, sends what is left and closes our side
/// with close_notify.
async fn answer(
    mut writer: LaneWriter,
    mut acks: Acks,
    mut credits: Option<watch::Receiver<u64>>,
    mut replies: mpsc::Receiver<Frame>,
) -> Result<(), ConnectionError> {
    let mut acked = 0;
    acks.shown.mark_changed();
    loop {
        tokio::select! {
            biased;
            Ok(()) = acks.shown.changed() => {
                if let Some(seq) = acks.due(acked) {
                    writer.write_frame(Frame::Ack { seq }).await?;
                    acked = seq;
                }
            }
            Some(limit) = next_credit(&mut credits) => {
                writer.write_frame(Frame::Credit { limit }).await?;
            }
            reply = replies.recv() => match reply {
                Some(frame) => writer.write_frame(frame).await?,
                None => break,
            },
        }
    }
    if let Some(seq) = acks.due(acked) {
        writer.write_frame(Frame::Ack { seq }).await?;
    }
    writer.shutdown().await
}

/// The credit to grant once more of the connection's file data has drained: a
/// window beyond it. `None` on a version without `Credit`.
async fn next_credit(drained: &mut Option<watch::Receiver<u64>>) -> Option<u64> {
    let drained = drained.as_mut()?;
    if drained.changed().await.is_err() {
        return std::future::pending().await;
    }
    Some(*drained.borrow_and_update() + CREDIT_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_each_message_once_in_order() {
        let mut state = ReceiveState::default();
        assert_eq!(state.arrive(7, 1).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(7, 2).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(7, 1).unwrap(), Arrival::Duplicate);
        assert_eq!(state.arrive(7, 2).unwrap(), Arrival::Duplicate);
        assert_eq!(state.arrive(7, 3).unwrap(), Arrival::Show);
    }

    #[test]
    fn refuses_a_gap() {
        let mut state = ReceiveState::default();
        state.arrive(7, 1).unwrap();
        assert!(matches!(
            state.arrive(7, 3),
            Err(ReceivingError::Gap {
                expected: 2,
                got: 3
            })
        ));
    }

    #[test]
    fn a_new_sender_session_starts_where_it_resumes() {
        let mut state = ReceiveState::default();
        state.arrive(7, 1).unwrap();
        assert_eq!(state.arrive(8, 57).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(8, 58).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(8, 57).unwrap(), Arrival::Duplicate);
    }

    #[test]
    fn refuses_sequence_number_zero() {
        let mut state = ReceiveState::default();
        assert!(matches!(state.arrive(7, 0), Err(ReceivingError::ZeroSeq)));
        state.arrive(7, 1).unwrap();
        assert!(matches!(state.arrive(7, 0), Err(ReceivingError::ZeroSeq)));
    }

    #[test]
    fn survives_the_largest_sequence_number() {
        let mut state = ReceiveState::default();
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Duplicate);
    }
}
