//! Receiving a folder whose manifest has been checked: its files' bytes arrive as
//! one sequence, in manifest order. A disk thread cuts the sequence into the files,
//! checks each by its own size and SHA-256, and builds the tree in a private staging
//! folder (see [`super::staging`]); the folder takes its final name only when every
//! file in it is verified and durable.
//!
//! Durability is paid once per batch, not once per file: each verified file's
//! write-back starts as it is complete, and one sync for all of them comes before
//! the folder takes its final name, or before the staging folder's note says how
//! much of it is durable (when the data stops, and every `CHECKPOINT_STEP` bytes of
//! one large file).
//!
//! The staging folder sits beside a part (see [`super::parts`]) named after the
//! folder and its manifest, whose lock makes it this transfer's alone. Verified
//! files stay there when the data stops, so the same folder offered again resumes
//! at the first file that is not yet verified, within that file at what of it is
//! durable.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::backlog::Backlog;
use super::chunk_queue::{ChunkReceiver, ChunkSender, arriving_queue};
use super::incoming::{
    Outcome, Overflow, ReceiveLimits, RefuseReason, Reservation, WRITE_BACK_STEP,
};
use super::manifest::{Checked, Kind};
use super::parts::{self, Meta, OwnedPart};
use super::staging::{self, Durability, Start, Synced};
use crate::platform;

/// Failed files named one by one in an outcome; the rest are counted.
const MAX_FAILURES_NAMED: usize = 20;

/// Files smaller than this have their write-back left to the one sync at the end
/// (or to the system's own write-back before it): starting it file by file costs a
/// request to the disk each, which for a tree of small files costs more than their
/// bytes do.
const WRITE_BACK_MIN: u64 = 1 << 20;

/// Bytes of one file between two checkpoints, each of which makes what has arrived
/// durable and notes it: a receiver killed in the middle of a large file resumes
/// within it, at the last checkpoint, at the cost of a sync or two per step.
const CHECKPOINT_STEP: u64 = 256 << 20;

/// The part meta of a folder: its name with a `/`, which no file name has, its
/// files' total size, and the SHA-256 of its manifest.
pub fn folder_meta(name: &str, size: u64, manifest: &[u8]) -> Meta {
    Meta {
        name: format!("{name}/"),
        size,
        sha256: Some(Sha256::digest(manifest).into()),
        sender: None,
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
        backlog: Arc<Backlog>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<IncomingFolder, RefuseReason> {
        Self::start_with(
            limits,
            meta,
            manifest,
            reservation,
            backlog,
            progress,
            platform::SyncBatch::new,
        )
    }

    /// [`IncomingFolder::start`], with the files' durability paid by what `batch`
    /// makes for the staging folder.
    fn start_with<D: Durability>(
        limits: &ReceiveLimits,
        meta: Meta,
        manifest: Arc<Checked>,
        reservation: Reservation,
        backlog: Arc<Backlog>,
        progress: impl FnMut(u64) + Send + 'static,
        batch: impl FnOnce(&Path) -> io::Result<D>,
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
        let laid_out = platform::ensure_private_dir(&staging)
            .and_then(|()| batch(&staging))
            .and_then(|mut batch| Ok((staging::prepare(&staging, &manifest, &mut batch)?, batch)));
        let (start, batch) = match laid_out {
            Ok(laid_out) => laid_out,
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
        let (chunks, chunks_rx) = arriving_queue(backlog);
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
            unsynced: start.next_file > start.synced.files,
            synced: start.synced,
            start,
            ending: ending.clone(),
            batch,
            first_failed: None,
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

/// The disk thread's work: it owns the part (and so the staging folder) throughout.
struct FolderJob<D> {
    part: OwnedPart,
    staging: PathBuf,
    dir: PathBuf,
    name: String,
    manifest: Arc<Checked>,
    start: Start,
    ending: EndingFlag,
    batch: D,
    /// What the staging folder's note says is durable.
    synced: Synced,
    /// Whether files joined the batch since it last synced.
    unsynced: bool,
    /// The first file that failed its check: no file from it on is noted durable.
    first_failed: Option<usize>,
}

/// The file being written now.
struct Current {
    index: usize,
    file: File,
    hasher: Sha256,
    written: u64,
    size: u64,
    sha256: [u8; 32],
    /// Bytes whose write-back has been started.
    written_back: u64,
    /// Bytes made durable and noted at the last checkpoint.
    checkpointed: u64,
}

impl<D: Durability> FolderJob<D> {
    fn run(mut self, mut chunks: ChunkReceiver<Vec<u8>>, mut progress: impl FnMut(u64)) -> Outcome {
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
                let stored = self
                    .settle(&mut current, &mut failed)
                    .and_then(|()| self.keep_up(current.as_mut()));
                if let Err(err) = stored {
                    return self.fail(format!("storing a file failed: {err}"));
                }
            }
            progress(written);
        }
        let total = self.manifest.total_size;
        let ending = self.ending.get();
        if ending == Ending::Remove {
            return self.fail("the sender broke the protocol".into());
        }
        if ending == Ending::Leave || (written != total && ending == Ending::Keep) {
            let kept = self.checkpoint(current.as_ref());
            if ending == Ending::Leave || kept.is_ok() {
                return Outcome::Interrupted {
                    part: self.staging.clone(),
                    received: written,
                };
            }
        }
        if written != total {
            return self.fail(format!(
                "incomplete: {} of {} arrived",
                super::human_bytes(written),
                super::human_bytes(total)
            ));
        }
        if !failed.is_empty() {
            // The verified files are kept for the folder sent again.
            let _ = self.checkpoint(None);
            return Outcome::FilesFailed {
                failed,
                files: self.manifest.files(),
            };
        }
        self.place(written)
    }

    /// Every file is verified: makes them all durable, then gives the folder its
    /// final name.
    fn place(mut self, written: u64) -> Outcome {
        let files = self.manifest.files();
        let kept = |err: io::Error, staging: &Path| {
            Outcome::Failed(format!(
                "storing the folder failed: {err}; its verified files are kept in {}",
                staging.display()
            ))
        };
        if let Err(err) = Synced::remove(&self.staging).and_then(|()| self.batch.sync()) {
            return kept(err, &self.staging);
        }
        match parts::place_folder(&self.staging, &self.dir, &self.name) {
            Ok(path) => {
                self.part.discard();
                Outcome::FolderSaved {
                    path,
                    files,
                    bytes: written,
                }
            }
            // Every file is verified and durable: keep them, so that the folder
            // offered again is placed without a byte sent.
            Err(err) => {
                let _ = Synced { files, partial: 0 }.write(&self.staging);
                kept(err, &self.staging)
            }
        }
    }

    /// Makes everything verified so far durable, and what has arrived of `current`,
    /// then notes it in the staging folder.
    fn checkpoint(&mut self, current: Option<&Current>) -> io::Result<()> {
        if self.unsynced {
            self.batch.sync()?;
            self.unsynced = false;
        }
        let synced = match (self.first_failed, current) {
            (Some(failed), _) => Synced {
                files: failed,
                partial: 0,
            },
            (None, Some(file)) => {
                file.file.sync_data()?;
                Synced {
                    files: file.index,
                    partial: file.written,
                }
            }
            (None, None) => Synced {
                files: self.manifest.files(),
                partial: 0,
            },
        };
        if synced != self.synced {
            synced.write(&self.staging)?;
            self.synced = synced;
        }
        Ok(())
    }

    /// Starts the write-back of a large file as it grows, and makes it durable at
    /// each checkpoint.
    fn keep_up(&mut self, current: Option<&mut Current>) -> io::Result<()> {
        let Some(file) = current else {
            return Ok(());
        };
        if file.written - file.written_back >= WRITE_BACK_STEP {
            platform::start_write_back(
                &file.file,
                file.written_back,
                file.written - file.written_back,
            );
            file.written_back = file.written;
        }
        if file.written - file.checkpointed >= CHECKPOINT_STEP {
            self.checkpoint(Some(file))?;
            file.checkpointed = file.written;
        }
        Ok(())
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
        let path = entry.path_in(&self.staging);
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
            match platform::create_private_file(&path) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    std::fs::remove_file(&path)?;
                    platform::create_private_file(&path)?
                }
                created => created?,
            }
        };
        Ok(Some(Current {
            index,
            file,
            hasher,
            written: held,
            size,
            sha256,
            written_back: held,
            checkpointed: held,
        }))
    }

    /// Checks every complete file at `current` and moves on, so that empty files
    /// are checked as soon as the sequence reaches them. A verified file joins the
    /// batch; one that is not is removed.
    fn settle(
        &mut self,
        current: &mut Option<Current>,
        failed: &mut Vec<String>,
    ) -> io::Result<()> {
        while let Some(file) = current.take_if(|file| file.written == file.size) {
            let index = file.index;
            let entry = self.manifest.file(index).expect("a file being written");
            let actual: [u8; 32] = file.hasher.finalize().into();
            let path = entry.path_in(&self.staging);
            if actual == file.sha256 {
                if file.size >= WRITE_BACK_MIN {
                    let rest = file.size - file.written_back;
                    platform::start_write_back(&file.file, file.written_back, rest);
                }
                self.batch.add_file(&file.file, &path)?;
                self.unsynced = true;
            } else {
                drop(file.file);
                std::fs::remove_file(&path)?;
                self.first_failed.get_or_insert(index);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::manifest::{self, Entry};
    use crate::transfer::name::NameRules;
    use std::sync::Mutex;

    /// What a folder's disk thread asked of its batch, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Step {
        File(PathBuf),
        /// A sync, with whether the folder had its final name then, and what the
        /// staging folder's note said.
        Sync {
            placed: bool,
            noted: Synced,
        },
    }

    /// A batch that records what it is asked and syncs nothing: the order of the
    /// steps is what these tests check.
    struct Recorder {
        steps: Arc<Mutex<Vec<Step>>>,
        staging: PathBuf,
        placed: PathBuf,
    }

    impl Durability for Recorder {
        fn add_file(&mut self, _: &File, path: &Path) -> io::Result<()> {
            self.steps.lock().unwrap().push(Step::File(path.to_owned()));
            Ok(())
        }

        fn add_folder(&mut self, _: &Path) {}

        fn sync(&mut self) -> io::Result<()> {
            let step = Step::Sync {
                placed: self.placed.exists(),
                noted: Synced::read(&self.staging),
            };
            self.steps.lock().unwrap().push(step);
            Ok(())
        }
    }

    const FILES: [(&str, &[u8]); 5] = [
        ("a.txt", b"alpha"),
        ("sub/b.txt", b"bravo!"),
        ("sub/empty", b""),
        ("sub/c.txt", b"charlie"),
        ("z.bin", b"the last file"),
    ];

    fn entries() -> Vec<Entry> {
        manifest::entries_of(&FILES)
    }

    /// Every file's bytes, one after the other, as they travel.
    fn sequence() -> Vec<u8> {
        FILES
            .iter()
            .flat_map(|(_, data)| data.iter().copied())
            .collect()
    }

    /// Starts receiving folder `tree` (as [`FILES`] lists it) into `dir`, its
    /// batch recording into `steps`.
    async fn start(dir: &Path, steps: &Arc<Mutex<Vec<Step>>>) -> IncomingFolder {
        start_with(dir, &entries(), steps).await
    }

    async fn start_with(
        dir: &Path,
        entries: &[Entry],
        steps: &Arc<Mutex<Vec<Step>>>,
    ) -> IncomingFolder {
        let limits = ReceiveLimits::new(dir.to_owned(), None);
        let bytes = manifest::encode(entries);
        let total = entries
            .iter()
            .map(|entry| match entry.kind {
                Kind::File { size, .. } => size,
                Kind::Folder => 0,
            })
            .sum();
        let checked =
            manifest::check(&bytes, entries.len() as u32, total, NameRules::here()).unwrap();
        let meta = folder_meta("tree", total, &bytes);
        let reservation = limits.reserve(&meta).await.expect("a free slot");
        let (steps, placed) = (steps.clone(), dir.join("tree"));
        IncomingFolder::start_with(
            &limits,
            meta,
            Arc::new(checked),
            reservation,
            Arc::default(),
            |_| {},
            move |staging| {
                Ok(Recorder {
                    steps,
                    staging: staging.to_owned(),
                    placed,
                })
            },
        )
        .unwrap()
    }

    /// Sends `bytes` in chunks of `chunk`, as they may straddle files.
    async fn send(folder: &mut IncomingFolder, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk) {
            assert_eq!(folder.write(piece.to_vec()).await, Ok(None));
        }
    }

    fn staging_in(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir.join(parts::PARTS_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|ext| ext == "tree"))
            .expect("a staging folder")
    }

    /// The offset of file `index` in the folder's byte sequence.
    fn offset_of(index: usize) -> usize {
        FILES[..index].iter().map(|(_, data)| data.len()).sum()
    }

    fn steps_of(steps: &Arc<Mutex<Vec<Step>>>) -> Vec<Step> {
        std::mem::take(&mut *steps.lock().unwrap())
    }

    #[tokio::test]
    async fn every_file_joins_the_one_sync_before_the_folder_takes_its_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let steps = Arc::new(Mutex::new(Vec::new()));
        let mut folder = start(dir.path(), &steps).await;
        let staging = staging_in(dir.path());
        send(&mut folder, &sequence(), 4).await;
        let outcome = folder.end(Ending::Keep).await;
        let placed = dir.path().join("tree");
        assert_eq!(
            outcome,
            Outcome::FolderSaved {
                path: placed.clone(),
                files: FILES.len(),
                bytes: sequence().len() as u64,
            }
        );
        let mut expected: Vec<Step> = FILES
            .iter()
            .map(|(path, _)| Step::File(staging.join(path)))
            .collect();
        expected.push(Step::Sync {
            placed: false,
            noted: Synced::default(),
        });
        assert_eq!(steps_of(&steps), expected, "one sync, after every file");
        for (path, data) in FILES {
            assert_eq!(std::fs::read(placed.join(path)).unwrap(), data);
        }
        assert_eq!(
            crate::transfer::names_in(&placed),
            ["a.txt", "sub", "z.bin"]
        );
    }

    #[tokio::test]
    async fn a_large_file_is_synced_once_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let steps = Arc::new(Mutex::new(Vec::new()));
        let data: Vec<u8> = (0..3 * WRITE_BACK_STEP + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let entries = [Entry {
            path: "large.bin".into(),
            kind: Kind::File {
                size: data.len() as u64,
                sha256: Sha256::digest(&data).into(),
            },
        }];
        let mut folder = start_with(dir.path(), &entries, &steps).await;
        send(&mut folder, &data, 64 << 10).await;
        assert!(matches!(
            folder.end(Ending::Keep).await,
            Outcome::FolderSaved { .. }
        ));
        let syncs = steps_of(&steps)
            .into_iter()
            .filter(|step| matches!(step, Step::Sync { .. }))
            .count();
        assert_eq!(syncs, 1);
        assert_eq!(
            std::fs::read(dir.path().join("tree/large.bin")).unwrap(),
            data
        );
    }

    #[tokio::test]
    async fn a_stop_notes_only_what_was_synced_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let steps = Arc::new(Mutex::new(Vec::new()));
        let mut folder = start(dir.path(), &steps).await;
        let staging = staging_in(dir.path());
        let upto = offset_of(4) + 3;
        send(&mut folder, &sequence()[..upto], 4).await;
        let outcome = folder.end(Ending::Keep).await;
        assert_eq!(
            outcome,
            Outcome::Interrupted {
                part: staging.clone(),
                received: upto as u64,
            }
        );
        let steps = steps_of(&steps);
        assert_eq!(
            steps.last(),
            Some(&Step::Sync {
                placed: false,
                noted: Synced::default(),
            }),
            "the note comes after the sync: {steps:?}"
        );
        assert_eq!(
            steps.len(),
            5,
            "four verified files, then the sync: {steps:?}"
        );
        assert_eq!(
            Synced::read(&staging),
            Synced {
                files: 4,
                partial: 3,
            }
        );
    }

    #[tokio::test]
    async fn after_a_power_cut_files_past_the_note_are_checked_and_garbled_ones_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let steps = Arc::new(Mutex::new(Vec::new()));
        let all = sequence();

        // A first transfer stops in b.txt; a second one goes on to z.bin.
        let mut folder = start(dir.path(), &steps).await;
        let staging = staging_in(dir.path());
        send(&mut folder, &all[..offset_of(1) + 2], 3).await;
        assert!(matches!(
            folder.end(Ending::Keep).await,
            Outcome::Interrupted { .. }
        ));
        let noted = Synced::read(&staging);
        assert_eq!(
            noted,
            Synced {
                files: 1,
                partial: 2
            }
        );
        let mut folder = start(dir.path(), &steps).await;
        assert_eq!(folder.offset, offset_of(1) as u64 + 2);
        send(&mut folder, &all[offset_of(1) + 2..offset_of(4) + 4], 3).await;
        assert!(matches!(
            folder.end(Ending::Keep).await,
            Outcome::Interrupted { .. }
        ));
        assert_eq!(
            Synced::read(&staging),
            Synced {
                files: 4,
                partial: 4
            }
        );

        // The power goes before that second note reaches the disk: the first note
        // stands, c.txt is garbled, and z.bin holds bytes that never arrived.
        noted.write(&staging).unwrap();
        std::fs::write(staging.join("sub/c.txt"), b"CHARLIE").unwrap();
        std::fs::write(staging.join("z.bin"), b"the lXXXXXX").unwrap();
        steps_of(&steps);

        // b.txt and the empty file are checked again and kept; c.txt arrives again.
        let mut folder = start(dir.path(), &steps).await;
        assert_eq!(folder.offset, offset_of(3) as u64);
        send(&mut folder, &all[offset_of(3)..], 3).await;
        let placed = dir.path().join("tree");
        assert!(matches!(
            folder.end(Ending::Keep).await,
            Outcome::FolderSaved { path, .. } if path == placed
        ));
        for (path, data) in FILES {
            assert_eq!(std::fs::read(placed.join(path)).unwrap(), data, "{path}");
        }
        let steps = steps_of(&steps);
        let (last_sync, _) = steps
            .iter()
            .enumerate()
            .rfind(|(_, step)| matches!(step, Step::Sync { .. }))
            .unwrap();
        for path in ["sub/b.txt", "sub/empty", "sub/c.txt", "z.bin"] {
            let at = steps
                .iter()
                .position(|step| *step == Step::File(staging.join(path)));
            assert!(at.is_some_and(|at| at < last_sync), "{path}: {steps:?}");
        }
    }
}
