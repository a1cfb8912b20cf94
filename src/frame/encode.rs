//! Encoding: a `Frame` as the bytes PROTOCOL.md §3 gives for it.

use super::*;

impl Frame {
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
            Frame::OfferUnhashed { id, size, name } => {
                assert!(name.len() <= MAX_FILE_NAME_LEN, "Offer name over limit");
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            Frame::Digest { id, sha256 } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(sha256);
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
            Frame::OfferUnhashed { .. } => TYPE_OFFER_UNHASHED,
            Frame::Digest { .. } => TYPE_DIGEST,
            Frame::Accept { .. } => TYPE_ACCEPT,
            Frame::Chunk { .. } => TYPE_CHUNK,
            Frame::Verdict { .. } => TYPE_VERDICT,
            Frame::Cancel { .. } => TYPE_CANCEL,
            Frame::Folder { .. } => TYPE_FOLDER,
            Frame::Manifest { .. } => TYPE_MANIFEST,
        }
    }
}
