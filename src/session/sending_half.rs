//! The sending half: sends what the user types, and the files, over whichever lane
//! carries this direction now, and keeps every line until the peer acknowledges it.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use super::event::{Command, Event, TransferId};
use super::lane::Lane;
use crate::frame::{self, Frame};
use crate::link::connection::ConnectionError;
use crate::transfer::TransferViolation;
use crate::transfer::hash_cache::SharedHashCache;
use crate::transfer::sending::Sending;

/// How long a clean close waits for the peer to close its side back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a retired lane's connection is held open for the peer to drop it.
const LINGER: Duration = Duration::from_secs(10);

/// Lines in flight, in order, each with its sequence number.
#[derive(Debug)]
pub struct Outbox {
    next_seq: u64,
    /// The highest sequence number ever written; acknowledgements beyond it are lies.
    highest_sent: u64,
    unsent: VecDeque<(u64, String)>,
    unacked: VecDeque<(u64, String)>,
}

/// The peer acknowledged a line we never sent.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the peer acknowledged message {acked}, but only {sent} were sent")]
pub struct AckBeyondSent {
    pub acked: u64,
    pub sent: u64,
}

/// How the sending direction ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SendingEnd {
    /// Everything was delivered and both sides closed cleanly.
    Finished,
    /// The peer closed our connection; anything unacknowledged was reported.
    PeerLeft,
    /// We stopped on request; anything unacknowledged was reported.
    Quit,
    /// No connection came (the dialer or the acceptor gave up); anything unsent was reported.
    Unreachable,
}

/// Why one connected stretch of the sending direction ended.
#[derive(Debug, Error)]
enum LinkError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Ack(#[from] AckBeyondSent),
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    #[error("protocol error: {0}")]
    Transfer(#[from] TransferViolation),
    /// A version-2 peer closed the connection without saying it leaves: whatever
    /// closed it (a middlebox, a crash, a replaced connection), it was not a goodbye.
    #[error("the peer closed the connection without leaving")]
    ClosedWithoutLeave,
    /// We ended our lines, but the peer's answering `close_notify` never came: it
    /// may not know that we finished, so the end is delivered again.
    #[error("the peer did not confirm the end of our lines within {}s", CLOSE_TIMEOUT.as_secs())]
    CloseUnconfirmed,
    /// The session moved our direction to a newer connection.
    #[error("the session moved to a newer connection")]
    Moved,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            next_seq: 1,
            highest_sent: 0,
            unsent: VecDeque::new(),
            unacked: VecDeque::new(),
        }
    }
}

impl Outbox {
    pub fn push(&mut self, text: String) {
        self.unsent.push_back((self.next_seq, text));
        self.next_seq += 1;
    }

    /// The next line to write; it stays kept until acknowledged.
    pub fn take_unsent(&mut self) -> Option<Frame> {
        let (seq, text) = self.unsent.pop_front()?;
        let frame = Frame::Message {
            seq,
            text: text.clone(),
        };
        self.unacked.push_back((seq, text));
        self.highest_sent = self.highest_sent.max(seq);
        Some(frame)
    }

    /// Drops every line up to and including `seq`.
    pub fn acknowledge(&mut self, seq: u64) -> Result<(), AckBeyondSent> {
        if seq > self.highest_sent {
            return Err(AckBeyondSent {
                acked: seq,
                sent: self.highest_sent,
            });
        }
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
        Ok(())
    }

    /// After a reconnect, unacknowledged lines go out again, ahead of newer ones.
    pub fn resend_unacknowledged(&mut self) {
        while let Some(line) = self.unacked.pop_back() {
            self.unsent.push_front(line);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.unsent.is_empty() && self.unacked.is_empty()
    }

    pub fn pending(&self) -> usize {
        self.unsent.len() + self.unacked.len()
    }

    /// Everything not yet acknowledged, oldest first.
    pub fn drain(&mut self) -> Vec<String> {
        self.resend_unacknowledged();
        self.unsent.drain(..).map(|(_, text)| text).collect()
    }
}

/// Runs the sending direction until it finishes, the peer leaves, or we quit, over
/// each lane `lanes` hands it in turn. When `lanes` closes while none is in use, the
/// peer could not be reached (again): what is unsent is reported.
///
/// With `end_unconnected`, an end of input with nothing to send, before any lane
/// came, ends the direction at once: the session is leaving anyway (Ctrl-D at a
/// terminal). Without it the end is delivered like a line, on the first lane that
/// comes, because a peer that has reached us waits for our direction to close.
pub async fn run(
    mut lanes: mpsc::Receiver<Lane>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    hash_cache: Option<SharedHashCache>,
    end_unconnected: bool,
) -> SendingEnd {
    let mut outbox = Outbox::default();
    let mut files = Sending::new(events.clone(), hash_cache);
    let mut connected_before = false;
    let mut input = Input {
        commands,
        finishing: false,
    };
    loop {
        // Once the peer has known us, our end is clean only when it confirms it, so a
        // close cut short by a lost connection is delivered again on a new one.
        let may_end_unconnected = end_unconnected && !connected_before;
        if input.finishing && outbox.is_empty() && files.is_idle() && may_end_unconnected {
            return SendingEnd::Finished;
        }
        let lane = loop {
            tokio::select! {
                lane = lanes.recv() => match lane {
                    Some(lane) => break lane,
                    None => {
                        report_undelivered(&mut outbox, &mut input, &events);
                        files.abandon("not sent: the peer could not be reached");
                        return SendingEnd::Unreachable;
                    }
                },
                command = input.next() => match command {
                    Command::Send(text) => {
                        outbox.push(text);
                        let _ = events.send(Event::Queued { pending: outbox.pending() });
                    }
                    Command::Transfer(path) => files.enqueue(path),
                    Command::Cancel { transfer, .. } => files.cancel(transfer.id),
                    Command::Quit => {
                        report_undelivered(&mut outbox, &mut input, &events);
                        files.abandon("not sent: we quit");
                        return SendingEnd::Quit;
                    }
                    Command::Finish if outbox.is_empty() && files.is_idle() && may_end_unconnected => {
                        return SendingEnd::Finished;
                    }
                    Command::Finish => {}
                },
            }
        };
        connected_before = true;
        outbox.resend_unacknowledged();
        let mut lane = lane;
        match send_on(&mut lane, &mut outbox, &mut files, &mut input).await {
            Ok(end) => {
                if !matches!(end, SendingEnd::Finished) {
                    report_undelivered(&mut outbox, &mut input, &events);
                    files.left(matches!(end, SendingEnd::Quit), &lane.peer_name);
                }
                return end;
            }
            // Retired for a newer connection: what broke, if anything, was the old
            // connection being let go.
            Err(err) if matches!(err, LinkError::Moved) || lane.is_retired() => {
                files.moved_to_a_newer_connection();
                tokio::spawn(linger(lane));
            }
            Err(err) => {
                let reason = err.to_string();
                lane.lost();
                files.connection_lost(&reason);
                let _ = events.send(Event::OutboundLost {
                    reason,
                    we_redial: lane.dialed,
                });
            }
        }
    }
}

/// Sends on one connection until it ends. An error means: reconnect and resend.
/// Chat lines always go before file data, which moves in chunks of at most 64 KiB.
async fn send_on(
    lane: &mut Lane,
    outbox: &mut Outbox,
    files: &mut Sending,
    input: &mut Input,
) -> Result<SendingEnd, LinkError> {
    let peer = lane.peer_name.clone();
    let says_leave = lane.version >= 2;
    let takes_credit = frame::takes_credit(lane.version);
    // On a connection of its own, the peer's close comes at once. On a shared one,
    // `FinishAck` may wait behind the peer's file data that we are still storing:
    // a dead connection is found by its keepalive instead.
    let close_timeout = (!lane.is_shared()).then_some(CLOSE_TIMEOUT);
    files.connected(lane.version);
    let (reader, writer, retire) = (&mut lane.reader, &mut lane.writer, &mut lane.retire);
    loop {
        while let Some(frame) = outbox.take_unsent() {
            writer.write_frame(frame).await?;
        }
        if input.finishing && outbox.is_empty() && files.is_idle() {
            writer.shutdown().await?;
            let closed_back = async {
                loop {
                    match reader.read_frame().await? {
                        None | Some(Frame::Leave) => return Ok::<_, LinkError>(()),
                        Some(Frame::Ack { .. }) => {}
                        Some(Frame::Credit { .. }) if takes_credit => {}
                        Some(other) => return Err(LinkError::Unexpected(other.kind())),
                    }
                }
            };
            let closed_back = match close_timeout {
                Some(limit) => tokio::time::timeout(limit, closed_back).await,
                None => Ok(closed_back.await),
            };
            return match closed_back {
                Ok(Ok(())) => Ok(SendingEnd::Finished),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(LinkError::CloseUnconfirmed),
            };
        }
        tokio::select! {
            biased;
            command = input.next() => match command {
                Command::Send(text) => outbox.push(text),
                Command::Transfer(path) => files.enqueue(path),
                Command::Cancel { transfer, .. } => files.cancel(transfer.id),
                Command::Quit => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        if says_leave {
                            writer.write_frame(Frame::Leave).await?;
                        }
                        writer.shutdown().await
                    })
                    .await;
                    return Ok(SendingEnd::Quit);
                }
                Command::Finish => {}
            },
            frame = reader.read_frame() => match frame? {
                Some(Frame::Ack { seq }) => outbox.acknowledge(seq)?,
                Some(Frame::Accept { id, offset }) => files.accepted(id, offset)?,
                Some(Frame::Verdict { id, status, detail }) => files.verdict(id, status, &detail, &peer)?,
                Some(Frame::Credit { limit }) if takes_credit => files.credited(limit)?,
                Some(Frame::Leave) if says_leave => return Ok(SendingEnd::PeerLeft),
                Some(other) => return Err(LinkError::Unexpected(other.kind())),
                None if says_leave => return Err(LinkError::ClosedWithoutLeave),
                None => return Ok(SendingEnd::PeerLeft),
            },
            () = Lane::retired(retire) => return Err(LinkError::Moved),
            frame = files.next_frame() => writer.write_frame(frame).await?,
        }
    }
}

/// Holds a retired lane's connection open until the peer, which has taken its
/// successor, drops it (or [`LINGER`] passes): closing it first could reach the
/// peer as a loss before it has taken the new connection.
async fn linger(mut lane: Lane) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Some(_)) = lane.reader.read_frame().await {}
    })
    .await;
}

/// The user's commands; remembers when input has ended so a closed channel is read only once.
struct Input {
    commands: mpsc::Receiver<Command>,
    finishing: bool,
}

impl Input {
    /// The next command. `Finish` is reported once, and a closed channel counts as
    /// `Finish`; after that, only further commands (such as `Quit`) wake this up.
    async fn next(&mut self) -> Command {
        loop {
            let command = match self.commands.recv().await {
                Some(command) => command,
                None if self.finishing => return std::future::pending().await,
                None => Command::Finish,
            };
            if command == Command::Finish {
                if self.finishing {
                    continue;
                }
                self.finishing = true;
            }
            return command;
        }
    }
}

/// Lists every line not acknowledged, including those still waiting in the command
/// channel, so that a line typed just before the end is reported, never dropped.
fn report_undelivered(
    outbox: &mut Outbox,
    input: &mut Input,
    events: &mpsc::UnboundedSender<Event>,
) {
    // Closed first: a command sent from now on comes back to its sender, and none
    // can slip in between this drain and the channel being dropped.
    input.commands.close();
    while let Ok(command) = input.commands.try_recv() {
        match command {
            Command::Send(text) => outbox.push(text),
            Command::Transfer(path) => {
                let _ = events.send(Event::transfer_not_sent(
                    &path,
                    "not sent: the session ended",
                ));
            }
            Command::Cancel { transfer, .. } => cancel_too_late(transfer, events),
            Command::Finish | Command::Quit => {}
        }
    }
    let lines = outbox.drain();
    if !lines.is_empty() {
        let _ = events.send(Event::Undelivered { lines });
    }
}

/// A cancel that arrived as the session ended.
fn cancel_too_late(transfer: TransferId, events: &mpsc::UnboundedSender<Event>) {
    let _ = events.send(Event::Note {
        text: format!("nothing to cancel as {transfer}: the session is ending"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(outbox: &mut Outbox) -> Vec<(u64, String)> {
        std::iter::from_fn(|| match outbox.take_unsent()? {
            Frame::Message { seq, text } => Some((seq, text)),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
    }

    #[test]
    fn numbers_lines_from_one_and_keeps_them_until_acked() {
        let mut outbox = Outbox::default();
        outbox.push("a".into());
        outbox.push("b".into());
        assert_eq!(texts(&mut outbox), [(1, "a".into()), (2, "b".into())]);
        assert!(!outbox.is_empty());
        outbox.acknowledge(1).unwrap();
        assert_eq!(outbox.pending(), 1);
        outbox.acknowledge(2).unwrap();
        assert!(outbox.is_empty());
    }

    #[test]
    fn resends_unacknowledged_before_newer_lines() {
        let mut outbox = Outbox::default();
        for line in ["a", "b", "c"] {
            outbox.push(line.into());
        }
        let _ = texts(&mut outbox);
        outbox.acknowledge(1).unwrap();
        outbox.push("d".into());
        outbox.resend_unacknowledged();
        let seqs: Vec<u64> = texts(&mut outbox).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
    }

    #[test]
    fn refuses_an_ack_for_a_line_never_sent() {
        let mut outbox = Outbox::default();
        outbox.push("a".into());
        outbox.push("b".into());
        outbox.take_unsent();
        assert_eq!(
            outbox.acknowledge(2),
            Err(AckBeyondSent { acked: 2, sent: 1 })
        );
        assert_eq!(outbox.acknowledge(1), Ok(()));
        assert_eq!(outbox.acknowledge(1), Ok(()));
    }

    #[test]
    fn drain_returns_everything_unacknowledged_in_order() {
        let mut outbox = Outbox::default();
        for line in ["a", "b", "c"] {
            outbox.push(line.into());
        }
        outbox.take_unsent();
        outbox.take_unsent();
        outbox.acknowledge(1).unwrap();
        assert_eq!(outbox.drain(), ["b", "c"]);
        assert!(outbox.is_empty());
    }
}
