//! Sending one file: stream it in chunks from a thread of its own, hashed first (for
//! an `Offer`, which carries the SHA-256) or as it is sent (for an `OfferUnhashed`,
//! whose `Digest` follows the data), refusing to send bytes that no longer match the
//! offer because the file changed in between.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::oneshot;

use super::CacheUse;
use super::chunk_queue::{ChunkReceiver, ChunkSender, chunk_queue};
use super::hash_cache::SharedHashCache;
use crate::frame::{MAX_CHUNK_LEN, MAX_FILE_NAME_LEN};
use crate::platform;

/// The bytes a resumed file's hash takes in at a time before its first chunk.
const PREFIX_STEP: u64 = 8 << 20;

/// The chunks of a file or folder being read, in order, or the failure that
/// stopped them.
pub type ReadChunks = ChunkReceiver<Result<Vec<u8>, SendError>>;

/// A file measured, and perhaps hashed, ready to offer.
#[derive(Debug, Clone)]
pub struct PreparedFile {
    pub path: PathBuf,
    /// The base name that goes on the wire.
    pub name: String,
    pub size: u64,
    /// `None` until the file has been read: it is then hashed as it is sent.
    pub sha256: Option<[u8; 32]>,
    /// The SHA-256 came from the hash cache: the file was not read to offer it.
    pub hash_was_cached: bool,
    modified: Option<SystemTime>,
}

/// Why a file cannot be sent. All are local: nothing has been sent.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}; to send it as a message instead, type: /say transfer {}", .path.display(), .path.display())]
    Missing { path: PathBuf, source: io::Error },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("{} has no usable file name (it must be UTF-8, at most {MAX_FILE_NAME_LEN} bytes)", .0.display())]
    BadName(PathBuf),
    #[error("{} changed while it was being sent; the transfer was stopped", .0.display())]
    Changed(PathBuf),
    #[error("{} holds more than {} entries; send the folders inside it one by one", .0.display(), super::manifest::MAX_ENTRIES)]
    TooManyEntries(PathBuf),
    #[error("{}: its list of paths, sizes and hashes would be more than {} bytes; send the folders inside it one by one", .0.display(), super::manifest::MAX_MANIFEST_LEN)]
    ManifestTooLong(PathBuf),
    #[error(
        "the peer's chat is too old to receive folders (protocol version {0}); send the files inside, or ask it to update"
    )]
    FoldersUnsupported(u16),
    #[error("hashing stopped: {0}")]
    Stopped(String),
}

impl SendError {
    /// For `map_err`: an I/O failure on `path`, which is copied only if one comes.
    pub(super) fn io_at(path: &Path) -> impl Fn(io::Error) -> SendError + Copy + '_ {
        move |source| SendError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Opening `path`, the user's own, failed: missing, or otherwise unreadable.
    pub(super) fn opening(path: &Path, source: io::Error) -> SendError {
        let path = path.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => SendError::Missing { path, source },
            _ => SendError::Io { path, source },
        }
    }
}

impl PreparedFile {
    /// Checks that `path` is a readable regular file and hashes it, calling
    /// `progress` with the bytes hashed so far, unless `cache` knows the hash of this
    /// file as it is. Blocking: run it off the async threads.
    pub fn prepare(
        path: &Path,
        cache: Option<&SharedHashCache>,
        progress: impl FnMut(u64, u64),
    ) -> Result<PreparedFile, SendError> {
        Self::prepare_using(path, cache, CacheUse::LookUp, progress)
    }

    /// Like [`PreparedFile::prepare`], but always reads and hashes the file, and
    /// keeps the new hash in `cache` in place of the one it held.
    pub fn prepare_afresh(
        path: &Path,
        cache: Option<&SharedHashCache>,
        progress: impl FnMut(u64, u64),
    ) -> Result<PreparedFile, SendError> {
        Self::prepare_using(path, cache, CacheUse::Refresh, progress)
    }

    /// Checks that `path` is a readable regular file, and takes its SHA-256 from
    /// `cache` if it knows the file as it is, without reading it. Blocking: run it
    /// off the async threads.
    pub fn measure(
        path: &Path,
        cache: Option<&SharedHashCache>,
    ) -> Result<PreparedFile, SendError> {
        let (mut prepared, file) = Self::open(path)?;
        prepared.sha256 = platform::file_stamp(&file)
            .ok()
            .and_then(|stamp| cache?.lock().ok()?.get(&stamp));
        prepared.hash_was_cached = prepared.sha256.is_some();
        Ok(prepared)
    }

    fn prepare_using(
        path: &Path,
        cache: Option<&SharedHashCache>,
        using: CacheUse,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<PreparedFile, SendError> {
        let (mut prepared, file) = Self::open(path)?;
        let size = prepared.size;
        let hash = super::sha256_of(&file, size, cache, using, |hashed| progress(hashed, size))
            .map_err(SendError::io_at(path))?
            .ok_or_else(|| SendError::Changed(path.to_owned()))?;
        prepared.sha256 = Some(hash.sha256);
        prepared.hash_was_cached = hash.cached;
        Ok(prepared)
    }

    /// Opens `path`, which must be a regular file with a name that can go on the
    /// wire: the file measured, not yet hashed.
    fn open(path: &Path) -> Result<(PreparedFile, File), SendError> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty() && name.len() <= MAX_FILE_NAME_LEN)
            .ok_or_else(|| SendError::BadName(path.to_owned()))?
            .to_owned();
        let file =
            platform::open_to_send(path).map_err(|source| SendError::opening(path, source))?;
        let metadata = file.metadata().map_err(SendError::io_at(path))?;
        if !metadata.is_file() {
            return Err(SendError::NotAFile(path.to_owned()));
        }
        let prepared = PreparedFile {
            path: path.to_owned(),
            name,
            size: metadata.len(),
            sha256: None,
            hash_was_cached: false,
            modified: metadata.modified().ok(),
        };
        Ok((prepared, file))
    }

    /// Streams the file's bytes from `offset` on a thread of its own. The queue
    /// ends after the last chunk; an `Err` instead means: stop and cancel.
    pub fn stream(&self, offset: u64) -> ReadChunks {
        let prepared = self.clone();
        read_on_thread(&self.path, move |chunks| {
            let mut file = prepared.open_unchanged()?;
            prepared.send_chunks(&mut file, offset, chunks, None)?;
            Ok(())
        })
    }

    /// Streams the file's bytes from `offset` as [`PreparedFile::stream`] does, and
    /// hashes the whole file meanwhile (first the bytes before `offset`): its
    /// SHA-256 comes once the last chunk is queued, and is kept in `cache`. The
    /// queue ends with an `Err` instead if the file changed, even after the last
    /// chunk: its `Digest` must not vouch for bytes that are no longer the file's.
    pub fn stream_hashing(
        &self,
        offset: u64,
        cache: Option<SharedHashCache>,
    ) -> (ReadChunks, oneshot::Receiver<[u8; 32]>) {
        let (digest, hashed) = oneshot::channel();
        let prepared = self.clone();
        let chunks = read_on_thread(&self.path, move |chunks| {
            let io_error = SendError::io_at(&prepared.path);
            let mut file = prepared.open_unchanged()?;
            let stamp = platform::file_stamp(&file).map_err(io_error)?;
            let hashed_at = std::time::SystemTime::now();
            let mut hasher = Sha256::new();
            // In steps, so that a connection lost meanwhile stops it.
            let mut prefix = (&file).take(offset);
            let mut hashed = 0;
            while hashed < offset && !chunks.is_closed() {
                let step = (&mut prefix).take(PREFIX_STEP);
                match super::hash_into(&mut hasher, step, |_| {}).map_err(io_error)? {
                    0 => return Err(SendError::Changed(prepared.path.clone())),
                    read => hashed += read,
                }
            }
            if !prepared.send_chunks(&mut file, offset, chunks, Some(&mut hasher))? {
                return Ok(());
            }
            if platform::file_stamp(&file).map_err(io_error)? != stamp {
                return Err(SendError::Changed(prepared.path.clone()));
            }
            let sha256: [u8; 32] = hasher.finalize().into();
            if let Some(mut cache) = cache.as_ref().and_then(|cache| cache.lock().ok()) {
                cache.insert(stamp, sha256, hashed_at);
            }
            let _ = digest.send(sha256);
            Ok(())
        });
        (chunks, hashed)
    }

    /// The file, opened again to be sent, if it still looks as it did when measured.
    fn open_unchanged(&self) -> Result<File, SendError> {
        let file = platform::open_to_send(&self.path).map_err(SendError::io_at(&self.path))?;
        if !self.unchanged(&file) {
            return Err(SendError::Changed(self.path.clone()));
        }
        Ok(file)
    }

    /// Queues the bytes of `file` from `offset` on, each also fed to `hasher` if
    /// there is one. False if the queue's other end went away first.
    fn send_chunks(
        &self,
        file: &mut File,
        offset: u64,
        chunks: &mut ChunkSender<Result<Vec<u8>, SendError>>,
        mut hasher: Option<&mut Sha256>,
    ) -> Result<bool, SendError> {
        let io_error = SendError::io_at(&self.path);
        io::Seek::seek(file, io::SeekFrom::Start(offset)).map_err(io_error)?;
        let mut remaining = self.size - offset.min(self.size);
        while remaining > 0 {
            let want = MAX_CHUNK_LEN.min(remaining as usize);
            let mut chunk = vec![0u8; want];
            if let Err(err) = file.read_exact(&mut chunk) {
                return Err(match err.kind() {
                    io::ErrorKind::UnexpectedEof => SendError::Changed(self.path.clone()),
                    _ => io_error(err),
                });
            }
            remaining -= want as u64;
            if remaining == 0 && !self.unchanged(file) {
                return Err(SendError::Changed(self.path.clone()));
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            if chunks.blocking_send(Ok(chunk)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Size and modification time as when hashed: cheap, and enough to catch an
    /// edit; the receiver's hash check catches anything subtler.
    fn unchanged(&self, file: &File) -> bool {
        file.metadata()
            .is_ok_and(|now| now.len() == self.size && now.modified().ok() == self.modified)
    }
}

/// Chunks of a file, or of a folder's files, that `read` sends from a thread of
/// its own. Its failure, or a failure to start the thread, is the last item.
pub(super) fn read_on_thread(
    path: &Path,
    read: impl FnOnce(&mut ChunkSender<Result<Vec<u8>, SendError>>) -> Result<(), SendError>
    + Send
    + 'static,
) -> ReadChunks {
    let (mut chunks, rx) = chunk_queue();
    let started = std::thread::Builder::new()
        .name("chat-read".into())
        .spawn(move || {
            if let Err(err) = read(&mut chunks) {
                let _ = chunks.blocking_send(Err(err));
            }
        });
    if let Err(source) = started {
        let (mut failed, rx) = chunk_queue();
        let path = path.to_owned();
        let _ = failed.blocking_send(Err(SendError::Io { path, source }));
        return rx;
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    async fn collect(mut rx: ReadChunks) -> Result<Vec<u8>, SendError> {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            assert!((1..=MAX_CHUNK_LEN).contains(&chunk.len()));
            all.extend(chunk);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn hashes_then_streams_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut last = (0, 0);
        let prepared =
            PreparedFile::prepare(&path, None, |done, total| last = (done, total)).unwrap();
        assert_eq!(last, (200_000, 200_000));
        assert_eq!(prepared.name, "data.bin");
        assert_eq!(prepared.sha256, Some(Sha256::digest(&data).into()));
        assert_eq!(collect(prepared.stream(0)).await.unwrap(), data);
    }

    #[tokio::test]
    async fn refuses_folders_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            PreparedFile::prepare(dir.path(), None, |_, _| {}),
            Err(SendError::NotAFile(_) | SendError::BadName(_))
        ));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            PreparedFile::prepare(&sub, None, |_, _| {}),
            Err(SendError::NotAFile(_))
        ));
        assert!(matches!(
            PreparedFile::prepare(&dir.path().join("missing"), None, |_, _| {}),
            Err(SendError::Missing { .. })
        ));
    }

    #[test]
    fn a_fifo_in_place_of_the_file_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        if !crate::platform::testing::make_fifo(&path) {
            println!("SKIPPED: this system has no FIFOs");
            return;
        }
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(PreparedFile::prepare(&path, None, |_, _| {}));
        });
        let prepared = outcome
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening the FIFO waited for a writer");
        assert!(
            matches!(prepared, Err(SendError::NotAFile(_))),
            "{prepared:?}"
        );
    }

    #[tokio::test]
    async fn a_file_changed_after_hashing_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moving.txt");
        std::fs::write(&path, b"original").unwrap();
        let prepared = PreparedFile::prepare(&path, None, |_, _| {}).unwrap();
        std::fs::write(&path, b"original plus more").unwrap();
        assert!(matches!(
            collect(prepared.stream(0)).await,
            Err(SendError::Changed(_))
        ));
    }
}
