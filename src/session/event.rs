//! The vocabulary between the core and the front end: commands in, events out.
//!
//! The core never prints; everything a user should learn leaves it as an [`Event`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::identity::fingerprint::Fingerprint;
use crate::link::route::Path;
use crate::link::tls::{PinMismatch, TlsSummary};
use crate::link::{Probe, Route};

/// What the user asked for, already parsed from a typed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a chat line.
    Send(String),
    /// Send a file.
    Transfer(PathBuf),
    /// Standard input ended: deliver what is queued, close our direction, wait for the peer.
    Finish,
    /// Close both directions now (`/quit`, Ctrl-C).
    Quit,
    /// Stop one transfer (`/cancel`); an arriving file's part is kept for a resume
    /// only if `keep`.
    Cancel { transfer: TransferId, keep: bool },
}

/// A transfer as the person sees it: sent files and arriving files are numbered
/// separately, so the direction is part of its name (`s1`, `r1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferId {
    pub receiving: bool,
    pub id: u64,
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = if self.receiving { 'r' } else { 's' };
        write!(f, "{side}{}", self.id)
    }
}

impl std::str::FromStr for TransferId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a transfer; /transfers lists them (s1, r2, …)");
        let (receiving, number) = match text.split_at_checked(1).ok_or_else(bad)? {
            ("s", number) => (false, number),
            ("r", number) => (true, number),
            _ => return Err(bad()),
        };
        let id = number.parse().map_err(|_| bad())?;
        Ok(TransferId { receiving, id })
    }
}

/// Which connection an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The connection we dialled; it carries what we type.
    Outbound,
    /// The connection the peer dialled; it carries what the peer types.
    Inbound,
    /// Single-connection mode: the one connection, which carries both.
    Both { dialed: bool },
}

/// Which stretch of a transfer a progress report belongs to. Sending ids
/// (`Hashing`, `Sending`) and receiving ids (`Receiving`) are separate spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Hashing,
    Sending,
    Receiving,
}

/// How many of a folder's files are through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCount {
    pub done: usize,
    pub total: usize,
}

/// How a received file or folder was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A file, by its SHA-256 (hex).
    Sha256(String),
    /// A folder, each of its `files` by its own size and SHA-256.
    Files { files: usize, bytes: u64 },
}

/// Something the user should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer is not reachable yet; we keep trying.
    Waiting { target: String, reason: String },
    /// One more failed attempt, for verbose output.
    Retrying {
        target: String,
        reason: String,
        delay: Duration,
    },
    /// A connection is authenticated and greeted; `again` after an earlier one was lost.
    Connected {
        direction: Direction,
        again: bool,
        peer: String,
        fingerprint: Fingerprint,
        route: Route,
        /// Asks the link for its round trip, for `/status`.
        probe: Probe,
        tls: TlsSummary,
    },
    /// The path of an iroh connection changed: a direct path found (a hole punched),
    /// or lost for a relay. `after` counts from when the connection was made.
    PathChanged {
        peer: String,
        from: Path,
        to: Path,
        after: Duration,
    },
    /// A chat line from the peer. `from` and `text` are untrusted. The line is
    /// acknowledged to the peer only once the front end reports it written.
    Message {
        from: String,
        text: String,
        shown: Shown,
    },
    /// A line the front end itself wants shown among the others (help, a typing slip).
    Note { text: String },
    /// `/transfers`, for the front end, which lists what it has seen.
    ListTransfers,
    /// `/status`: the front end says what it knows of the connection and transfers.
    StatusRequest,
    /// `/cancel`, for the front end, which knows which transfer is meant and
    /// answers with [`Command::Cancel`].
    CancelRequest {
        transfer: Option<TransferId>,
        keep: bool,
    },
    /// A line typed before the connection was ready; it will be sent once it is.
    Queued { pending: usize },
    /// A connection attempt to our listener failed authentication or the handshake;
    /// `mismatch` when it presented another certificate than the pinned one.
    Rejected {
        addr: SocketAddr,
        reason: String,
        mismatch: Option<PinMismatch>,
    },
    /// A connection made before we listened for real (while at our prompts) was
    /// closed by its sender before its handshake: shown only in verbose mode.
    GaveUpWaiting { addr: SocketAddr },
    /// The peer at `target` presented another certificate than the pinned one,
    /// before we ever reached it; we keep trying, in case the pin is entered again.
    WrongPin {
        target: String,
        mismatch: PinMismatch,
    },
    /// The peer closed its sending direction cleanly.
    PeerFinished { peer: String },
    /// The inbound connection failed; we keep listening for the peer to come back.
    InboundLost { peer: String, reason: String },
    /// The outbound connection failed; unacknowledged lines will be sent again.
    OutboundLost {
        reason: String,
        /// We dial again; otherwise we wait for the peer to.
        we_redial: bool,
    },
    /// Two-connection mode: only one of the two connections came up within `after`.
    /// Behind a NAT or a firewall the other never will.
    OnlyOneWay {
        peer: String,
        /// Ours to the peer is up; the peer's to us is missing (else the reverse).
        we_reached_them: bool,
        target: String,
        after: Duration,
    },
    /// Two-connection mode: from now on one connection carries both directions,
    /// because only one of the two could be made.
    OneConnectionForBoth {
        peer: String,
        /// We asked, on our connection to the peer (else the peer did, on its
        /// connection to us, and we stopped dialing `target`).
        we_asked: bool,
        target: String,
    },
    /// We stopped trying to reach the peer; `--retry-for` ran out.
    GaveUp { target: String, reason: String },
    /// The peer said it leaves (`Leave`; a bare `close_notify` from a version-1 peer).
    PeerLeft,
    /// After the pinned peer had answered before, whoever answers now fails
    /// authentication: a stranger on its port, or a forged refusal. We keep trying.
    Distrusted { reason: String },
    /// A line that cannot be sent because the peer has left.
    NotSent { text: String },
    /// Lines that were never acknowledged when we stopped.
    Undelivered { lines: Vec<String> },
    /// A file is queued to send; hashing starts.
    TransferQueued { id: u64, name: String, size: u64 },
    /// Progress of one phase of a transfer; a folder counts its files too.
    TransferProgress {
        id: u64,
        phase: Phase,
        done: u64,
        total: u64,
        files: Option<FileCount>,
        /// Where this run of the phase began: the bytes before it were moved by an
        /// earlier run that a resume continues, and count for no rate of this one.
        run_start: u64,
    },
    /// The last byte of one file of a folder was sent or received (stored or,
    /// if it failed its check, listed when the folder ends): detail for `--verbose`.
    TransferFileDone {
        id: u64,
        receiving: bool,
        path: String,
        size: u64,
    },
    /// We accepted an offer and are receiving. `name` is the sanitised local name.
    TransferIncoming {
        id: u64,
        name: String,
        size: u64,
        from: String,
        /// The bytes kept from an earlier run, which this one resumes after; 0 for
        /// a fresh start.
        run_start: u64,
    },
    /// A received file was verified and stored.
    TransferSaved {
        id: u64,
        path: PathBuf,
        verified: Verified,
    },
    /// The peer verified and stored a file we sent.
    TransferDelivered { id: u64, name: String, peer: String },
    /// The peer answered our offer with a file it had stored before, with the same
    /// SHA-256: nothing was sent.
    TransferAlreadyThere { id: u64, name: String, peer: String },
    /// An offer was of a file we had stored before, still at `path` with the same
    /// SHA-256: nothing was received, and no copy made. `name` is the offered name.
    TransferAlreadyReceived {
        id: u64,
        name: String,
        path: PathBuf,
        from: String,
    },
    /// A transfer stopped part way and will resume; `receiving` tells which side we are.
    TransferInterrupted {
        id: u64,
        name: String,
        receiving: bool,
        reason: String,
    },
    /// Something worth a line about a transfer in progress, such as where it resumes.
    TransferNote {
        id: u64,
        name: String,
        receiving: bool,
        note: String,
    },
    /// A person stopped a transfer with `/cancel`: the peer, named by `by`, or we
    /// (`None`). `kept` says what an arriving file left for a resume, if anything.
    TransferCancelled {
        id: u64,
        name: String,
        receiving: bool,
        by: Option<String>,
        kept: Option<String>,
    },
    /// A transfer failed or was refused; `receiving` tells which side we are.
    TransferFailed {
        id: u64,
        name: String,
        receiving: bool,
        reason: String,
    },
    /// During the last `window`, `count` more connections were rejected than were
    /// reported one by one with [`Event::Rejected`] (a flood is summarised).
    RejectedMore { count: u64, window: Duration },
    /// Kept parts of unfinished transfers were removed from `folder` for good, so
    /// that those transfers can no longer resume: `old` had not been written or
    /// resumed for `max_age`, `surplus` were the oldest beyond `max_parts`. The names
    /// are the offers' (untrusted).
    KeptPartsRemoved {
        folder: PathBuf,
        old: Vec<String>,
        surplus: Vec<String>,
        max_age: Duration,
        max_parts: usize,
    },
}

impl Event {
    /// A `transfer` that never got as far as an offer.
    pub fn transfer_not_sent(path: &std::path::Path, reason: &str) -> Event {
        Event::TransferFailed {
            id: 0,
            name: path.display().to_string(),
            receiving: false,
            reason: reason.to_owned(),
        }
    }
}

/// How far the peer's lines have been written out: the sender's session and the
/// highest sequence number written. Shared by every connection of a session, so a
/// line written after its connection was lost is acknowledged on the next one.
pub type ShownWatch = Arc<watch::Sender<(u64, u64)>>;

/// The receipt that travels with a peer's line to the screen.
#[derive(Debug, Clone)]
pub struct Shown {
    session: u64,
    seq: u64,
    progress: ShownWatch,
}

impl Shown {
    pub fn new(session: u64, seq: u64, progress: ShownWatch) -> Self {
        Shown {
            session,
            seq,
            progress,
        }
    }

    /// The line is on the screen (or in the pipe): it may be acknowledged.
    pub fn written(&self) {
        self.progress.send_if_modified(|(session, seq)| {
            if *session != self.session || *seq < self.seq {
                (*session, *seq) = (self.session, self.seq);
                true
            } else {
                false
            }
        });
    }
}

impl PartialEq for Shown {
    fn eq(&self, other: &Self) -> bool {
        (self.session, self.seq) == (other.session, other.seq)
    }
}

impl Eq for Shown {}
