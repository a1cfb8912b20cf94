//! The receiving direction: shows each of the peer's lines exactly once, in order,
//! and acknowledges them on the same connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::connection::{ConnectionError, FrameWriter};
use crate::event::Event;
use crate::frame::Frame;
use crate::handshake::Link;

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
    /// A frame that has no meaning on this direction.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
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
    pub fn arrive(&mut self, session: u64, seq: u64) -> Result<Arrival, InboundError> {
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
pub async fn receive(
    link: Link,
    state: Arc<Mutex<ReceiveState>>,
    events: mpsc::UnboundedSender<Event>,
    mut close: oneshot::Receiver<()>,
) -> InboundEnd {
    let session = link.peer_session;
    let (mut reader, writer) = link.connection.into_split();
    let (acks, acks_rx) = watch::channel(0u64);
    let acknowledger = tokio::spawn(acknowledge(writer, acks_rx));

    let end = loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            _ = &mut close => break InboundEnd::Closed,
        };
        let seq = match frame {
            Ok(None) => break InboundEnd::Finished,
            Err(err) => break InboundEnd::Lost(err.into()),
            Ok(Some(Frame::Message { seq, text })) => {
                let arrival = state
                    .lock()
                    .expect("receive state poisoned")
                    .arrive(session, seq);
                match arrival {
                    Ok(Arrival::Show) => {
                        let from = link.peer_name.clone();
                        let _ = events.send(Event::Message { from, text });
                        seq
                    }
                    Ok(Arrival::Duplicate) => seq,
                    Err(err) => break InboundEnd::Lost(err),
                }
            }
            Ok(Some(other)) => break InboundEnd::Lost(InboundError::Unexpected(other.kind())),
        };
        acks.send_replace(seq);
    };
    drop(acks);
    if !matches!(end, InboundEnd::Lost(_)) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, acknowledger).await;
    }
    end
}

/// Writes cumulative acknowledgements as they change, so reading never waits on writing.
/// When the receiver is done, sends the last one and closes our side with close_notify.
async fn acknowledge<W>(
    mut writer: FrameWriter<W>,
    mut acks: watch::Receiver<u64>,
) -> Result<(), ConnectionError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut sent = 0;
    loop {
        let open = acks.changed().await.is_ok();
        let seq = *acks.borrow_and_update();
        if seq != sent {
            writer.write_frame(&Frame::Ack { seq }).await?;
            sent = seq;
        }
        if !open {
            return writer.shutdown().await;
        }
    }
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
    fn survives_the_largest_sequence_number() {
        let mut state = ReceiveState::default();
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Show);
        assert_eq!(state.arrive(1, u64::MAX).unwrap(), Arrival::Duplicate);
    }
}
