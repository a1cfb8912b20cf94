//! Receiving one file: a `.part` file created with `create_new`, written and hashed
//! on its own thread as chunks arrive, then verified and moved to a free final name
//! without ever replacing a file.
//!
//! Beside each `.part` lies a `.part.meta` naming the offer's size and SHA-256. When
//! the data stops coming (a lost connection, a restart), both are kept, and a later
//! offer of the same name, size and SHA-256 resumes where they end. On a wrong hash,
//! a write error or a cancelled offer, both are removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::name::{self, NameError};

/// Chunks buffered between the network and the disk thread: bounds memory per transfer.
const CHUNKS_IN_FLIGHT: usize = 16;
/// How many numbered alternatives to try before giving up on a name.
const MAX_NAME_ATTEMPTS: u32 = 10_000;
/// How many numbered `.part` files to look at for one to resume.
const MAX_RESUME_CANDIDATES: u32 = 100;
const META_HEADER: &str = "chat partial transfer v1";

/// Where files go and how large they may be.
#[derive(Debug, Clone)]
pub struct ReceiveLimits {
    pub dir: PathBuf,
    pub max_file_size: Option<u64>,
}

/// Why an offer is refused before any data is accepted.
#[derive(Debug, Error)]
pub enum RefuseReason {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("the file is {size} bytes, more than the receiver's limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("the file is {size} bytes, but only {available} bytes are free in the download folder")]
    NoRoom { size: u64, available: u64 },
    #[error("the receiver cannot create the file: {0}")]
    Io(#[from] io::Error),
}

/// More bytes arrived than the offer declared: a protocol error.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{got} more bytes arrived for a file with only {remaining} bytes left")]
pub struct Overflow {
    pub got: usize,
    pub remaining: u64,
}

/// How receiving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Size and hash matched; stored under `path`.
    Saved { path: PathBuf, sha256: [u8; 32] },
    /// All bytes arrived, but their hash differs; nothing kept.
    Corrupt {
        expected: [u8; 32],
        actual: [u8; 32],
    },
    /// Receiving failed (an I/O error, or a cancelled offer); nothing kept.
    Failed(String),
    /// The data stopped coming; `part` keeps the first `received` bytes for a resume.
    Interrupted { part: PathBuf, received: u64 },
}

/// A file being received.
#[derive(Debug)]
pub struct Incoming {
    /// The name the file will be stored under (before numbering).
    pub name: String,
    pub size: u64,
    /// Bytes already held from an earlier, interrupted transfer of the same file.
    pub offset: u64,
    received: u64,
    chunks: mpsc::Sender<Vec<u8>>,
    outcome: oneshot::Receiver<Outcome>,
    keep_partial: Arc<AtomicBool>,
}

impl Incoming {
    /// Validates an offer and opens its `.part` file. `progress` is called from the
    /// disk thread with the number of bytes written so far.
    pub fn start(
        limits: &ReceiveLimits,
        offered_name: &str,
        size: u64,
        sha256: [u8; 32],
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<Incoming, RefuseReason> {
        let name = name::sanitize(offered_name)?;
        if let Some(max) = limits.max_file_size.filter(|max| size > *max) {
            return Err(RefuseReason::TooLarge { size, max });
        }
        let resumable = find_resumable(&limits.dir, &name, size, sha256)?;
        let offset = resumable.as_ref().map_or(0, |(_, _, held)| *held);
        let available = free_space(&limits.dir)?;
        if size - offset > available {
            return Err(RefuseReason::NoRoom {
                size: size - offset,
                available,
            });
        }
        let (file, part) = match resumable {
            Some((file, part, _)) => (file, part),
            None => create_part(&limits.dir, &name, size, sha256)?,
        };
        let (chunks, chunks_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (outcome_tx, outcome) = oneshot::channel();
        let keep_partial = Arc::new(AtomicBool::new(true));
        let job = DiskJob {
            file,
            part,
            dir: limits.dir.clone(),
            name: name.clone(),
            size,
            sha256,
            offset,
            keep_partial: keep_partial.clone(),
        };
        std::thread::spawn(move || {
            let _ = outcome_tx.send(job.run(chunks_rx, progress));
        });
        Ok(Incoming {
            name,
            size,
            offset,
            received: offset,
            chunks,
            outcome,
            keep_partial,
        })
    }

    pub fn remaining(&self) -> u64 {
        self.size - self.received
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.size
    }

    /// Queues the next chunk for the disk. Refuses bytes beyond the declared size.
    /// Returns the failure if the disk thread has already given up.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<Option<Outcome>, Overflow> {
        if data.len() as u64 > self.remaining() {
            return Err(Overflow {
                got: data.len(),
                remaining: self.remaining(),
            });
        }
        self.received += data.len() as u64;
        if self.chunks.send(data).await.is_err() {
            return Ok(Some(self.outcome().await));
        }
        Ok(self.outcome.try_recv().ok())
    }

    /// After the last chunk, or to stop early: waits for the outcome. Stopping early
    /// keeps the `.part` for a resume if `keep_partial`, and removes it otherwise.
    pub async fn finish(self, keep_partial: bool) -> Outcome {
        let Incoming {
            chunks,
            outcome,
            keep_partial: keep,
            ..
        } = self;
        keep.store(keep_partial, Ordering::SeqCst);
        drop(chunks);
        outcome
            .await
            .unwrap_or_else(|_| Outcome::Failed("the disk thread stopped".into()))
    }

    async fn outcome(&mut self) -> Outcome {
        (&mut self.outcome)
            .await
            .unwrap_or_else(|_| Outcome::Failed("the disk thread stopped".into()))
    }
}

struct DiskJob {
    file: File,
    part: PathBuf,
    dir: PathBuf,
    name: String,
    size: u64,
    sha256: [u8; 32],
    offset: u64,
    keep_partial: Arc<AtomicBool>,
}

impl DiskJob {
    fn run(
        mut self,
        mut chunks: mpsc::Receiver<Vec<u8>>,
        mut progress: impl FnMut(u64),
    ) -> Outcome {
        let mut hasher = Sha256::new();
        if let Err(err) = self.hash_kept_prefix(&mut hasher) {
            self.discard();
            return Outcome::Failed(format!(
                "reading the kept {} failed: {err}",
                self.part.display()
            ));
        }
        let mut written = self.offset;
        while let Some(data) = chunks.blocking_recv() {
            if let Err(err) = self.file.write_all(&data) {
                self.discard();
                return Outcome::Failed(format!("writing {} failed: {err}", self.part.display()));
            }
            hasher.update(&data);
            written += data.len() as u64;
            progress(written);
        }
        if written != self.size {
            if self.keep_partial.load(Ordering::SeqCst) && self.file.sync_data().is_ok() {
                return Outcome::Interrupted {
                    part: self.part.clone(),
                    received: written,
                };
            }
            self.discard();
            return Outcome::Failed(format!(
                "incomplete: {written} of {} bytes arrived",
                self.size
            ));
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if actual != self.sha256 {
            self.discard();
            return Outcome::Corrupt {
                expected: self.sha256,
                actual,
            };
        }
        match self.file.sync_all().and_then(|()| self.place()) {
            Ok(path) => {
                let _ = std::fs::remove_file(meta_path(&self.part));
                Outcome::Saved {
                    path,
                    sha256: self.sha256,
                }
            }
            Err(err) => {
                self.discard();
                Outcome::Failed(format!("storing the file failed: {err}"))
            }
        }
    }

    /// Feeds the bytes kept from an interrupted transfer to the hash, and positions
    /// the file after them.
    fn hash_kept_prefix(&mut self, hasher: &mut Sha256) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut kept = (&self.file).take(self.offset);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = kept.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        Ok(())
    }

    fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(meta_path(&self.part));
    }

    /// Moves the verified `.part` to the first free name, never replacing a file.
    fn place(&self) -> io::Result<PathBuf> {
        for n in 0..MAX_NAME_ATTEMPTS {
            let target = self.dir.join(name::numbered(&self.name, n));
            match rename_no_replace(&self.part, &target) {
                Ok(()) => {
                    if let Ok(dir) = File::open(&self.dir) {
                        let _ = dir.sync_all();
                    }
                    return Ok(target);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free file name left",
        ))
    }
}

/// `renameat2(RENAME_NOREPLACE)`, or a hard link and unlink where the file system
/// lacks it; either fails with `AlreadyExists` rather than replace `to`.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(err) => Err(err.into()),
    }
}

/// Creates `<name>.part` and its `.meta`, or `<name (n)>.part` if either is taken,
/// never opening an existing file.
fn create_part(dir: &Path, name: &str, size: u64, sha256: [u8; 32]) -> io::Result<(File, PathBuf)> {
    for n in 0..MAX_NAME_ATTEMPTS {
        let part = dir.join(format!("{}.part", name::numbered(name, n)));
        if meta_path(&part).exists() {
            continue;
        }
        let file = match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&part)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        };
        if !lock(&file) {
            return Err(io::Error::other("cannot lock a new .part file"));
        }
        let meta = format!(
            "{META_HEADER}\nsize {size}\nsha256 {}\n",
            hex::encode(sha256)
        );
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(meta_path(&part))
            .and_then(|mut file| file.write_all(meta.as_bytes()));
        match written {
            Ok(()) => return Ok((file, part)),
            Err(err) => {
                let _ = std::fs::remove_file(&part);
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(err);
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free .part name left",
    ))
}

/// A kept `.part` for this name whose `.meta` names the same size and SHA-256:
/// the open file, its path and how many bytes it holds. Symbolic links are not followed.
fn find_resumable(
    dir: &Path,
    name: &str,
    size: u64,
    sha256: [u8; 32],
) -> io::Result<Option<(File, PathBuf, u64)>> {
    let wanted = format!(
        "{META_HEADER}\nsize {size}\nsha256 {}\n",
        hex::encode(sha256)
    );
    for n in 0..MAX_RESUME_CANDIDATES {
        let part = dir.join(format!("{}.part", name::numbered(name, n)));
        let Ok(meta) = std::fs::read_to_string(meta_path(&part)) else {
            continue;
        };
        if meta != wanted {
            continue;
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&part)
        {
            Ok(file) => file,
            Err(_) => continue,
        };
        // A part still being written or verified by another transfer is locked:
        // resuming it could write into a file after it was verified and renamed.
        if !lock(&file) {
            continue;
        }
        let metadata = file.metadata()?;
        if metadata.is_file() && metadata.len() <= size {
            return Ok(Some((file, part, metadata.len())));
        }
    }
    Ok(None)
}

/// Takes the exclusive lock that marks a `.part` as owned by one transfer, in this
/// process or another; it is released when the file is closed.
fn lock(file: &File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

fn meta_path(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_owned();
    name.push(".meta");
    part.with_file_name(name)
}

fn free_space(dir: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path) -> ReceiveLimits {
        ReceiveLimits {
            dir: dir.to_owned(),
            max_file_size: Some(1 << 20),
        }
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn verified_file_takes_a_free_name_and_keeps_the_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let data = b"hello world".to_vec();
        let mut incoming =
            Incoming::start(&limits(dir.path()), "a.txt", 11, sha(&data), |_| {}).unwrap();
        assert_eq!(incoming.write(data[..5].to_vec()).await, Ok(None));
        assert_eq!(incoming.write(data[5..].to_vec()).await, Ok(None));
        assert!(incoming.is_complete());
        let outcome = incoming.finish(true).await;
        assert_eq!(
            outcome,
            Outcome::Saved {
                path: dir.path().join("a (1).txt"),
                sha256: sha(&data)
            }
        );
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"old");
        assert_eq!(std::fs::read(dir.path().join("a (1).txt")).unwrap(), data);
        assert_eq!(files_in(dir.path()), ["a (1).txt", "a.txt"]);
    }

    #[tokio::test]
    async fn wrong_hash_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming =
            Incoming::start(&limits(dir.path()), "b", 3, sha(b"abc"), |_| {}).unwrap();
        incoming.write(b"abd".to_vec()).await.unwrap();
        assert!(matches!(
            incoming.finish(true).await,
            Outcome::Corrupt { .. }
        ));
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn excess_bytes_are_refused_and_early_end_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming =
            Incoming::start(&limits(dir.path()), "c", 3, sha(b"abc"), |_| {}).unwrap();
        assert_eq!(
            incoming.write(b"abcd".to_vec()).await,
            Err(Overflow {
                got: 4,
                remaining: 3
            })
        );
        incoming.write(b"ab".to_vec()).await.unwrap();
        assert_eq!(files_in(dir.path()), ["c.part", "c.part.meta"]);
        assert!(matches!(incoming.finish(false).await, Outcome::Failed(_)));
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_part_still_being_verified_is_never_resumed() {
        // Found by the fuzzer: the same offer twice in a row, the second arriving
        // while the first is being verified, must not write into the first file.
        let dir = tempfile::tempdir().unwrap();
        let data = b"hello fuzz".to_vec();
        let mut first =
            Incoming::start(&limits(dir.path()), "a.txt", 10, sha(&data), |_| {}).unwrap();
        first.write(data.clone()).await.unwrap();
        let mut second =
            Incoming::start(&limits(dir.path()), "a.txt", 10, sha(&data), |_| {}).unwrap();
        assert_eq!(second.offset, 0);
        second.write(b"hello fezz".to_vec()).await.unwrap();
        assert!(matches!(first.finish(true).await, Outcome::Saved { .. }));
        assert!(matches!(second.finish(true).await, Outcome::Corrupt { .. }));
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), data);
        assert_eq!(files_in(dir.path()), ["a.txt"]);
    }

    #[tokio::test]
    async fn an_interrupted_file_resumes_only_for_the_same_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut first =
            Incoming::start(&limits(dir.path()), "r.bin", 100_000, sha(&data), |_| {}).unwrap();
        first.write(data[..30_000].to_vec()).await.unwrap();
        let kept = first.finish(true).await;
        assert_eq!(
            kept,
            Outcome::Interrupted {
                part: dir.path().join("r.bin.part"),
                received: 30_000
            }
        );

        let other =
            Incoming::start(&limits(dir.path()), "r.bin", 100_000, sha(b"other"), |_| {}).unwrap();
        assert_eq!(other.offset, 0, "a different hash never resumes");
        other.finish(false).await;

        let mut resumed =
            Incoming::start(&limits(dir.path()), "r.bin", 100_000, sha(&data), |_| {}).unwrap();
        assert_eq!(resumed.offset, 30_000);
        assert_eq!(resumed.remaining(), 70_000);
        resumed.write(data[30_000..].to_vec()).await.unwrap();
        assert!(matches!(resumed.finish(true).await, Outcome::Saved { .. }));
        assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), data);
        assert_eq!(files_in(dir.path()), ["r.bin"]);
    }

    #[tokio::test]
    async fn refuses_bad_names_and_oversized_offers_before_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let refuse =
            |name: &str, size| Incoming::start(&limits(dir.path()), name, size, [0; 32], |_| {});
        assert!(matches!(refuse("../x", 1), Err(RefuseReason::Name(_))));
        assert!(matches!(
            refuse("x", (1 << 20) + 1),
            Err(RefuseReason::TooLarge { .. })
        ));
        let unlimited = ReceiveLimits {
            dir: dir.path().to_owned(),
            max_file_size: None,
        };
        assert!(matches!(
            Incoming::start(&unlimited, "x", u64::MAX, [0; 32], |_| {}),
            Err(RefuseReason::NoRoom { .. })
        ));
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn empty_file_is_verified_without_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let incoming =
            Incoming::start(&limits(dir.path()), ".hidden", 0, sha(b""), |_| {}).unwrap();
        assert!(incoming.is_complete());
        let outcome = incoming.finish(true).await;
        assert_eq!(
            outcome,
            Outcome::Saved {
                path: dir.path().join("_hidden"),
                sha256: sha(b"")
            }
        );
        assert_eq!(std::fs::read(dir.path().join("_hidden")).unwrap(), b"");
    }
}
