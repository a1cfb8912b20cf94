//! Decoding, pure and bounds-checked: no length from the peer is trusted, and
//! nothing is allocated, before it has been checked.

use super::*;

impl Frame {
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
            TYPE_OFFER => decode_offer(payload, true)?,
            TYPE_OFFER_UNHASHED => decode_offer(payload, false)?,
            TYPE_DIGEST => {
                let (id, rest) = split_u64(payload, "Digest", "exactly 40")?;
                let sha256 = <[u8; 32]>::try_from(rest)
                    .map_err(|_| bad_length("Digest", payload, "exactly 40"))?;
                Frame::Digest { id, sha256 }
            }
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
        | TYPE_FOLDER | TYPE_MANIFEST | TYPE_OFFER_UNHASHED | TYPE_DIGEST => Ok(()),
        other => Err(FrameError::UnknownType(other)),
    }
}

impl VerdictStatus {
    pub(super) fn from_byte(byte: u8) -> Result<Self, FrameError> {
        match byte {
            0 => Ok(VerdictStatus::Verified),
            1 => Ok(VerdictStatus::Rejected),
            2 => Ok(VerdictStatus::Corrupt),
            3 => Ok(VerdictStatus::Failed),
            other => Err(FrameError::UnknownStatus(other)),
        }
    }
}

/// An `Offer`, or unless `hashed` an `OfferUnhashed`: the same fields but its SHA-256.
fn decode_offer(payload: &[u8], hashed: bool) -> Result<Frame, FrameError> {
    let (frame, expected) = match hashed {
        true => ("Offer", "at least 48"),
        false => ("OfferUnhashed", "at least 16"),
    };
    let short = || bad_length(frame, payload, expected);
    let (id, rest) = payload.split_first_chunk::<8>().ok_or_else(short)?;
    let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    let (id, size) = (u64::from_be_bytes(*id), u64::from_be_bytes(*size));
    if !hashed {
        let name = decode_text(rest, frame, MAX_FILE_NAME_LEN)?;
        return Ok(Frame::OfferUnhashed { id, size, name });
    }
    let (sha256, name) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    Ok(Frame::Offer {
        id,
        size,
        sha256: *sha256,
        name: decode_text(name, frame, MAX_FILE_NAME_LEN)?,
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
