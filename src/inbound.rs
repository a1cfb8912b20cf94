//! The receiving direction: shows each of the peer's lines exactly once, in order,
//! and acknowledges them on the same connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::connection::{ConnectionError, FrameWriter};
use crate::event::Event;
use crate::frame::Frame;
use crate::handshake::Link;
use crate::transfer::TransferViolation;
use crate::transfer::incoming::ReceiveLimits;
use crate::transfer::receiving::Receiving;

/// How long closing waits for our last acknowledgement and close_notify to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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
pub enum InboundError {
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
pub enum InboundEnd {
    /// The peer closed its direction cleanly after its last line.
    Finished,
    /// We closed it on request.
    Closed,
    /// It failed; the peer may come back.
    Lost(InboundError),
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

    pub fn arrive(&mut self, session: u64, seq: u64) -> Result<Arrival, InboundError> {
        if seq == 0 {
            return Err(InboundError::ZeroSeq);
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
            return Err(InboundError::Gap { expected, got: seq });
        }
        self.delivered = seq;
        Ok(Arrival::Show)
    }
}

/// Receives on `link` until the peer finishes, the link fails, or `close` fires.
///
/// How it ends decides how the connection is closed: after the peer finished, with
/// our last answers and `close_notify`; when we quit, with `Leave` first (version 2);
/// when it was lost or broke the protocol, with no `close_notify` at all, so that the
/// peer sees a loss too and reconnects rather than conclude that we left.
pub async fn receive(
    link: Link,
    state: Arc<Mutex<ReceiveState>>,
    limits: ReceiveLimits,
    events: mpsc::UnboundedSender<Event>,
    mut close: oneshot::Receiver<()>,
) -> InboundEnd {
    let session = link.peer_session;
    let says_leave = link.version >= 2;
    let peer = link.peer_name.clone();
    let (mut reader, writer) = link.connection.into_split();
    let (acks, acks_rx) = watch::channel(0u64);
    let (replies, replies_rx) = mpsc::unbounded_channel();
    let goodbye = replies.clone();
    let mut answering = Answering(tokio::spawn(answer(writer, acks_rx, replies_rx)));
    let mut files = Receiving::new(limits, peer.clone(), replies, events.clone());

    let end = loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            _ = &mut close => break InboundEnd::Closed,
        };
        let result = match frame {
            Ok(None) | Ok(Some(Frame::Leave)) => break InboundEnd::Finished,
            Err(err) => Err(err.into()),
            Ok(Some(frame)) => {
                handle(frame, session, &state, &peer, &acks, &mut files, &events).await
            }
        };
        if let Err(err) = result {
            break InboundEnd::Lost(err);
        }
    };
    let (why, keep_partial) = match &end {
        InboundEnd::Finished => ("the sender closed the connection", true),
        InboundEnd::Closed => ("we closed the connection", true),
        InboundEnd::Lost(InboundError::Connection(err)) if err.is_disconnect() => {
            ("the connection was lost", true)
        }
        InboundEnd::Lost(_) => ("the sender broke the protocol", false),
    };
    files.abandon(why, keep_partial).await;
    drop(files);
    drop(acks);
    if let InboundEnd::Closed = end
        && says_leave
    {
        let _ = goodbye.send(Frame::Leave);
    }
    drop(goodbye);
    if !matches!(end, InboundEnd::Lost(_)) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut answering.0).await;
    }
    drop(answering);
    end
}

/// The task that writes our answers; dropping it closes our direction without
/// `close_notify`.
struct Answering(JoinHandle<Result<(), ConnectionError>>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn handle(
    frame: Frame,
    session: u64,
    state: &Mutex<ReceiveState>,
    peer: &str,
    acks: &watch::Sender<u64>,
    files: &mut Receiving,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), InboundError> {
    match frame {
        Frame::Message { seq, text } => {
            let (arrival, delivered) = {
                let mut state = state.lock().expect("receive state poisoned");
                (state.arrive(session, seq)?, state.delivered())
            };
            if arrival == Arrival::Show {
                let from = peer.to_owned();
                let _ = events.send(Event::Message { from, text });
            }
            // Acknowledgements never go backwards, even for a resent line.
            acks.send_replace(delivered);
        }
        Frame::Offer {
            id,
            size,
            sha256,
            name,
        } => files.offer(id, &name, size, sha256).await?,
        Frame::Chunk { id, data } => files.chunk(id, data).await?,
        Frame::Cancel { id, reason } => files.cancel(id, &reason).await?,
        other => return Err(InboundError::Unexpected(other.kind())),
    }
    Ok(())
}

/// Writes acknowledgements and transfer replies, so reading never waits on writing.
/// Acknowledgements are cumulative, so only the latest is kept. When the receiver is
/// done, sends what is left and closes our side with close_notify.
async fn answer<W>(
    mut writer: FrameWriter<W>,
    mut acks: watch::Receiver<u64>,
    mut replies: mpsc::UnboundedReceiver<Frame>,
) -> Result<(), ConnectionError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut acked = 0;
    let mut acks_open = true;
    let mut replies_open = true;
    while acks_open || replies_open {
        tokio::select! {
            changed = acks.changed(), if acks_open => {
                acks_open = changed.is_ok();
                let seq = *acks.borrow_and_update();
                if seq != acked {
                    writer.write_frame(&Frame::Ack { seq }).await?;
                    acked = seq;
                }
            }
            reply = replies.recv(), if replies_open => match reply {
                Some(frame) => writer.write_frame(&frame).await?,
                None => replies_open = false,
            },
        }
    }
    writer.shutdown().await
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
            Err(InboundError::Gap {
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
        assert!(matches!(state.arrive(7, 0), Err(InboundError::ZeroSeq)));
        state.arrive(7, 1).unwrap();
        assert!(matches!(state.arrive(7, 0), Err(InboundError::ZeroSeq)));
    }

    #[test]
    fn survives_the_largest_sequence_number() {
        let mut state = ReceiveState::default();
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Duplicate);
    }
}
