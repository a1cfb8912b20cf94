//! File transfer: the sending and receiving state machines, the files they read and
//! write, and progress reports. Nothing here draws; progress leaves as events.

pub mod backlog;
pub mod chunk_queue;
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
mod source_tree;
mod staging;
pub mod stored;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::frame::MAX_REASON_LEN;
use crate::platform;
use hash_cache::SharedHashCache;

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
    #[error("a Folder frame (transfer {id}) before the manifest of transfer {earlier} is complete")]
    FolderDuringManifest { id: u64, earlier: u64 },
    #[error("transfer {id}: Accept with offset {offset} for a file of {size} bytes")]
    BadOffset { id: u64, offset: u64, size: u64 },
    #[error("transfer {0}: verified before all data was sent")]
    EarlyVerdict(u64),
    #[error("a {0} frame on a connection whose protocol version has none")]
    NotInVersion(&'static str),
    #[error("a Credit of {limit} bytes after one of {before}: credit never shrinks")]
    CreditShrank { limit: u64, before: u64 },
    #[error("transfer {id}: {misplaced}")]
    MisplacedDigest {
        id: u64,
        misplaced: incoming::DigestOutOfPlace,
    },
}

/// Files at least this big are read on a thread of their own while hashed.
const OVERLAP_FROM: u64 = 16 << 20;

/// A file's SHA-256, and whether the hash cache knew it.
struct FileHash {
    sha256: [u8; 32],
    cached: bool,
}

/// How a hash cache is used while hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheUse {
    /// Taken from the cache if it knows the file as it is; remembered otherwise.
    LookUp,
    /// Always read and hashed, then remembered in place of what the cache held.
    Refresh,
}

/// The SHA-256 of the open `file`, which should hold `size` bytes: from `cache` if it
/// knows the file as it is (and `using` allows), else read and hashed (and then
/// remembered), calling `progress` with the bytes hashed so far. `None` if the file
/// changed meanwhile.
fn sha256_of(
    file: &File,
    size: u64,
    cache: Option<&SharedHashCache>,
    using: CacheUse,
    progress: impl FnMut(u64),
) -> io::Result<Option<FileHash>> {
    let stamp = platform::file_stamp(file)?;
    let known = cache
        .filter(|_| using == CacheUse::LookUp)
        .and_then(|cache| cache.lock().ok()?.get(&stamp));
    if let Some(sha256) = known {
        return Ok(Some(FileHash {
            sha256,
            cached: true,
        }));
    }
    let hashed_at = SystemTime::now();
    let mut hasher = Sha256::new();
    let hashed = if size < OVERLAP_FROM {
        hash_into(&mut hasher, file, progress)?
    } else {
        hash_reading_ahead(&mut hasher, file, progress)?
    };
    if hashed != size || platform::file_stamp(file)? != stamp {
        return Ok(None);
    }
    let sha256: [u8; 32] = hasher.finalize().into();
    if let Some(mut cache) = cache.and_then(|cache| cache.lock().ok()) {
        cache.insert(stamp, sha256, hashed_at);
    }
    Ok(Some(FileHash {
        sha256,
        cached: false,
    }))
}

/// Feeds all of `file` to `hasher` as [`hash_into`] does, while a second thread
/// reads the next buffer, so that reading takes no time of its own.
fn hash_reading_ahead(
    hasher: &mut Sha256,
    file: &File,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    let (filled, full) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(1);
    let (emptied, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = emptied.send(vec![0; HASH_READ_LEN]);
    }
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("chat-hash-read".into())
            .spawn_scoped(scope, move || -> io::Result<()> {
                while let Ok(mut buffer) = empty.recv() {
                    let read = read_some(file, &mut buffer)?;
                    if read == 0 || filled.send((buffer, read)).is_err() {
                        break;
                    }
                }
                Ok(())
            })?;
        let mut hashed = 0u64;
        for (buffer, read) in full {
            hasher.update(&buffer[..read]);
            hashed += read as u64;
            progress(hashed);
            let _ = emptied.send(buffer);
        }
        reader.join().expect("the hashing reader panicked")?;
        Ok(hashed)
    })
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
            let read = read_some(&mut reader, buffer)?;
            if read == 0 {
                return Ok(hashed);
            }
            hasher.update(&buffer[..read]);
            hashed += read as u64;
            progress(hashed);
        }
    })
}

/// One read into `buffer`, tried again when a signal interrupts it; 0 at the end.
fn read_some(mut reader: impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buffer) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
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

/// The `Cancel` reason of a transfer that the person sending it cancelled
/// (PROTOCOL.md §6, step 5).
pub const CANCELLED_BY_SENDER: &str = "cancelled";
/// The `Verdict` detail of a transfer that the person receiving it cancelled
/// (PROTOCOL.md §6, step 4).
pub const CANCELLED_BY_RECEIVER: &str = "cancelled by the receiver";

/// A byte count for people, written as the front ends' progress bars write it so
/// that every line of a session agrees: `212.00 MiB`, `3 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
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
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(212 << 20), "212.00 MiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(633_274_368), "603.94 MiB");
    }

    #[test]
    fn a_file_hashed_while_read_ahead_gives_the_plain_digest() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1000, OVERLAP_FROM as usize + HASH_READ_LEN / 2] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("{len}.bin"));
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let mut reports = Vec::new();
            let hash = sha256_of(&file, len as u64, None, CacheUse::LookUp, |done| {
                reports.push(done)
            });
            let hash = hash.unwrap().expect("the file did not change");
            assert!(!hash.cached);
            assert_eq!(
                hash.sha256,
                <[u8; 32]>::from(Sha256::digest(&data)),
                "{len} bytes"
            );
            assert!(reports.is_sorted());
            assert_eq!(reports.last().copied().unwrap_or(0), len as u64);
        }
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
