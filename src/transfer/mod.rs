//! File transfer: the sending and receiving state machines, the files they read and
//! write, and progress reports. Nothing here draws; progress leaves as events.

pub mod hash_cache;
pub mod in_progress;
pub mod incoming;
pub mod incoming_folder;
pub mod manifest;
pub mod name;
pub mod outgoing;
pub mod outgoing_folder;
pub mod parts;
pub mod progress;
pub mod receiving;
pub mod sending;
pub mod stored;

use std::cell::RefCell;
use std::io::{self, Read};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::frame::MAX_REASON_LEN;

/// Read size while hashing; large reads keep system-call overhead negligible.
const HASH_READ_LEN: usize = 1 << 20;

/// A transfer frame that contradicts the protocol state; the connection is closed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransferViolation {
    #[error("an Offer reuses transfer id {0}")]
    ReusedId(u64),
    #[error("a {frame} frame names transfer id {id}, which is not active")]
    UnknownId { frame: &'static str, id: u64 },
    #[error("transfer {id}: {detail}")]
    Overflow { id: u64, detail: String },
    #[error("transfer {id}: Accept with offset {offset} for a file of {size} bytes")]
    BadOffset { id: u64, offset: u64, size: u64 },
    #[error("transfer {0}: verified before all data was sent")]
    EarlyVerdict(u64),
    #[error("a {0} frame on a connection whose protocol version has none")]
    NotInVersion(&'static str),
}

/// Feeds everything `reader` yields to `hasher`, calling `progress` with the bytes
/// hashed so far; returns their count.
fn hash_into(
    hasher: &mut Sha256,
    mut reader: impl Read,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    thread_local! {
        // Zeroed once per thread, not once per file: a folder may hash thousands.
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; HASH_READ_LEN]);
    }
    BUFFER.with_borrow_mut(|buffer| {
        let mut hashed = 0u64;
        loop {
            let read = match reader.read(buffer) {
                Ok(0) => return Ok(hashed),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..read]);
            hashed += read as u64;
            progress(hashed);
        }
    })
}

/// Shortens an explanation to what a `Verdict` or `Cancel` frame may carry.
fn truncate(mut text: String) -> String {
    if text.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A byte count for people: `212.0 MiB`, `3 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The names in a folder, sorted: what a test expects to find there.
#[cfg(test)]
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_byte_counts() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(212 << 20), "212.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn hashing_in_large_reads_gives_the_plain_digest() {
        let data = vec![0x5a; HASH_READ_LEN * 2 + 7];
        let mut hasher = Sha256::new();
        let mut reports = Vec::new();
        let hashed = hash_into(&mut hasher, &data[..], |done| reports.push(done)).unwrap();
        assert_eq!(hashed, data.len() as u64);
        assert_eq!(hasher.finalize(), Sha256::digest(&data));
        assert_eq!(reports.last(), Some(&(data.len() as u64)));
    }
}
