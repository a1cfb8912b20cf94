//! Receiving a folder whose manifest has been checked: its files' bytes arrive as
//! one sequence, in manifest order. A disk thread cuts the sequence into the files,
//! checks each by its own size and SHA-256, and builds the tree in a private staging
//! folder; the folder takes its final name only when every file in it is verified.
//!
//! The staging folder sits beside a part (see [`super::parts`]) named after the
//! folder and its manifest, whose lock makes it this transfer's alone. Verified
//! files stay there when the data stops, so the same folder offered again resumes
//! at the first file that is not yet verified, within that file at what it holds.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::chunk_queue::{ChunkReceiver, ChunkSender, chunk_queue};
use super::incoming::{Outcome, Overflow, ReceiveLimits, RefuseReason, Reservation};
use super::manifest::{Checked, Kind};
use super::parts::{self, Meta, OwnedPart};
use crate::platform;

/// Failed files named one by one in an outcome; the rest are counted.
const MAX_FAILURES_NAMED: usize = 20;

/// The part meta of a folder: its name with a `/`, which no file name has, its
/// files' total size, and the SHA-256 of its manifest.
pub fn folder_meta(name: &str, size: u64, manifest: &[u8]) -> Meta {
    Meta {
        name: format!("{name}/"),
        size,
        sha256: Sha256::digest(manifest).into(),
    }
}

/// What the disk thread does with what it holds once no more bytes come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Ending {
    /// Nothing was decided: the folder was never accepted, or was dropped. The
    /// staging folder stays as it is, and nothing is placed.
    Leave = 0,
    /// Place the folder if every byte arrived; else keep it for a resume.
    Keep = 1,
    /// Place the folder if every byte arrived; else remove it.
    Discard = 2,
    /// Remove it whatever it holds: the sender broke the protocol before its answer.
    Remove = 3,
}

/// The [`Ending`] of one folder, shared with its disk thread; [`Ending::Leave`]
/// until set.
#[derive(Clone, Debug, Default)]
struct EndingFlag(Arc<AtomicU8>);

impl EndingFlag {
    fn set(&self, ending: Ending) {
        self.0.store(ending as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Ending {
        match self.0.load(Ordering::SeqCst) {
            1 => Ending::Keep,
            2 => Ending::Discard,
            3 => Ending::Remove,
            _ => Ending::Leave,
        }
    }
}

/// A folder being received.
#[derive(Debug)]
pub struct IncomingFolder {
    /// The meta of its part, whose name is the folder's name after the name rules.
    pub meta: Meta,
    /// Bytes already held from an earlier, interrupted transfer of the same folder.
    pub offset: u64,
    received: u64,
    chunks: ChunkSender<Vec<u8>>,
    outcome: oneshot::Receiver<Outcome>,
    ending: EndingFlag,
}

impl IncomingFolder {
    /// Checks the folder against the limits, finds or creates its staging folder and
    /// starts the disk thread. Touches the disk: call it off the async runtime.
    /// Dropped without [`IncomingFolder::end`], it ends as [`Ending::Leave`] says.
    pub fn start(
        limits: &ReceiveLimits,
        meta: Meta,
        manifest: Arc<Checked>,
        reservation: Reservation,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<IncomingFolder, RefuseReason> {
        let size = manifest.total_size;
        if let Some(max) = limits.max_file_size.filter(|max| size > *max) {
            return Err(RefuseReason::TooLarge { size, max });
        }
        // A new folder is checked for room before anything is made for it, so that
        // a refusal leaves nothing behind; a kept one, once it is known what it holds.
        let resumable = parts::find_resumable(&limits.dir, &meta)?;
        let available = platform::free_space(&limits.dir)?;
        let fresh = resumable.is_none();
        if fresh && size > available {
            return Err(RefuseReason::NoRoom { size, available });
        }
        let part = match resumable {
            Some(part) => part,
            None => parts::create(&limits.dir, &meta)?,
        };
        let staging = part.path.with_extension("tree");
        let start = match Staging::prepare(&staging, &manifest) {
            Ok(start) => start,
            Err(err) => {
                // What it holds cannot be laid out as this manifest says.
                let _ = std::fs::remove_dir_all(&staging);
                part.discard();
                return Err(err.into());
            }
        };
        if size - start.offset > available {
            return Err(RefuseReason::NoRoom {
                size: size - start.offset,
                available,
            });
        }
        let (chunks, chunks_rx) = chunk_queue();
        let (outcome_tx, outcome) = oneshot::channel();
        let ending = EndingFlag::default();
        let offset = start.offset;
        let part_path = part.path.clone();
        let job = FolderJob {
            part,
            staging: staging.clone(),
            dir: limits.dir.clone(),
            name: meta.name.trim_end_matches('/').to_owned(),
            manifest,
            start,
            ending: ending.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("chat-disk".into())
            .spawn(move || {
                let outcome = job.run(chunks_rx, progress);
                drop(reservation);
                let _ = outcome_tx.send(outcome);
            });
        if let Err(err) = spawned {
            if fresh {
                let _ = std::fs::remove_dir_all(&staging);
                parts::discard_at(&part_path);
            }
            return Err(err.into());
        }
        Ok(IncomingFolder {
            meta,
            offset,
            received: offset,
            chunks,
            outcome,
            ending,
        })
    }

    pub fn remaining(&self) -> u64 {
        self.meta.size - self.received
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.meta.size
    }

    /// Queues the next bytes for the disk. Refuses bytes beyond the folder's size.
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

    /// After the last bytes, or to stop early: waits for the outcome. Stopping early
    /// keeps the staging folder for a resume if `keep_partial`, and removes it otherwise.
    pub async fn finish(self, keep_partial: bool) -> Outcome {
        self.end(if keep_partial {
            Ending::Keep
        } else {
            Ending::Discard
        })
        .await
    }

    /// Ends the folder as `ending` says and waits for the outcome.
    pub async fn end(self, ending: Ending) -> Outcome {
        let IncomingFolder {
            chunks,
            outcome,
            ending: flag,
            ..
        } = self;
        flag.set(ending);
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

/// Where a staging folder stands: the first file not yet verified, what is held of
/// it, and where that is in the folder's byte sequence.
#[derive(Debug)]
struct Staging {
    next_file: usize,
    held: u64,
    offset: u64,
}

impl Staging {
    /// Creates every folder of the manifest in `staging` (so empty ones are kept),
    /// and finds how far an earlier transfer of the same folder got.
    fn prepare(staging: &Path, manifest: &Checked) -> io::Result<Staging> {
        platform::ensure_private_dir(staging)?;
        for entry in manifest.entries() {
            if entry.kind() == Kind::Folder {
                match std::fs::create_dir(entry.path_in(staging)) {
                    Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
                    _ => {}
                }
            }
        }
        let mut start = Staging {
            next_file: manifest.files(),
            held: 0,
            offset: 0,
        };
        let files = (0..manifest.files()).map_while(|index| manifest.file(index));
        for (index, entry) in files.enumerate() {
            let Kind::File { size, .. } = entry.kind() else {
                unreachable!("a file's entry is a file");
            };
            let verified = std::fs::symlink_metadata(entry.path_in(staging))
                .is_ok_and(|stored| stored.is_file() && stored.len() == size);
            if !verified {
                start.next_file = index;
                start.held = std::fs::symlink_metadata(current_path(staging, index))
                    .ok()
                    .filter(|kept| kept.is_file())
                    .map_or(0, |kept| kept.len())
                    .min(size);
                break;
            }
            start.offset += size;
        }
        start.offset += start.held;
        for entry in std::fs::read_dir(staging)? {
            let path = entry?.path();
            let ours = current_path(staging, start.next_file);
            let is_current = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(CURRENT_PREFIX));
            if is_current && path != ours {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(start)
    }
}

/// Files still arriving are kept under names no received name can have.
const CURRENT_PREFIX: &str = ".arriving-";

fn current_path(staging: &Path, index: usize) -> PathBuf {
    staging.join(format!("{CURRENT_PREFIX}{index}"))
}

/// The disk thread's work: it owns the part (and so the staging folder) throughout.
struct FolderJob {
    part: OwnedPart,
    staging: PathBuf,
    dir: PathBuf,
    name: String,
    manifest: Arc<Checked>,
    start: Staging,
    ending: EndingFlag,
}

/// The file being written now.
struct Current {
    index: usize,
    file: File,
    hasher: Sha256,
    written: u64,
    size: u64,
    sha256: [u8; 32],
}

impl FolderJob {
    fn run(self, mut chunks: ChunkReceiver<Vec<u8>>, mut progress: impl FnMut(u64)) -> Outcome {
        let mut failed = Vec::new();
        let mut written = self.start.offset;
        progress(written);
        let mut current = match self.open(self.start.next_file, self.start.held) {
            Ok(current) => current,
            Err(err) => return self.fail(format!("reading the kept part failed: {err}")),
        };
        if let Err(err) = self.settle(&mut current, &mut failed) {
            return self.fail(format!("storing a file failed: {err}"));
        }
        while let Some(data) = chunks.blocking_recv() {
            written += data.len() as u64;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let Some(file) = current.as_mut() else {
                    return self.fail("more bytes than the folder's files hold".into());
                };
                let take = (file.size - file.written).min(rest.len() as u64) as usize;
                let (this_file, next) = rest.split_at(take);
                if let Err(err) = file.file.write_all(this_file) {
                    return self.fail(format!("writing a file failed: {err}"));
                }
                file.hasher.update(this_file);
                file.written += take as u64;
                rest = next;
                if let Err(err) = self.settle(&mut current, &mut failed) {
                    return self.fail(format!("storing a file failed: {err}"));
                }
            }
            progress(written);
        }
        let total = self.part_size();
        let ending = self.ending.get();
        if ending == Ending::Remove {
            return self.fail("the sender broke the protocol".into());
        }
        if ending == Ending::Leave {
            if let Some(file) = &current {
                let _ = file.file.sync_data();
            }
            return Outcome::Interrupted {
                part: self.staging.clone(),
                received: written,
            };
        }
        if written != total {
            if let Some(file) = &current
                && ending == Ending::Keep
                && file.file.sync_data().is_ok()
            {
                return Outcome::Interrupted {
                    part: self.staging.clone(),
                    received: written,
                };
            }
            return self.fail(format!(
                "incomplete: {} of {} arrived",
                super::human_bytes(written),
                super::human_bytes(total)
            ));
        }
        if !failed.is_empty() {
            return Outcome::FilesFailed {
                failed,
                files: self.manifest.files(),
            };
        }
        let files = self.manifest.files();
        let _ = platform::sync_dir(&self.staging);
        match parts::place_folder(&self.staging, &self.dir, &self.name) {
            Ok(path) => {
                self.part.discard();
                Outcome::FolderSaved {
                    path,
                    files,
                    bytes: written,
                }
            }
            // Every file is verified: keep them, so that the folder offered again
            // is placed without a byte sent.
            Err(err) => Outcome::Failed(format!(
                "storing the folder failed: {err}; its verified files are kept in {}",
                self.staging.display()
            )),
        }
    }

    fn part_size(&self) -> u64 {
        self.manifest.total_size
    }

    /// Opens file `index` to write from `held` on, having hashed what it holds.
    /// Nothing when every file has arrived.
    fn open(&self, index: usize, held: u64) -> io::Result<Option<Current>> {
        let Some(entry) = self.manifest.file(index) else {
            return Ok(None);
        };
        let Kind::File { size, sha256 } = entry.kind() else {
            unreachable!("only files are kept in the list");
        };
        let path = current_path(&self.staging, index);
        let mut hasher = Sha256::new();
        let file = if held > 0 {
            let mut file = platform::open_private_file(&path, true)?;
            let hashed = super::hash_into(&mut hasher, (&file).take(held), |_| {})?;
            if hashed != held {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the kept file is shorter than it was",
                ));
            }
            file.seek(SeekFrom::Start(held))?;
            file.set_len(held)?;
            file
        } else {
            let _ = std::fs::remove_file(&path);
            platform::create_private_file(&path)?
        };
        Ok(Some(Current {
            index,
            file,
            hasher,
            written: held,
            size,
            sha256,
        }))
    }

    /// Stores every complete file at `current` and moves on, so that empty files
    /// are stored as soon as the sequence reaches them.
    fn settle(&self, current: &mut Option<Current>, failed: &mut Vec<String>) -> io::Result<()> {
        while let Some(file) = current.take_if(|file| file.written == file.size) {
            let index = file.index;
            let entry = self.manifest.file(index).expect("a file being written");
            let actual: [u8; 32] = file.hasher.finalize().into();
            let arrived = current_path(&self.staging, index);
            if actual == file.sha256 {
                file.file.sync_all()?;
                std::fs::rename(&arrived, entry.path_in(&self.staging))?;
            } else {
                std::fs::remove_file(&arrived)?;
                failed.push(format!(
                    "{}: SHA-256 mismatch (expected {}, received {})",
                    entry.path(),
                    hex::encode(file.sha256),
                    hex::encode(actual)
                ));
            }
            *current = self.open(index + 1, 0)?;
        }
        Ok(())
    }

    /// Removes everything unless the data merely stopped, and says why.
    fn fail(self, reason: String) -> Outcome {
        let _ = std::fs::remove_dir_all(&self.staging);
        self.part.discard();
        Outcome::Failed(reason)
    }
}

/// Names `failed` files for a verdict: the first few, then how many more.
pub fn describe_failures(failed: &[String], files: usize) -> String {
    let mut text = format!("{} of {files} files failed: ", failed.len());
    text.push_str(&failed[..failed.len().min(MAX_FAILURES_NAMED)].join("; "));
    if failed.len() > MAX_FAILURES_NAMED {
        text.push_str(&format!("; and {} more", failed.len() - MAX_FAILURES_NAMED));
    }
    text
}
