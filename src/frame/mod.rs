//! The wire format: the `Frame` enum, its encoding, and a pure, bounds-checked decoder.
//!
//! Every frame is `type: u8 | length: u32 big-endian | payload`. The decoder never
//! allocates before the length has been checked against [`MAX_PAYLOAD_LEN`], and it
//! never trusts a length inside a payload without checking it against the bytes present.
//! `PROTOCOL.md` describes the same format for people writing another peer.

mod decode;
mod encode;
mod limits;

use thiserror::Error;

pub use limits::*;

/// The newest protocol version, negotiated by ALPN and repeated in `Hello`.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest version still spoken, for peers that offer only `chat/1`.
pub const OLDEST_PROTOCOL_VERSION: u16 = 1;
/// The version of single-connection mode: version 2, with both directions on one
/// connection and `Finish`/`FinishAck` to end each of them.
pub const ONE_CONNECTION_VERSION: u16 = 3;
/// Version 2 with folders (`Folder`, `Manifest`), two connections.
pub const FOLDER_VERSION: u16 = 4;
/// Version 3 with folders, one connection.
pub const ONE_CONNECTION_FOLDER_VERSION: u16 = 5;
/// Version 4 with `Credit`: the receiver paces file data, two connections.
pub const CREDIT_VERSION: u16 = 6;
/// Version 5 with `Credit`, one connection.
pub const ONE_CONNECTION_CREDIT_VERSION: u16 = 7;
/// Version 6 with `OfferUnhashed` and `Digest`: a file's bytes go before its
/// SHA-256 is known, two connections.
pub const UNHASHED_OFFER_VERSION: u16 = 8;
/// Version 7 with `OfferUnhashed` and `Digest`, one connection.
pub const ONE_CONNECTION_UNHASHED_OFFER_VERSION: u16 = 9;

/// Whether a connection of protocol `version` carries folders.
pub fn takes_folders(version: u16) -> bool {
    version >= FOLDER_VERSION
}

/// Whether the sender of file data on a connection of protocol `version` waits for
/// the receiver's `Credit`.
pub fn takes_credit(version: u16) -> bool {
    version >= CREDIT_VERSION
}

/// Whether a sender on a connection of protocol `version` may offer a file before
/// hashing it, its SHA-256 following the data.
pub fn takes_unhashed_offers(version: u16) -> bool {
    version >= UNHASHED_OFFER_VERSION
}

const TYPE_HELLO: u8 = 0x01;
const TYPE_MESSAGE: u8 = 0x02;
const TYPE_ACK: u8 = 0x03;
const TYPE_LEAVE: u8 = 0x04;
const TYPE_FINISH: u8 = 0x05;
const TYPE_FINISH_ACK: u8 = 0x06;
const TYPE_CREDIT: u8 = 0x07;
const TYPE_OFFER: u8 = 0x10;
const TYPE_ACCEPT: u8 = 0x11;
const TYPE_CHUNK: u8 = 0x12;
const TYPE_VERDICT: u8 = 0x13;
const TYPE_CANCEL: u8 = 0x14;
const TYPE_FOLDER: u8 = 0x15;
const TYPE_MANIFEST: u8 = 0x16;
const TYPE_OFFER_UNHASHED: u8 = 0x17;
const TYPE_DIGEST: u8 = 0x18;

/// One unit of the protocol, as seen after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame in each direction of every connection.
    Hello {
        version: u16,
        /// Random per process run; lets the receiver recognise resent messages after a reconnect.
        session_id: u64,
        name: String,
    },
    /// A chat line. `seq` counts from 1 within the sender's session.
    Message { seq: u64, text: String },
    /// Every `Message` with a sequence number up to and including `seq` has been shown.
    Ack { seq: u64 },
    /// The sender quit: it will show no more lines and take no more files (version 2).
    /// Only this frame, never a bare close, makes a peer report lines as undelivered.
    Leave,
    /// Version 3: the sender has sent its last line and file on this connection; what
    /// `close_notify` says for a direction that has a connection of its own.
    Finish,
    /// Version 3: the answer to `Finish`, after the last `Ack` and `Verdict` for it.
    FinishAck,
    /// Version 6: the receiver lets the sender have sent up to `limit` bytes of
    /// `Chunk` data on this connection in all (beyond [`CREDIT_WINDOW`] at first).
    Credit { limit: u64 },
    /// The sender proposes a file. `name` is untrusted; `size` and `sha256` are binding.
    Offer {
        id: u64,
        size: u64,
        sha256: [u8; 32],
        name: String,
    },
    /// Version 8: an `Offer` whose SHA-256 follows its data, in `Digest`.
    OfferUnhashed { id: u64, size: u64, name: String },
    /// Version 8: the SHA-256 of the whole file of an `OfferUnhashed`, after its
    /// last `Chunk`.
    Digest { id: u64, sha256: [u8; 32] },
    /// The receiver takes the offer; data starts at byte `offset` (0 in this version).
    Accept { id: u64, offset: u64 },
    /// The next bytes of an accepted file (1 to [`MAX_CHUNK_LEN`] bytes).
    Chunk { id: u64, data: Vec<u8> },
    /// The receiver's final word on an offer.
    Verdict {
        id: u64,
        status: VerdictStatus,
        detail: String,
    },
    /// The sender abandons an offer; the receiver discards what it has.
    Cancel { id: u64, reason: String },
    /// Version 4: the sender proposes a folder of `entries` entries whose files hold
    /// `size` bytes together; its manifest follows in `Manifest` frames.
    Folder {
        id: u64,
        entries: u32,
        manifest_len: u32,
        size: u64,
        name: String,
    },
    /// Version 4: the next bytes of a folder's manifest (1 to [`MAX_CHUNK_LEN`]).
    Manifest { id: u64, data: Vec<u8> },
}

/// The outcome a `Verdict` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VerdictStatus {
    /// Size and SHA-256 matched; the file is stored under its final name.
    Verified = 0,
    /// Refused before any data: bad name, too large, no room, or a local error.
    Rejected = 1,
    /// All bytes arrived but their SHA-256 differs from the offer; nothing was kept.
    Corrupt = 2,
    /// Receiving failed part way (for example, the disk filled up); nothing was kept.
    Failed = 3,
}

/// Why a byte sequence is not a valid frame. Each variant closes the connection.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The type byte names no frame this version knows.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The length prefix exceeds [`MAX_PAYLOAD_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_PAYLOAD_LEN}")]
    TooLarge { len: u64 },
    /// The payload's size does not fit the frame type.
    #[error("{frame} frame has a payload of {len} bytes, expected {expected}")]
    BadLength {
        frame: &'static str,
        len: usize,
        expected: &'static str,
    },
    /// A text field is not UTF-8.
    #[error("{frame} frame carries invalid UTF-8")]
    InvalidUtf8 { frame: &'static str },
    /// A `Verdict` status byte this version does not define.
    #[error("unknown verdict status {0}")]
    UnknownStatus(u8),
    /// A text field is longer than its limit.
    #[error("{frame} frame text of {len} bytes exceeds the limit of {max}")]
    TextTooLong {
        frame: &'static str,
        len: usize,
        max: usize,
    },
}

impl Frame {
    /// A short name for messages and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Message { .. } => "Message",
            Frame::Ack { .. } => "Ack",
            Frame::Leave => "Leave",
            Frame::Folder { .. } => "Folder",
            Frame::Manifest { .. } => "Manifest",
            Frame::Finish => "Finish",
            Frame::FinishAck => "FinishAck",
            Frame::Credit { .. } => "Credit",
            Frame::Offer { .. } => "Offer",
            Frame::OfferUnhashed { .. } => "OfferUnhashed",
            Frame::Digest { .. } => "Digest",
            Frame::Accept { .. } => "Accept",
            Frame::Chunk { .. } => "Chunk",
            Frame::Verdict { .. } => "Verdict",
            Frame::Cancel { .. } => "Cancel",
        }
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
