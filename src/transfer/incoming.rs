//! Receiving one file: a `.part` file created with `create_new`, written and hashed
//! on its own thread as chunks arrive, then verified and moved to a free final name
//! without ever replacing a file. On any failure the `.part` is removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::name::{self, NameError};

/// Chunks buffered between the network and the disk thread: bounds memory per transfer.
const CHUNKS_IN_FLIGHT: usize = 16;
/// How many numbered alternatives to try before giving up on a name.
const MAX_NAME_ATTEMPTS: u32 = 10_000;

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
    /// Receiving stopped part way (I/O error, or the data stopped coming); nothing kept.
    Failed(String),
}

/// A file being received.
#[derive(Debug)]
pub struct Incoming {
    /// The name the file will be stored under (before numbering).
    pub name: String,
    pub size: u64,
    received: u64,
    chunks: mpsc::Sender<Vec<u8>>,
    outcome: oneshot::Receiver<Outcome>,
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
        let available = free_space(&limits.dir)?;
        if size > available {
            return Err(RefuseReason::NoRoom { size, available });
        }
        let (file, part) = create_part(&limits.dir, &name)?;
        let (chunks, chunks_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (outcome_tx, outcome) = oneshot::channel();
        let job = DiskJob {
            file,
            part,
            dir: limits.dir.clone(),
            name: name.clone(),
            size,
            sha256,
        };
        std::thread::spawn(move || {
            let _ = outcome_tx.send(job.run(chunks_rx, progress));
        });
        Ok(Incoming {
            name,
            size,
            received: 0,
            chunks,
            outcome,
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

    /// After the last chunk (or to abandon the file early): waits for the verdict.
    /// Abandoning before the last byte removes the `.part`.
    pub async fn finish(self) -> Outcome {
        let Incoming {
            chunks, outcome, ..
        } = self;
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
}

impl DiskJob {
    fn run(
        mut self,
        mut chunks: mpsc::Receiver<Vec<u8>>,
        mut progress: impl FnMut(u64),
    ) -> Outcome {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(data) = chunks.blocking_recv() {
            if let Err(err) = self.file.write_all(&data) {
                let _ = std::fs::remove_file(&self.part);
                return Outcome::Failed(format!("writing {} failed: {err}", self.part.display()));
            }
            hasher.update(&data);
            written += data.len() as u64;
            progress(written);
        }
        if written != self.size {
            let _ = std::fs::remove_file(&self.part);
            return Outcome::Failed(format!(
                "incomplete: {written} of {} bytes arrived",
                self.size
            ));
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if actual != self.sha256 {
            let _ = std::fs::remove_file(&self.part);
            return Outcome::Corrupt {
                expected: self.sha256,
                actual,
            };
        }
        match self.file.sync_all().and_then(|()| self.place()) {
            Ok(path) => Outcome::Saved {
                path,
                sha256: self.sha256,
            },
            Err(err) => {
                let _ = std::fs::remove_file(&self.part);
                Outcome::Failed(format!("storing the file failed: {err}"))
            }
        }
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

/// Creates `<name>.part`, or `<name (n)>.part` if that is taken, never opening an existing file.
fn create_part(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    for n in 0..MAX_NAME_ATTEMPTS {
        let part = dir.join(format!("{}.part", name::numbered(name, n)));
        match OpenOptions::new().write(true).create_new(true).open(&part) {
            Ok(file) => return Ok((file, part)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free .part name left",
    ))
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
        let outcome = incoming.finish().await;
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
        assert!(matches!(incoming.finish().await, Outcome::Corrupt { .. }));
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
        assert_eq!(files_in(dir.path()), ["c.part"]);
        assert!(matches!(incoming.finish().await, Outcome::Failed(_)));
        assert!(files_in(dir.path()).is_empty());
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
        let outcome = incoming.finish().await;
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
