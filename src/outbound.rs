//! The sending direction: dial the peer (retrying while it is not up), send what the
//! user types, and keep every line until the peer acknowledges it.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::connection::ConnectionError;
use crate::event::{Command, Direction, Event, TransferId};
use crate::frame::Frame;
use crate::handshake::{self, Greeting, HandshakeError, Link};
use crate::target::Target;
use crate::tls::{self, Pin, PinMismatch};
use crate::transfer::TransferViolation;
use crate::transfer::sending::Sending;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a clean close waits for the peer to close its side back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
#[derive(Debug)]
pub enum OutboundEnd {
    /// Everything was delivered and both sides closed cleanly.
    Finished,
    /// The peer closed our connection; anything unacknowledged was reported.
    PeerLeft,
    /// We stopped on request; anything unacknowledged was reported.
    Quit,
    /// The peer is not the one we pinned, or it refused us. Retrying cannot help.
    Refused(Refusal),
    /// The peer stayed unreachable for longer than `--retry-for`.
    GaveUp(String),
}

/// Why the peer we reached is not one we may talk to.
#[derive(Debug, Clone, Error)]
#[error("{reason}")]
pub struct Refusal {
    pub reason: String,
    /// Set when it presented another certificate than the pinned one (rather than
    /// refusing ours).
    pub mismatch: Option<PinMismatch>,
    /// Where we reached it.
    pub target: String,
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

/// Everything needed to reach the peer.
pub struct Dialer {
    pub target: Target,
    pub connector: TlsConnector,
    pub greeting: Greeting,
    pub retry_for: Duration,
    /// The pin the connector checks; a new one restarts the attempts at once.
    pub pin: Pin,
    pub wrong_pin: WrongPin,
}

/// What a wrong certificate before the first connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongPin {
    /// The end: exit status 3 (scripts, pipes).
    Fatal,
    /// Say so, and keep trying while the person re-enters the fingerprint (or the
    /// other side corrects ours).
    AskAgain,
}

impl Dialer {
    /// Connects, retrying with capped exponential backoff while the peer is unreachable,
    /// for at most `retry_for`. Returns an error when retrying cannot help or time is up.
    ///
    /// A wrong certificate or a refusal is final only before the pinned peer has ever
    /// answered: afterwards it may be a stranger holding the port while the peer
    /// restarts, or a forged alert, so it is reported and retried.
    async fn dial(
        &self,
        events: &mpsc::UnboundedSender<Event>,
        connected_before: bool,
    ) -> Result<Link, OutboundEnd> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut told_user = false;
        let mut started = tokio::time::Instant::now();
        let mut pin_changes = self.pin.changes();
        let mut last_mismatch = None;
        loop {
            let reason = match self.try_dial().await {
                Ok(link) => return Ok(link),
                Err(DialFailure::Fatal { reason, mismatch })
                    if !connected_before && self.wrong_pin == WrongPin::Fatal =>
                {
                    return Err(OutboundEnd::Refused(Refusal {
                        reason,
                        mismatch,
                        target: self.target.to_string(),
                    }));
                }
                Err(DialFailure::Fatal {
                    reason,
                    mismatch: Some(mismatch),
                }) if !connected_before => {
                    if last_mismatch.replace(mismatch.clone()) != Some(mismatch.clone()) {
                        let _ = events.send(Event::WrongPin {
                            target: self.target.to_string(),
                            mismatch,
                        });
                    }
                    reason
                }
                Err(DialFailure::Fatal { reason, .. }) if !connected_before => reason,
                Err(DialFailure::Fatal { reason, .. }) => {
                    let _ = events.send(Event::Distrusted {
                        reason: reason.clone(),
                    });
                    reason
                }
                Err(DialFailure::Retry(reason)) => reason,
            };
            let target = self.target.to_string();
            if started.elapsed() >= self.retry_for {
                let _ = events.send(Event::GaveUp {
                    target: target.clone(),
                    reason: reason.clone(),
                });
                return Err(OutboundEnd::GaveUp(format!(
                    "the peer at {target} was unreachable for {}s ({reason})",
                    self.retry_for.as_secs()
                )));
            }
            if !told_user {
                told_user = true;
                let _ = events.send(Event::Waiting {
                    target: target.clone(),
                    reason: reason.clone(),
                });
            }
            let _ = events.send(Event::Retrying {
                target,
                reason,
                delay,
            });
            let left = self.retry_for.saturating_sub(started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(delay.min(left)) => delay = (delay * 2).min(MAX_RETRY_DELAY),
                Ok(()) = pin_changes.changed() => {
                    // The same wrong fingerprint entered again is reported again.
                    last_mismatch = None;
                    delay = FIRST_RETRY_DELAY;
                    started = tokio::time::Instant::now();
                }
            }
        }
    }

    async fn try_dial(&self) -> Result<Link, DialFailure> {
        let addrs = self
            .target
            .resolve()
            .await
            .map_err(|err| DialFailure::Retry(err.to_string()))?;
        let mut last_error = String::from("no address");
        for addr in addrs {
            let tcp = match TcpStream::connect(addr).await {
                Ok(tcp) => tcp,
                Err(err) => {
                    last_error = err.to_string();
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return handshake::connect(&self.connector, tcp, addr, &self.greeting)
                .await
                .map_err(|err| classify(addr, err));
        }
        Err(DialFailure::Retry(last_error))
    }
}

enum DialFailure {
    Retry(String),
    /// A wrong certificate, or the peer refused ours.
    Fatal {
        reason: String,
        mismatch: Option<PinMismatch>,
    },
}

/// Pin mismatches and refusals are final; everything else may be a peer still starting.
fn classify(addr: std::net::SocketAddr, err: HandshakeError) -> DialFailure {
    if let Some(io) = err.io_error() {
        if let Some(mismatch) = tls::pin_mismatch(io) {
            return DialFailure::Fatal {
                reason: format!("the peer at {addr} is not the one we trust: {mismatch}"),
                mismatch: Some(mismatch.clone()),
            };
        }
        if let Some(alert) = tls::received_alert(io) {
            return DialFailure::Fatal {
                reason: format!(
                    "the peer at {addr} refused our certificate (TLS alert {alert:?}); check that it pinned our fingerprint"
                ),
                mismatch: None,
            };
        }
    }
    match err {
        HandshakeError::Version { .. } | HandshakeError::NotHello(_) => {
            DialFailure::Retry(format!("the peer at {addr} broke the greeting: {err}"))
        }
        HandshakeError::Timeout => DialFailure::Retry(format!(
            "the connection was accepted, but the peer has not answered within {}s; it may still be at its prompts",
            handshake::HANDSHAKE_TIMEOUT.as_secs()
        )),
        other => DialFailure::Retry(other.to_string()),
    }
}

/// Runs the sending direction until it finishes, the peer leaves, or we quit.
pub async fn run(
    dialer: Dialer,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) -> OutboundEnd {
    let mut outbox = Outbox::default();
    let mut files = Sending::new(events.clone());
    let mut connected_before = false;
    let mut input = Input {
        commands,
        finishing: false,
    };
    loop {
        // Once the peer has known us, our end is clean only when it confirms it, so a
        // close cut short by a lost connection is delivered again on a new one.
        if input.finishing && outbox.is_empty() && files.is_idle() && !connected_before {
            return OutboundEnd::Finished;
        }
        let dial = dialer.dial(&events, connected_before);
        tokio::pin!(dial);
        let link = loop {
            tokio::select! {
                result = &mut dial => match result {
                    Ok(link) => break link,
                    Err(end) => {
                        report_undelivered(&mut outbox, &mut input, &events);
                        files.abandon("not sent: the peer could not be reached");
                        return end;
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
                        return OutboundEnd::Quit;
                    }
                    Command::Finish if outbox.is_empty() && files.is_idle() && !connected_before => {
                        return OutboundEnd::Finished;
                    }
                    Command::Finish => {}
                },
            }
        };
        let _ = events.send(Event::Connected {
            direction: Direction::Outbound,
            again: std::mem::replace(&mut connected_before, true),
            peer: link.peer_name.clone(),
            fingerprint: link.peer_fingerprint,
            addr: link.addr,
            tls: link.tls.clone(),
        });
        outbox.resend_unacknowledged();
        match send_on(link, &mut outbox, &mut files, &mut input).await {
            Ok(end) => {
                if !matches!(end, OutboundEnd::Finished) {
                    report_undelivered(&mut outbox, &mut input, &events);
                    files.abandon(match end {
                        OutboundEnd::Quit => "not sent: we quit",
                        _ => "not sent: the peer left",
                    });
                }
                return end;
            }
            Err(err) => {
                let reason = err.to_string();
                files.connection_lost(&reason);
                let _ = events.send(Event::OutboundLost { reason });
            }
        }
    }
}

/// Sends on one connection until it ends. An error means: reconnect and resend.
/// Chat lines always go before file data, which moves in chunks of at most 64 KiB.
async fn send_on(
    link: Link,
    outbox: &mut Outbox,
    files: &mut Sending,
    input: &mut Input,
) -> Result<OutboundEnd, LinkError> {
    let peer = link.peer_name;
    let says_leave = link.version >= 2;
    files.connected(link.version);
    let (mut reader, mut writer) = link.connection.into_split();
    loop {
        while let Some(frame) = outbox.take_unsent() {
            writer.write_frame(&frame).await?;
        }
        if input.finishing && outbox.is_empty() && files.is_idle() {
            writer.shutdown().await?;
            let closed_back = async {
                loop {
                    match reader.read_frame().await? {
                        None | Some(Frame::Leave) => return Ok::<_, LinkError>(()),
                        Some(Frame::Ack { .. }) => {}
                        Some(other) => return Err(LinkError::Unexpected(other.kind())),
                    }
                }
            };
            return match tokio::time::timeout(CLOSE_TIMEOUT, closed_back).await {
                Ok(Ok(())) => Ok(OutboundEnd::Finished),
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
                            writer.write_frame(&Frame::Leave).await?;
                        }
                        writer.shutdown().await
                    })
                    .await;
                    return Ok(OutboundEnd::Quit);
                }
                Command::Finish => {}
            },
            frame = reader.read_frame() => match frame? {
                Some(Frame::Ack { seq }) => outbox.acknowledge(seq)?,
                Some(Frame::Accept { id, offset }) => files.accepted(id, offset)?,
                Some(Frame::Verdict { id, status, detail }) => files.verdict(id, status, &detail, &peer)?,
                Some(Frame::Leave) if says_leave => return Ok(OutboundEnd::PeerLeft),
                Some(other) => return Err(LinkError::Unexpected(other.kind())),
                None if says_leave => return Err(LinkError::ClosedWithoutLeave),
                None => return Ok(OutboundEnd::PeerLeft),
            },
            frame = files.next_frame() => writer.write_frame(&frame).await?,
        }
    }
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
