//! The wire format: the `Frame` enum, its encoding, and a pure, bounds-checked decoder.
//!
//! Every frame is `type: u8 | length: u32 big-endian | payload`. The decoder never
//! allocates before the length has been checked against [`MAX_PAYLOAD_LEN`], and it
//! never trusts a length inside a payload without checking it against the bytes present.
//! `PROTOCOL.md` describes the same format for people writing another peer.

use thiserror::Error;

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

/// The `Chunk` data a sender may have sent on a connection of a version with
/// `Credit` before the receiver's first one, and what each `Credit` adds beyond
/// what the receiver has taken in: the file data in flight or waiting for its disk.
pub const CREDIT_WINDOW: u64 = 8 << 20;

/// Whether a connection of protocol `version` carries folders.
pub fn takes_folders(version: u16) -> bool {
    version >= FOLDER_VERSION
}

/// Whether the sender of file data on a connection of protocol `version` waits for
/// the receiver's `Credit`.
pub fn takes_credit(version: u16) -> bool {
    version >= CREDIT_VERSION
}
/// Bytes before the payload: one type byte and a four-byte length.
pub const HEADER_LEN: usize = 5;
/// The largest payload any frame may declare. Larger lengths are rejected unread.
pub const MAX_PAYLOAD_LEN: usize = 128 * 1024;
/// The longest chat line, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// The longest peer name announced in `Hello`, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// The most file data one `Chunk` carries. Small enough that a chat line never waits long.
pub const MAX_CHUNK_LEN: usize = 64 * 1024;
/// The longest file name in an `Offer`, in bytes of UTF-8 (the usual file-system limit).
pub const MAX_FILE_NAME_LEN: usize = 255;
/// The longest explanation in a `Verdict` or `Cancel`, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;

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
            Frame::Accept { .. } => "Accept",
            Frame::Chunk { .. } => "Chunk",
            Frame::Verdict { .. } => "Verdict",
            Frame::Cancel { .. } => "Cancel",
        }
    }

    /// Appends the encoded frame to `out`.
    ///
    /// Panics if a text field exceeds its limit: callers check user input first,
    /// so an oversized field here is a bug, not a runtime condition.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.type_byte());
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Hello {
                version,
                session_id,
                name,
            } => {
                assert!(name.len() <= MAX_NAME_LEN, "Hello name over limit");
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            Frame::Message { seq, text } => {
                assert!(text.len() <= MAX_TEXT_LEN, "Message text over limit");
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Frame::Ack { seq } => out.extend_from_slice(&seq.to_be_bytes()),
            Frame::Credit { limit } => out.extend_from_slice(&limit.to_be_bytes()),
            Frame::Leave | Frame::Finish | Frame::FinishAck => {}
            Frame::Offer {
                id,
                size,
                sha256,
                name,
            } => {
                assert!(name.len() <= MAX_FILE_NAME_LEN, "Offer name over limit");
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(sha256);
                out.extend_from_slice(name.as_bytes());
            }
            Frame::Accept { id, offset } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
            }
            Frame::Chunk { id, data } => {
                assert!(
                    (1..=MAX_CHUNK_LEN).contains(&data.len()),
                    "Chunk size out of range"
                );
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::Verdict { id, status, detail } => {
                assert!(detail.len() <= MAX_REASON_LEN, "Verdict detail over limit");
                out.extend_from_slice(&id.to_be_bytes());
                out.push(*status as u8);
                out.extend_from_slice(detail.as_bytes());
            }
            Frame::Cancel { id, reason } => {
                assert!(reason.len() <= MAX_REASON_LEN, "Cancel reason over limit");
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Frame::Folder {
                id,
                entries,
                manifest_len,
                size,
                name,
            } => {
                assert!(name.len() <= MAX_FILE_NAME_LEN, "Folder name over limit");
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&entries.to_be_bytes());
                out.extend_from_slice(&manifest_len.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            Frame::Manifest { id, data } => {
                assert!(
                    (1..=MAX_CHUNK_LEN).contains(&data.len()),
                    "Manifest part size out of range"
                );
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(data);
            }
        }
        let payload_len = out.len() - start - HEADER_LEN;
        debug_assert!(payload_len <= MAX_PAYLOAD_LEN);
        let len = u32::try_from(payload_len).expect("payload bounded by MAX_PAYLOAD_LEN");
        out[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }

    fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello { .. } => TYPE_HELLO,
            Frame::Message { .. } => TYPE_MESSAGE,
            Frame::Ack { .. } => TYPE_ACK,
            Frame::Leave => TYPE_LEAVE,
            Frame::Finish => TYPE_FINISH,
            Frame::FinishAck => TYPE_FINISH_ACK,
            Frame::Credit { .. } => TYPE_CREDIT,
            Frame::Offer { .. } => TYPE_OFFER,
            Frame::Accept { .. } => TYPE_ACCEPT,
            Frame::Chunk { .. } => TYPE_CHUNK,
            Frame::Verdict { .. } => TYPE_VERDICT,
            Frame::Cancel { .. } => TYPE_CANCEL,
            Frame::Folder { .. } => TYPE_FOLDER,
            Frame::Manifest { .. } => TYPE_MANIFEST,
        }
    }

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call
    /// again), or the frame and the number of bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            if let Some(&kind) = buf.first() {
                check_type(kind)?;
            }
            return Ok(None);
        };
        let kind = header[0];
        check_type(kind)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len as usize > MAX_PAYLOAD_LEN {
            return Err(FrameError::TooLarge { len: len.into() });
        }
        let total = HEADER_LEN + len as usize;
        let Some(payload) = buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let frame = match kind {
            TYPE_HELLO => decode_hello(payload)?,
            TYPE_MESSAGE => {
                let (seq, text) = split_u64(payload, "Message", "at least 8")?;
                Frame::Message {
                    seq,
                    text: decode_text(text, "Message", MAX_TEXT_LEN)?,
                }
            }
            TYPE_ACK => {
                let (seq, rest) = split_u64(payload, "Ack", "exactly 8")?;
                if !rest.is_empty() {
                    return Err(bad_length("Ack", payload, "exactly 8"));
                }
                Frame::Ack { seq }
            }
            TYPE_LEAVE if payload.is_empty() => Frame::Leave,
            TYPE_LEAVE => return Err(bad_length("Leave", payload, "exactly 0")),
            TYPE_FINISH if payload.is_empty() => Frame::Finish,
            TYPE_FINISH => return Err(bad_length("Finish", payload, "exactly 0")),
            TYPE_FINISH_ACK if payload.is_empty() => Frame::FinishAck,
            TYPE_FINISH_ACK => return Err(bad_length("FinishAck", payload, "exactly 0")),
            TYPE_CREDIT => {
                let (limit, rest) = split_u64(payload, "Credit", "exactly 8")?;
                if !rest.is_empty() {
                    return Err(bad_length("Credit", payload, "exactly 8"));
                }
                Frame::Credit { limit }
            }
            TYPE_OFFER => decode_offer(payload)?,
            TYPE_ACCEPT => {
                let (id, rest) = split_u64(payload, "Accept", "exactly 16")?;
                let (offset, rest) = split_u64(rest, "Accept", "exactly 16")
                    .map_err(|_| bad_length("Accept", payload, "exactly 16"))?;
                if !rest.is_empty() {
                    return Err(bad_length("Accept", payload, "exactly 16"));
                }
                Frame::Accept { id, offset }
            }
            TYPE_CHUNK => {
                let (id, data) = split_u64(payload, "Chunk", "9 to 65544")?;
                if data.is_empty() || data.len() > MAX_CHUNK_LEN {
                    return Err(bad_length("Chunk", payload, "9 to 65544"));
                }
                Frame::Chunk {
                    id,
                    data: data.to_vec(),
                }
            }
            TYPE_VERDICT => {
                let (id, rest) = split_u64(payload, "Verdict", "at least 9")?;
                let Some((&status, detail)) = rest.split_first() else {
                    return Err(bad_length("Verdict", payload, "at least 9"));
                };
                Frame::Verdict {
                    id,
                    status: VerdictStatus::from_byte(status)?,
                    detail: decode_text(detail, "Verdict", MAX_REASON_LEN)?,
                }
            }
            TYPE_CANCEL => {
                let (id, reason) = split_u64(payload, "Cancel", "at least 8")?;
                Frame::Cancel {
                    id,
                    reason: decode_text(reason, "Cancel", MAX_REASON_LEN)?,
                }
            }
            TYPE_FOLDER => decode_folder(payload)?,
            TYPE_MANIFEST => {
                let (id, data) = split_u64(payload, "Manifest", "9 to 65544")?;
                if data.is_empty() || data.len() > MAX_CHUNK_LEN {
                    return Err(bad_length("Manifest", payload, "9 to 65544"));
                }
                Frame::Manifest {
                    id,
                    data: data.to_vec(),
                }
            }
            _ => unreachable!("type checked above"),
        };
        Ok(Some((frame, total)))
    }
}

fn check_type(kind: u8) -> Result<(), FrameError> {
    match kind {
        TYPE_HELLO | TYPE_MESSAGE | TYPE_ACK | TYPE_LEAVE | TYPE_FINISH | TYPE_FINISH_ACK
        | TYPE_CREDIT | TYPE_OFFER | TYPE_ACCEPT | TYPE_CHUNK | TYPE_VERDICT | TYPE_CANCEL
        | TYPE_FOLDER | TYPE_MANIFEST => Ok(()),
        other => Err(FrameError::UnknownType(other)),
    }
}

impl VerdictStatus {
    fn from_byte(byte: u8) -> Result<Self, FrameError> {
        match byte {
            0 => Ok(VerdictStatus::Verified),
            1 => Ok(VerdictStatus::Rejected),
            2 => Ok(VerdictStatus::Corrupt),
            3 => Ok(VerdictStatus::Failed),
            other => Err(FrameError::UnknownStatus(other)),
        }
    }
}

fn decode_offer(payload: &[u8]) -> Result<Frame, FrameError> {
    const EXPECTED: &str = "at least 48";
    let short = || bad_length("Offer", payload, EXPECTED);
    let (id, rest) = payload.split_first_chunk::<8>().ok_or_else(short)?;
    let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    let (sha256, name) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    Ok(Frame::Offer {
        id: u64::from_be_bytes(*id),
        size: u64::from_be_bytes(*size),
        sha256: *sha256,
        name: decode_text(name, "Offer", MAX_FILE_NAME_LEN)?,
    })
}

fn decode_folder(payload: &[u8]) -> Result<Frame, FrameError> {
    const EXPECTED: &str = "at least 24";
    let short = || bad_length("Folder", payload, EXPECTED);
    let (id, rest) = payload.split_first_chunk::<8>().ok_or_else(short)?;
    let (entries, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    let (manifest_len, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    let (size, name) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    Ok(Frame::Folder {
        id: u64::from_be_bytes(*id),
        entries: u32::from_be_bytes(*entries),
        manifest_len: u32::from_be_bytes(*manifest_len),
        size: u64::from_be_bytes(*size),
        name: decode_text(name, "Folder", MAX_FILE_NAME_LEN)?,
    })
}

fn decode_hello(payload: &[u8]) -> Result<Frame, FrameError> {
    const EXPECTED: &str = "at least 10";
    let Some((version, rest)) = payload.split_first_chunk::<2>() else {
        return Err(bad_length("Hello", payload, EXPECTED));
    };
    let Some((session_id, name)) = rest.split_first_chunk::<8>() else {
        return Err(bad_length("Hello", payload, EXPECTED));
    };
    Ok(Frame::Hello {
        version: u16::from_be_bytes(*version),
        session_id: u64::from_be_bytes(*session_id),
        name: decode_text(name, "Hello", MAX_NAME_LEN)?,
    })
}

fn split_u64<'a>(
    payload: &'a [u8],
    frame: &'static str,
    expected: &'static str,
) -> Result<(u64, &'a [u8]), FrameError> {
    match payload.split_first_chunk::<8>() {
        Some((value, rest)) => Ok((u64::from_be_bytes(*value), rest)),
        None => Err(bad_length(frame, payload, expected)),
    }
}

fn decode_text(bytes: &[u8], frame: &'static str, max: usize) -> Result<String, FrameError> {
    if bytes.len() > max {
        return Err(FrameError::TextTooLong {
            frame,
            len: bytes.len(),
            max,
        });
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| FrameError::InvalidUtf8 { frame })
}

fn bad_length(frame: &'static str, payload: &[u8], expected: &'static str) -> FrameError {
    FrameError::BadLength {
        frame,
        len: payload.len(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_a_limit_of_eight_bytes_and_nothing_else() {
        let mut out = Vec::new();
        Frame::Credit { limit: 0x0102 }.encode(&mut out);
        assert_eq!(out, [0x07, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            Frame::decode(&out),
            Ok(Some((Frame::Credit { limit: 0x0102 }, 13)))
        );
        for bad in [
            &[0x07, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1][..],
            &[0x07, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3],
        ] {
            assert!(
                matches!(
                    Frame::decode(bad),
                    Err(FrameError::BadLength {
                        frame: "Credit",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn leave_is_a_bare_header_and_refuses_a_payload() {
        let mut out = Vec::new();
        Frame::Leave.encode(&mut out);
        assert_eq!(out, [0x04, 0, 0, 0, 0]);
        assert_eq!(Frame::decode(&out), Ok(Some((Frame::Leave, 5))));
        assert!(matches!(
            Frame::decode(&[0x04, 0, 0, 0, 1, 0]),
            Err(FrameError::BadLength { frame: "Leave", .. })
        ));
    }

    #[test]
    fn finish_and_its_answer_are_bare_headers() {
        for (frame, kind) in [(Frame::Finish, 0x05), (Frame::FinishAck, 0x06)] {
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(out, [kind, 0, 0, 0, 0]);
            assert_eq!(Frame::decode(&out), Ok(Some((frame, 5))));
            assert!(matches!(
                Frame::decode(&[kind, 0, 0, 0, 1, 0]),
                Err(FrameError::BadLength { .. })
            ));
        }
    }

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: PROTOCOL_VERSION,
                session_id: 0x0102_0304_0506_0708,
                name: "alice".into(),
            },
            Frame::Message {
                seq: 1,
                text: "héllo wörld".into(),
            },
            Frame::Message {
                seq: u64::MAX,
                text: String::new(),
            },
            Frame::Ack { seq: 42 },
            Frame::Leave,
            Frame::Finish,
            Frame::FinishAck,
            Frame::Credit { limit: 8 << 20 },
            Frame::Offer {
                id: 3,
                size: 5 << 32,
                sha256: [0xab; 32],
                name: "film (1).mkv".into(),
            },
            Frame::Accept { id: 3, offset: 0 },
            Frame::Chunk {
                id: 3,
                data: vec![7; MAX_CHUNK_LEN],
            },
            Frame::Chunk {
                id: u64::MAX,
                data: vec![0],
            },
            Frame::Verdict {
                id: 3,
                status: VerdictStatus::Corrupt,
                detail: "expected ab…, got cd…".into(),
            },
            Frame::Cancel {
                id: 3,
                reason: String::new(),
            },
            Frame::Folder {
                id: 4,
                entries: 10_000,
                manifest_len: 600_000,
                size: 200 << 20,
                name: "src".into(),
            },
            Frame::Manifest {
                id: 4,
                data: vec![1; MAX_CHUNK_LEN],
            },
        ]
    }

    #[test]
    fn folder_has_documented_layout() {
        let bytes = encoded(&Frame::Folder {
            id: 1,
            entries: 2,
            manifest_len: 3,
            size: 4,
            name: "d".into(),
        });
        assert_eq!(
            bytes,
            [
                0x15, 0, 0, 0, 25, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0,
                0, 0, 4, b'd'
            ]
        );
        assert!(matches!(
            Frame::decode(&[
                0x15, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0
            ]),
            Err(FrameError::BadLength {
                frame: "Folder",
                ..
            })
        ));
        assert!(matches!(
            Frame::decode(&[0x16, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(FrameError::BadLength {
                frame: "Manifest",
                ..
            })
        ));
    }

    #[test]
    fn round_trips_every_frame() {
        for frame in samples() {
            let bytes = encoded(&frame);
            assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
        }
    }

    #[test]
    fn message_has_documented_layout() {
        let bytes = encoded(&Frame::Message {
            seq: 7,
            text: "hi".into(),
        });
        assert_eq!(bytes, b"\x02\x00\x00\x00\x0a\0\0\0\0\0\0\0\x07hi");
    }

    #[test]
    fn hello_has_documented_layout() {
        let bytes = encoded(&Frame::Hello {
            version: 1,
            session_id: 9,
            name: "bob".into(),
        });
        assert_eq!(bytes, b"\x01\x00\x00\x00\x0d\x00\x01\0\0\0\0\0\0\0\x09bob");
    }

    #[test]
    fn every_truncation_asks_for_more() {
        for frame in samples() {
            let bytes = encoded(&frame);
            for cut in 0..bytes.len() {
                assert_eq!(
                    Frame::decode(&bytes[..cut]),
                    Ok(None),
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn decodes_first_of_two_frames() {
        let mut bytes = encoded(&Frame::Ack { seq: 1 });
        let first_len = bytes.len();
        bytes.extend(encoded(&Frame::Ack { seq: 2 }));
        assert_eq!(
            Frame::decode(&bytes),
            Ok(Some((Frame::Ack { seq: 1 }, first_len)))
        );
    }

    #[test]
    fn rejects_oversized_length_before_payload_arrives() {
        let header = [TYPE_MESSAGE, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Frame::decode(&header),
            Err(FrameError::TooLarge { len: 0xffff_ffff })
        );
        let just_over = (MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes();
        let header = [
            TYPE_ACK,
            just_over[0],
            just_over[1],
            just_over[2],
            just_over[3],
        ];
        assert!(matches!(
            Frame::decode(&header),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_unknown_type_from_first_byte() {
        assert_eq!(Frame::decode(&[0x7f]), Err(FrameError::UnknownType(0x7f)));
        assert_eq!(
            Frame::decode(&[0x00, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(0))
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let bytes = b"\x02\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01\xff\xfe";
        assert_eq!(
            Frame::decode(bytes),
            Err(FrameError::InvalidUtf8 { frame: "Message" })
        );
    }

    #[test]
    fn rejects_short_and_long_fixed_payloads() {
        let short_ack = b"\x03\x00\x00\x00\x04\0\0\0\x01";
        assert!(matches!(
            Frame::decode(short_ack),
            Err(FrameError::BadLength { frame: "Ack", .. })
        ));
        let long_ack = b"\x03\x00\x00\x00\x09\0\0\0\0\0\0\0\x01\x00";
        assert!(matches!(
            Frame::decode(long_ack),
            Err(FrameError::BadLength { frame: "Ack", .. })
        ));
        let short_message = b"\x02\x00\x00\x00\x03abc";
        assert!(matches!(
            Frame::decode(short_message),
            Err(FrameError::BadLength {
                frame: "Message",
                ..
            })
        ));
        let short_hello = b"\x01\x00\x00\x00\x02\x00\x01";
        assert!(matches!(
            Frame::decode(short_hello),
            Err(FrameError::BadLength { frame: "Hello", .. })
        ));
    }

    #[test]
    fn transfer_frames_have_documented_layout() {
        let offer = encoded(&Frame::Offer {
            id: 1,
            size: 2,
            sha256: [0x11; 32],
            name: "a".into(),
        });
        let mut expected = b"\x10\x00\x00\x00\x31\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02".to_vec();
        expected.extend([0x11; 32]);
        expected.push(b'a');
        assert_eq!(offer, expected);
        assert_eq!(
            encoded(&Frame::Accept { id: 1, offset: 0 }),
            b"\x11\x00\x00\x00\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0"
        );
        assert_eq!(
            encoded(&Frame::Chunk {
                id: 1,
                data: b"xy".to_vec()
            }),
            b"\x12\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01xy"
        );
        assert_eq!(
            encoded(&Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                detail: "ok".into()
            }),
            b"\x13\x00\x00\x00\x0b\0\0\0\0\0\0\0\x01\x00ok"
        );
        assert_eq!(
            encoded(&Frame::Cancel {
                id: 1,
                reason: "no".into()
            }),
            b"\x14\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01no"
        );
    }

    #[test]
    fn rejects_malformed_transfer_frames() {
        let empty_chunk = b"\x12\x00\x00\x00\x08\0\0\0\0\0\0\0\x01";
        assert!(matches!(
            Frame::decode(empty_chunk),
            Err(FrameError::BadLength { frame: "Chunk", .. })
        ));
        let mut big_chunk = vec![TYPE_CHUNK];
        big_chunk.extend_from_slice(&((8 + MAX_CHUNK_LEN + 1) as u32).to_be_bytes());
        big_chunk.extend(vec![0; 8 + MAX_CHUNK_LEN + 1]);
        assert!(matches!(
            Frame::decode(&big_chunk),
            Err(FrameError::BadLength { frame: "Chunk", .. })
        ));
        let short_offer = b"\x10\x00\x00\x00\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02";
        assert!(matches!(
            Frame::decode(short_offer),
            Err(FrameError::BadLength { frame: "Offer", .. })
        ));
        let long_accept = b"\x11\x00\x00\x00\x11\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0";
        assert!(matches!(
            Frame::decode(long_accept),
            Err(FrameError::BadLength {
                frame: "Accept",
                ..
            })
        ));
        let bad_status = b"\x13\x00\x00\x00\x09\0\0\0\0\0\0\0\x01\x09";
        assert_eq!(Frame::decode(bad_status), Err(FrameError::UnknownStatus(9)));
        let mut long_name = vec![TYPE_OFFER];
        long_name.extend_from_slice(&((48 + MAX_FILE_NAME_LEN + 1) as u32).to_be_bytes());
        long_name.extend(vec![b'a'; 48 + MAX_FILE_NAME_LEN + 1]);
        assert!(matches!(
            Frame::decode(&long_name),
            Err(FrameError::TextTooLong { frame: "Offer", .. })
        ));
    }

    #[test]
    fn rejects_overlong_text_fields() {
        let mut bytes = vec![TYPE_HELLO];
        let name = vec![b'a'; MAX_NAME_LEN + 1];
        bytes.extend_from_slice(&((10 + name.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&name);
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::TextTooLong { frame: "Hello", .. })
        ));

        let mut bytes = vec![TYPE_MESSAGE];
        let text = vec![b'a'; MAX_TEXT_LEN + 1];
        bytes.extend_from_slice(&((8 + text.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&text);
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::TextTooLong {
                frame: "Message",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn text(max_chars: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("\\PC{{0,{max_chars}}}")).expect("valid regex")
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u16>(), any::<u64>(), text(16)).prop_map(|(version, session_id, name)| {
                Frame::Hello {
                    version,
                    session_id,
                    name,
                }
            }),
            (any::<u64>(), text(200)).prop_map(|(seq, text)| Frame::Message { seq, text }),
            any::<u64>().prop_map(|seq| Frame::Ack { seq }),
            Just(Frame::Leave),
            Just(Frame::Finish),
            Just(Frame::FinishAck),
            any::<u64>().prop_map(|limit| Frame::Credit { limit }),
            (any::<u64>(), any::<u64>(), any::<[u8; 32]>(), text(60)).prop_map(
                |(id, size, sha256, name)| {
                    Frame::Offer {
                        id,
                        size,
                        sha256,
                        name,
                    }
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(id, offset)| Frame::Accept { id, offset }),
            (any::<u64>(), vec(any::<u8>(), 1..2000))
                .prop_map(|(id, data)| Frame::Chunk { id, data }),
            (any::<u64>(), 0u8..4, text(100)).prop_map(|(id, status, detail)| Frame::Verdict {
                id,
                status: VerdictStatus::from_byte(status).unwrap(),
                detail
            }),
            (any::<u64>(), text(100)).prop_map(|(id, reason)| Frame::Cancel { id, reason }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                text(60)
            )
                .prop_map(|(id, entries, manifest_len, size, name)| Frame::Folder {
                    id,
                    entries,
                    manifest_len,
                    size,
                    name,
                }),
            (any::<u64>(), vec(any::<u8>(), 1..2000))
                .prop_map(|(id, data)| Frame::Manifest { id, data }),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_round_trips(frame in any_frame()) {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            prop_assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
        }

        #[test]
        fn a_stream_of_frames_decodes_in_order_from_any_prefix(frames in vec(any_frame(), 1..6), cut in any::<proptest::sample::Index>()) {
            let mut bytes = Vec::new();
            for frame in &frames {
                frame.encode(&mut bytes);
            }
            let cut = cut.index(bytes.len() + 1);
            let mut decoded = Vec::new();
            let mut offset = 0;
            while let Some((frame, used)) = Frame::decode(&bytes[offset..cut]).unwrap() {
                decoded.push(frame);
                offset += used;
            }
            prop_assert!(decoded.len() <= frames.len());
            prop_assert_eq!(&decoded[..], &frames[..decoded.len()]);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overrun(bytes in vec(any::<u8>(), 0..512)) {
            if let Ok(Some((_, used))) = Frame::decode(&bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert!(used >= HEADER_LEN);
            }
        }
    }
}
