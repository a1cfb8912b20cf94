//! Receiving one file: a private part file (see [`super::parts`]), written and
//! hashed on its own thread as chunks arrive, then verified and moved to a free final
//! name without ever replacing a file.
//!
//! When the data stops coming (a lost connection, a restart), the part is kept, and a
//! later offer of the same name, size and SHA-256 resumes where it ends. On a wrong
//! hash, a write error or a cancelled offer, it is removed. The SHA-256 to check is the
//! offer's, or for an offer whose hash follows its data, the one that follows.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::backlog::Backlog;
use super::chunk_queue::{ChunkReceiver, ChunkSender, arriving_queue};
use super::human_bytes;
use super::in_progress::{Claim, InProgress};
use super::manifest::{self, MEMORY_BUDGET};
use super::name::{self, NameError};
use super::parts::{self, Meta, OwnedPart};
use super::stored::StoredRecord;
use crate::identity::fingerprint::Fingerprint;
use crate::platform;

/// Files being received or verified at once, across every connection of a session.
pub const MAX_ACTIVE_TRANSFERS: usize = 4;

/// Bytes of one file written between two starts of their write-back to the disk, so
/// that a large file goes to the disk as it arrives instead of piling up in memory
/// for its one sync at the end.
pub const WRITE_BACK_STEP: u64 = 8 << 20;

/// Where files go, how large they may be, and how many may be in progress at once.
#[derive(Debug, Clone)]
pub struct ReceiveLimits {
    pub dir: PathBuf,
    pub max_file_size: Option<u64>,
    /// One permit per file being received, written or verified.
    slots: Arc<Semaphore>,
    in_progress: InProgress,
    /// The files this identity stored, which alone are ever "already saved".
    record: Option<Arc<StoredRecord>>,
    /// One permit per heap byte that folders' manifests may hold at once, from the
    /// `Folder` frame until the folder ends (see [`manifest::memory_bound`]).
    manifest_memory: Arc<Semaphore>,
    /// One permit per folder whose manifest is arriving or being checked.
    manifest_checks: Arc<Semaphore>,
}

/// What one transfer holds until its outcome is known: one of the session's slots,
/// and its offer, which no other transfer of the session may work on meanwhile.
#[derive(Debug)]
pub struct Reservation {
    _slot: OwnedSemaphorePermit,
    _claim: Claim,
    _manifest: Option<ManifestShare>,
}

impl Reservation {
    /// Holds a folder's share of the manifests' memory too, for as long as its
    /// checked manifest is held.
    pub fn holding(self, share: ManifestShare) -> Reservation {
        Reservation {
            _manifest: Some(share),
            ..self
        }
    }
}

/// A folder's share of the heap that the session's manifests may hold, taken when
/// its `Folder` frame arrives, before any of its manifest is read; it goes with the
/// manifest's bytes, then with its checked form, and is given back with the last.
#[derive(Debug)]
pub struct ManifestShare {
    _bytes: OwnedSemaphorePermit,
}

/// One of the session's checks of a folder's manifest, from its `Folder` frame
/// until it is accepted or refused.
#[derive(Debug)]
pub struct CheckSlot {
    _check: OwnedSemaphorePermit,
}

/// Why a folder's manifest is not taken in now.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestBusy {
    #[error("more than {MAX_ACTIVE_TRANSFERS} folders being checked at once")]
    Checks,
    #[error(
        "the folders already arriving hold their manifests: this one may take {}, and {} of \
         the {} allowed are free",
        human_bytes(*needs),
        human_bytes(*free),
        human_bytes(MEMORY_BUDGET)
    )]
    Memory { needs: u64, free: u64 },
}

impl ReceiveLimits {
    pub fn new(dir: PathBuf, max_file_size: Option<u64>) -> Self {
        ReceiveLimits {
            dir,
            max_file_size,
            slots: Arc::new(Semaphore::new(MAX_ACTIVE_TRANSFERS)),
            in_progress: InProgress::default(),
            record: None,
            manifest_memory: Arc::new(Semaphore::new(MEMORY_BUDGET as usize)),
            manifest_checks: Arc::new(Semaphore::new(MAX_ACTIVE_TRANSFERS)),
        }
    }

    /// Files stored from now on are noted in `record`, and an offer of one of them
    /// is answered "already saved". Without a record, every offer is stored.
    pub fn remembering(mut self, record: StoredRecord) -> Self {
        self.record = Some(Arc::new(record));
        self
    }

    /// Where the download folder holds a file this identity stored for exactly
    /// `meta`, checked on disk. Reads files: call it off the async runtime.
    pub fn already_stored(&self, meta: &Meta) -> Option<PathBuf> {
        self.record.as_ref()?.find(&self.dir, meta)
    }

    /// Takes in a folder's manifest of `entries` entries and `manifest_len` bytes,
    /// both within their maximums ([`manifest::check_announced`]): one of the
    /// session's checks, and the most heap its manifest may hold. Nothing, across
    /// every connection of the session, while [`MAX_ACTIVE_TRANSFERS`] are checked
    /// or their manifests hold [`MEMORY_BUDGET`] bytes between them.
    pub fn admit_manifest(
        &self,
        entries: u32,
        manifest_len: u32,
    ) -> Result<(CheckSlot, ManifestShare), ManifestBusy> {
        let check =
            (self.manifest_checks.clone().try_acquire_owned()).map_err(|_| ManifestBusy::Checks)?;
        let needs = manifest::memory_bound(entries, manifest_len);
        let share = u32::try_from(needs)
            .ok()
            .and_then(|needs| {
                let memory = self.manifest_memory.clone();
                memory.try_acquire_many_owned(needs).ok()
            })
            .ok_or_else(|| ManifestBusy::Memory {
                needs,
                free: self.manifest_memory.available_permits() as u64,
            })?;
        Ok((CheckSlot { _check: check }, ManifestShare { _bytes: share }))
    }

    /// Reserves the right to receive `meta`: first waits until no other transfer
    /// of this session is receiving or verifying the same offer (an earlier copy on
    /// a connection that was lost or replaced), then takes a slot. Nothing, if
    /// [`MAX_ACTIVE_TRANSFERS`] files are in progress already.
    pub async fn reserve(&self, meta: &Meta) -> Option<Reservation> {
        let claim = self.in_progress.claim(meta).await;
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        Some(Reservation {
            _slot: slot,
            _claim: claim,
            _manifest: None,
        })
    }
}

/// The offer `(offered_name, size, sha256)` from `sender` with its name made safe
/// to store; `sha256` is `None` for an offer whose hash follows its data.
pub fn validate(
    offered_name: &str,
    size: u64,
    sha256: Option<[u8; 32]>,
    sender: Fingerprint,
) -> Result<Meta, NameError> {
    Ok(Meta {
        name: name::sanitize(offered_name)?,
        size,
        sha256,
        sender: Some(sender),
    })
}

/// Why an offer is refused before any data is accepted.
#[derive(Debug, Error)]
pub enum RefuseReason {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(
        "the file is {}, more than the receiver's limit of {}",
        human_bytes(*size),
        human_bytes(*max)
    )]
    TooLarge { size: u64, max: u64 },
    #[error(
        "the file is {}, but only {} are free in the download folder",
        human_bytes(*size),
        human_bytes(*available)
    )]
    NoRoom { size: u64, available: u64 },
    #[error("the receiver cannot create the file: {0}")]
    Io(#[from] io::Error),
}

/// A `Digest` where none may come: a protocol error.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestOutOfPlace {
    #[error("a Digest with {remaining} bytes of the file still to come")]
    BeforeTheData { remaining: u64 },
    #[error("a Digest for an offer that carried its SHA-256, or a second one")]
    NotAwaited,
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
    /// Size and the SHA-256 that followed the data matched a file stored earlier
    /// for the same offer, still at `path`: the new copy was not kept.
    AlreadyStored { path: PathBuf },
    /// All bytes arrived, but their hash differs; nothing kept.
    Corrupt {
        expected: [u8; 32],
        actual: [u8; 32],
    },
    /// Receiving failed (an I/O error, or a cancelled offer); nothing kept.
    Failed(String),
    /// The data stopped coming; `part` keeps the first `received` bytes for a resume.
    Interrupted { part: PathBuf, received: u64 },
    /// A folder: every file matched its size and hash; stored under `path`.
    FolderSaved {
        path: PathBuf,
        files: usize,
        bytes: u64,
    },
    /// A folder: all bytes arrived, but these of its `files` files did not match;
    /// the verified ones are kept for the folder to be sent again.
    FilesFailed { failed: Vec<String>, files: usize },
}

/// A file being received.
#[derive(Debug)]
pub struct Incoming {
    /// The offer, with the name the file will be stored under (before numbering).
    pub meta: Meta,
    /// Bytes already held from an earlier, interrupted transfer of the same file.
    pub offset: u64,
    received: u64,
    chunks: ChunkSender<Vec<u8>>,
    /// For an offer whose hash follows its data: where that hash goes, until it came.
    digest: Option<oneshot::Sender<[u8; 32]>>,
    outcome: oneshot::Receiver<Outcome>,
    keep_partial: Arc<AtomicBool>,
}

/// The SHA-256 a received file must have.
#[derive(Debug)]
enum Expected {
    Offered([u8; 32]),
    /// Follows the data; the sender's end closes if the data stops first.
    Follows(oneshot::Receiver<[u8; 32]>),
}

impl Incoming {
    /// Checks a validated offer against the limits and opens its part file, resuming
    /// a kept one. This touches the disk: call it off the async runtime. `progress`
    /// is called from the disk thread with the number of bytes written so far.
    /// `reservation` is held until the outcome is known.
    pub fn start(
        limits: &ReceiveLimits,
        meta: Meta,
        reservation: Reservation,
        backlog: Arc<Backlog>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<Incoming, RefuseReason> {
        let size = meta.size;
        if let Some(max) = limits.max_file_size.filter(|max| size > *max) {
            return Err(RefuseReason::TooLarge { size, max });
        }
        let resumable = parts::find_resumable(&limits.dir, &meta)?;
        let offset = resumable.as_ref().map_or(0, |part| part.held);
        let available = platform::free_space(&limits.dir)?;
        if size - offset > available {
            return Err(RefuseReason::NoRoom {
                size: size - offset,
                available,
            });
        }
        let part = match resumable {
            Some(part) => part,
            None => parts::create(&limits.dir, &meta)?,
        };
        let (chunks, chunks_rx) = arriving_queue(backlog);
        let (outcome_tx, outcome) = oneshot::channel();
        let keep_partial = Arc::new(AtomicBool::new(true));
        let (digest, expected) = match meta.sha256 {
            Some(sha256) => (None, Expected::Offered(sha256)),
            None => {
                let (digest, follows) = oneshot::channel();
                (Some(digest), Expected::Follows(follows))
            }
        };
        let job = DiskJob {
            part,
            dir: limits.dir.clone(),
            meta: meta.clone(),
            expected,
            offset,
            keep_partial: keep_partial.clone(),
            record: limits.record.clone(),
        };
        std::thread::Builder::new()
            .name("chat-disk".into())
            .spawn(move || {
                let outcome = job.run(chunks_rx, progress);
                drop(reservation);
                let _ = outcome_tx.send(outcome);
            })?;
        Ok(Incoming {
            meta,
            offset,
            received: offset,
            chunks,
            digest,
            outcome,
            keep_partial,
        })
    }

    pub fn remaining(&self) -> u64 {
        self.meta.size - self.received
    }

    /// Every byte and the SHA-256 to check them against are here.
    pub fn is_complete(&self) -> bool {
        self.received == self.meta.size && self.digest.is_none()
    }

    /// Its SHA-256 follows the data and has not come yet.
    pub fn awaits_digest(&self) -> bool {
        self.digest.is_some()
    }

    /// Hands over the SHA-256 that followed the data: only once, and only after
    /// every byte.
    pub fn digest(&mut self, sha256: [u8; 32]) -> Result<(), DigestOutOfPlace> {
        if self.received != self.meta.size {
            return Err(DigestOutOfPlace::BeforeTheData {
                remaining: self.remaining(),
            });
        }
        let digest = self.digest.take().ok_or(DigestOutOfPlace::NotAwaited)?;
        // The disk thread reads it once the data is written; if it stopped, its
        // outcome says why.
        let _ = digest.send(sha256);
        Ok(())
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
    /// keeps the part for a resume if `keep_partial`, and removes it otherwise.
    pub async fn finish(self, keep_partial: bool) -> Outcome {
        let Incoming {
            chunks,
            digest,
            outcome,
            keep_partial: keep,
            ..
        } = self;
        keep.store(keep_partial, Ordering::SeqCst);
        drop((chunks, digest));
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

/// The disk thread's work. It owns the part (and so its lock) from start to end:
/// the hash it checks is of the bytes written through, or read back from, the very
/// file it renames.
struct DiskJob {
    part: OwnedPart,
    dir: PathBuf,
    meta: Meta,
    expected: Expected,
    offset: u64,
    keep_partial: Arc<AtomicBool>,
    record: Option<Arc<StoredRecord>>,
}

impl DiskJob {
    fn run(mut self, mut chunks: ChunkReceiver<Vec<u8>>, mut progress: impl FnMut(u64)) -> Outcome {
        let mut hasher = Sha256::new();
        if let Err(err) = self.hash_kept_prefix(&mut hasher) {
            self.part.discard();
            return Outcome::Failed(format!("reading the kept part failed: {err}"));
        }
        let mut written = self.offset;
        let mut written_back = written;
        // Where this run starts: the kept bytes are no part of its progress.
        progress(written);
        while let Some(data) = chunks.blocking_recv() {
            if let Err(err) = self.part.file.write_all(&data) {
                self.part.discard();
                return Outcome::Failed(format!("writing the file failed: {err}"));
            }
            hasher.update(&data);
            written += data.len() as u64;
            if written - written_back >= WRITE_BACK_STEP {
                platform::start_write_back(&self.part.file, written_back, written - written_back);
                written_back = written;
            }
            progress(written);
        }
        let size = self.meta.size;
        if written != size {
            return stopped(self.part, &self.keep_partial, written, size, "incomplete");
        }
        let expected = match self.expected {
            Expected::Offered(sha256) => sha256,
            Expected::Follows(digest) => match digest.blocking_recv() {
                Ok(sha256) => sha256,
                Err(_) => {
                    let why = "its SHA-256 never came";
                    return stopped(self.part, &self.keep_partial, written, size, why);
                }
            },
        };
        let actual: [u8; 32] = hasher.finalize().into();
        if actual != expected {
            self.part.discard();
            return Outcome::Corrupt { expected, actual };
        }
        let verified = Meta {
            sha256: Some(actual),
            ..self.meta.clone()
        };
        // Had the offer carried its hash, this would have been asked before any data.
        if self.meta.sha256.is_none()
            && let Some(path) =
                (self.record.as_ref()).and_then(|record| record.find(&self.dir, &verified))
        {
            self.part.discard();
            return Outcome::AlreadyStored { path };
        }
        if let Err(err) = self.part.file.sync_all() {
            self.part.discard();
            return Outcome::Failed(format!("storing the file failed: {err}"));
        }
        let (dir, meta, record) = (&self.dir, &verified, &self.record);
        // Noted before the rename: a receiver killed right after it still knows the
        // file as its own. A note that cannot be written costs only a second copy
        // should the same file be offered again.
        let remember = |target: &std::path::Path, file: &std::fs::File| {
            if let Some(record) = record {
                let _ = record.remember(dir, meta, target, file);
            }
        };
        match self.part.place(dir, &verified.name, remember) {
            Ok(path) => Outcome::Saved {
                path,
                sha256: actual,
            },
            Err(err) => Outcome::Failed(format!("storing the file failed: {err}")),
        }
    }

    /// Feeds the bytes kept from an interrupted transfer to the hash, and positions
    /// the file after them.
    fn hash_kept_prefix(&mut self, hasher: &mut Sha256) -> io::Result<()> {
        let file = &mut self.part.file;
        file.seek(SeekFrom::Start(0))?;
        let hashed = super::hash_into(hasher, (&*file).take(self.offset), |_| {})?;
        if hashed != self.offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the kept part is shorter than it was",
            ));
        }
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(())
    }
}

/// The data stopped after `written` of `size` bytes, or before the SHA-256 that
/// follows it: the part is kept for a resume, unless it may not be or cannot be
/// synced.
fn stopped(
    part: OwnedPart,
    keep_partial: &AtomicBool,
    written: u64,
    size: u64,
    why: &str,
) -> Outcome {
    if keep_partial.load(Ordering::SeqCst) && part.file.sync_data().is_ok() {
        return Outcome::Interrupted {
            part: part.path.clone(),
            received: written,
        };
    }
    part.discard();
    Outcome::Failed(format!(
        "{why}: {} of {} arrived",
        human_bytes(written),
        human_bytes(size)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::names_in;
    use std::path::Path;

    fn limits(dir: &Path) -> ReceiveLimits {
        ReceiveLimits::new(dir.to_owned(), Some(1 << 20))
    }

    async fn start(
        limits: &ReceiveLimits,
        name: &str,
        size: u64,
        sha256: impl Into<Option<[u8; 32]>>,
    ) -> Result<Incoming, RefuseReason> {
        let meta = validate(name, size, sha256.into(), alice())?;
        let reservation = limits.reserve(&meta).await.expect("a free slot");
        Incoming::start(limits, meta, reservation, Arc::default(), |_| {})
    }

    /// Polls `future` once: whether it is done at this point.
    fn is_ready<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut context).is_ready()
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// The peer that sends every offer of these tests.
    fn alice() -> Fingerprint {
        Fingerprint::of(b"alice")
    }

    #[tokio::test]
    async fn verified_file_takes_a_free_name_and_keeps_the_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let data = b"hello world".to_vec();
        let mut incoming = start(&limits(dir.path()), "a.txt", 11, sha(&data))
            .await
            .unwrap();
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
        assert_eq!(names_in(dir.path()), ["a (1).txt", "a.txt"]);
    }

    #[tokio::test]
    async fn received_files_are_private() {
        use crate::platform::{self, Access};
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = start(&limits(dir.path()), "p", 1, sha(b"p")).await.unwrap();
        incoming.write(b"p".to_vec()).await.unwrap();
        incoming.finish(true).await;
        let (_, exposure) = platform::open_secret(&dir.path().join("p"), Access::Read).unwrap();
        assert_eq!(exposure, None);
    }

    #[tokio::test]
    async fn wrong_hash_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = start(&limits(dir.path()), "b", 3, sha(b"abc"))
            .await
            .unwrap();
        incoming.write(b"abd".to_vec()).await.unwrap();
        assert!(matches!(
            incoming.finish(true).await,
            Outcome::Corrupt { .. }
        ));
        assert!(names_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn excess_bytes_are_refused_and_early_end_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = start(&limits(dir.path()), "c", 3, sha(b"abc"))
            .await
            .unwrap();
        assert_eq!(
            incoming.write(b"abcd".to_vec()).await,
            Err(Overflow {
                got: 4,
                remaining: 3
            })
        );
        incoming.write(b"ab".to_vec()).await.unwrap();
        assert_eq!(names_in(dir.path()), [parts::PARTS_DIR]);
        assert!(matches!(incoming.finish(false).await, Outcome::Failed(_)));
        assert!(names_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn the_same_offer_again_waits_until_the_earlier_copy_is_stored() {
        // Found by the fuzzer, then by the soak: the same offer again while the
        // first copy is being verified (its verdict lost with the connection) must
        // neither touch that copy nor store a second one. It waits, and then finds
        // the stored file.
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let record = StoredRecord::open(home.path().join("me.stored"));
        let limits = limits(dir.path()).remembering(record);
        let data = b"hello fuzz".to_vec();
        let mut first = start(&limits, "a.txt", 10, sha(&data)).await.unwrap();
        first.write(data.clone()).await.unwrap();
        let meta = validate("a.txt", 10, Some(sha(&data)), alice()).unwrap();
        let mut again = std::pin::pin!(limits.reserve(&meta));
        assert!(
            !is_ready(again.as_mut()),
            "reserved while the first copy runs"
        );
        assert!(matches!(first.finish(true).await, Outcome::Saved { .. }));
        let _reserved = again.await.expect("a free slot");
        assert_eq!(limits.already_stored(&meta), Some(dir.path().join("a.txt")));
        assert_eq!(names_in(dir.path()), ["a.txt"]);
    }

    #[tokio::test]
    async fn the_same_offer_again_resumes_the_part_the_earlier_copy_kept() {
        // From the soak: a re-offer on a new connection while the replaced one's
        // disk thread still held the part started again at 0 and left that part.
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 249) as u8).collect();
        let mut first = start(&limits, "r.bin", 50_000, sha(&data)).await.unwrap();
        first.write(data[..20_000].to_vec()).await.unwrap();
        let meta = validate("r.bin", 50_000, Some(sha(&data)), alice()).unwrap();
        let mut again = std::pin::pin!(limits.reserve(&meta));
        assert!(
            !is_ready(again.as_mut()),
            "reserved while the first copy runs"
        );
        let ended = first.finish(true);
        assert!(matches!(
            ended.await,
            Outcome::Interrupted {
                received: 20_000,
                ..
            }
        ));
        let reservation = again.await.expect("a free slot");
        let mut resumed =
            Incoming::start(&limits, meta.clone(), reservation, Arc::default(), |_| {}).unwrap();
        assert_eq!(resumed.offset, 20_000);
        resumed.write(data[20_000..].to_vec()).await.unwrap();
        assert!(matches!(resumed.finish(true).await, Outcome::Saved { .. }));
        assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), data);
        assert_eq!(names_in(dir.path()), ["r.bin"]);
    }

    #[tokio::test]
    async fn a_file_whose_hash_follows_is_checked_against_the_digest_after_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let data = b"hash after data".to_vec();
        let size = data.len() as u64;

        let mut incoming = start(&limits, "a.txt", size, None).await.unwrap();
        assert_eq!(
            incoming.digest(sha(&data)),
            Err(DigestOutOfPlace::BeforeTheData { remaining: size })
        );
        incoming.write(data.clone()).await.unwrap();
        assert!(!incoming.is_complete(), "complete before its SHA-256 came");
        assert_eq!(incoming.digest(sha(&data)), Ok(()));
        assert!(incoming.is_complete());
        assert_eq!(
            incoming.digest(sha(&data)),
            Err(DigestOutOfPlace::NotAwaited)
        );
        let Outcome::Saved { path, sha256 } = incoming.finish(true).await else {
            panic!("not saved");
        };
        assert_eq!(
            (std::fs::read(path).unwrap(), sha256),
            (data.clone(), sha(&data))
        );

        let mut wrong = start(&limits, "b.txt", size, None).await.unwrap();
        wrong.write(data.clone()).await.unwrap();
        wrong.digest(sha(b"something else")).unwrap();
        assert!(matches!(wrong.finish(true).await, Outcome::Corrupt { .. }));
        assert_eq!(names_in(dir.path()), ["a.txt"]);

        let mut offered = start(&limits, "c.txt", size, sha(&data)).await.unwrap();
        offered.write(data.clone()).await.unwrap();
        assert_eq!(
            offered.digest(sha(&data)),
            Err(DigestOutOfPlace::NotAwaited)
        );
        offered.finish(false).await;
    }

    #[tokio::test]
    async fn every_byte_without_the_digest_is_kept_and_resumed_by_the_hashed_offer() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        let mut first = start(&limits, "r.bin", 70_000, None).await.unwrap();
        first.write(data.clone()).await.unwrap();
        assert!(matches!(
            first.finish(true).await,
            Outcome::Interrupted {
                received: 70_000,
                ..
            }
        ));
        let resumed = start(&limits, "r.bin", 70_000, sha(&data)).await.unwrap();
        assert_eq!(resumed.offset, 70_000);
        assert!(resumed.is_complete());
        assert!(matches!(resumed.finish(true).await, Outcome::Saved { .. }));
        assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), data);
        assert_eq!(names_in(dir.path()), ["r.bin"]);
    }

    #[tokio::test]
    async fn an_interrupted_file_resumes_only_for_the_same_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut first = start(&limits, "r.bin", 100_000, sha(&data)).await.unwrap();
        first.write(data[..30_000].to_vec()).await.unwrap();
        let Outcome::Interrupted { part, received } = first.finish(true).await else {
            panic!("an interrupted transfer keeps its part");
        };
        assert_eq!(received, 30_000);
        assert_eq!(part.parent().unwrap(), dir.path().join(parts::PARTS_DIR));

        let other = start(&limits, "r.bin", 100_000, sha(b"other"))
            .await
            .unwrap();
        assert_eq!(other.offset, 0, "a different hash never resumes");
        other.finish(false).await;

        let mut resumed = start(&limits, "r.bin", 100_000, sha(&data)).await.unwrap();
        assert_eq!(resumed.offset, 30_000);
        assert_eq!(resumed.remaining(), 70_000);
        resumed.write(data[30_000..].to_vec()).await.unwrap();
        assert!(matches!(resumed.finish(true).await, Outcome::Saved { .. }));
        assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), data);
        assert_eq!(names_in(dir.path()), ["r.bin"]);
    }

    #[tokio::test]
    async fn refuses_bad_names_and_oversized_offers_before_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        assert!(matches!(
            start(&limits, "../x", 1, [0; 32]).await,
            Err(RefuseReason::Name(_))
        ));
        assert!(matches!(
            start(&limits, "x", (1 << 20) + 1, [0; 32]).await,
            Err(RefuseReason::TooLarge { .. })
        ));
        let unlimited = ReceiveLimits::new(dir.path().to_owned(), None);
        assert!(matches!(
            start(&unlimited, "x", u64::MAX, [0; 32]).await,
            Err(RefuseReason::NoRoom { .. })
        ));
        assert!(names_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn empty_file_is_verified_without_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let incoming = start(&limits(dir.path()), ".hidden", 0, sha(b""))
            .await
            .unwrap();
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

    #[tokio::test]
    async fn a_slot_is_held_until_the_file_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let mut held = Vec::new();
        for i in 0..MAX_ACTIVE_TRANSFERS {
            held.push(start(&limits, &format!("f{i}"), 0, sha(b"")).await.unwrap());
        }
        let one_more = validate("g", 0, Some(sha(b"")), alice()).unwrap();
        assert!(
            limits.reserve(&one_more).await.is_none(),
            "empty files count too"
        );
        for incoming in held {
            incoming.finish(true).await;
        }
        assert!(limits.reserve(&one_more).await.is_some());
    }

    /// Same-name offers, some honest, some lying about their hash, some cut short,
    /// interleaved on many threads: every stored file holds exactly the bytes whose
    /// hash its outcome reports, and that hash is the honest one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn interleaved_same_name_offers_never_store_bytes_under_a_wrong_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let honest = sha(&data);
        let mut tasks = Vec::new();
        for worker in 0..MAX_ACTIVE_TRANSFERS {
            let limits = ReceiveLimits::new(dir.path().to_owned(), None);
            let data = data.clone();
            tasks.push(tokio::spawn(async move {
                let mut saved = Vec::new();
                for round in 0..40 {
                    let kind = (worker + round) % 3;
                    let claimed = if kind == 1 { sha(b"a lie") } else { honest };
                    let mut incoming = start(&limits, "r.bin", 200_000, claimed).await.unwrap();
                    let offset = incoming.offset as usize;
                    let end = if kind == 2 {
                        offset.max(100_000)
                    } else {
                        200_000
                    };
                    for chunk in data[offset..end].chunks(65_536) {
                        incoming.write(chunk.to_vec()).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    if let Outcome::Saved { path, sha256 } = incoming.finish(true).await {
                        saved.push((path, sha256));
                    }
                }
                saved
            }));
        }
        let mut stored = 0;
        for task in tasks {
            for (path, reported) in task.await.unwrap() {
                assert_eq!(reported, honest, "{}", path.display());
                assert_eq!(
                    sha(&std::fs::read(&path).unwrap()),
                    reported,
                    "{}",
                    path.display()
                );
                stored += 1;
            }
        }
        assert!(stored > 0);
    }
}
