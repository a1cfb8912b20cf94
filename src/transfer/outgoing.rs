//! Sending one file: hash it first (the offer carries the SHA-256), then stream it in
//! chunks from a thread of its own, refusing to send bytes that no longer match the
//! offer because the file changed in between.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::CacheUse;
use super::chunk_queue::{ChunkReceiver, ChunkSender, chunk_queue};
use super::hash_cache::SharedHashCache;
use crate::frame::{MAX_CHUNK_LEN, MAX_FILE_NAME_LEN};
use crate::platform;

/// A file measured and hashed, ready to offer.
#[derive(Debug, Clone)]
pub struct PreparedFile {
    pub path: PathBuf,
    /// The base name that goes on the wire.
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
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

    fn prepare_using(
        path: &Path,
        cache: Option<&SharedHashCache>,
        using: CacheUse,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<PreparedFile, SendError> {
        let io_error = |source| SendError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty() && name.len() <= MAX_FILE_NAME_LEN)
            .ok_or_else(|| SendError::BadName(path.to_owned()))?
            .to_owned();
        let file =
            platform::open_to_send(path).map_err(|source| SendError::opening(path, source))?;
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.is_file() {
            return Err(SendError::NotAFile(path.to_owned()));
        }
        let size = metadata.len();
        let hash = super::sha256_of(&file, size, cache, using, |hashed| progress(hashed, size))
            .map_err(io_error)?
            .ok_or_else(|| SendError::Changed(path.to_owned()))?;
        Ok(PreparedFile {
            path: path.to_owned(),
            name,
            size,
            sha256: hash.sha256,
            hash_was_cached: hash.cached,
            modified: metadata.modified().ok(),
        })
    }

    /// Streams the file's bytes from `offset` on a thread of its own. The queue
    /// ends after the last chunk; an `Err` instead means: stop and cancel.
    pub fn stream(&self, offset: u64) -> ChunkReceiver<Result<Vec<u8>, SendError>> {
        let prepared = self.clone();
        read_on_thread(&self.path, move |chunks| {
            prepared.send_chunks(offset, chunks)
        })
    }

    fn send_chunks(
        &self,
        offset: u64,
        chunks: &mut ChunkSender<Result<Vec<u8>, SendError>>,
    ) -> Result<(), SendError> {
        let io_error = |source| SendError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = platform::open_to_send(&self.path).map_err(io_error)?;
        if !self.unchanged(&file) {
            return Err(SendError::Changed(self.path.clone()));
        }
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).map_err(io_error)?;
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
            if remaining == 0 && !self.unchanged(&file) {
                return Err(SendError::Changed(self.path.clone()));
            }
            if chunks.blocking_send(Ok(chunk)).is_err() {
                return Ok(());
            }
        }
        Ok(())
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
) -> ChunkReceiver<Result<Vec<u8>, SendError>> {
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

    async fn collect(
        mut rx: ChunkReceiver<Result<Vec<u8>, SendError>>,
    ) -> Result<Vec<u8>, SendError> {
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
        assert_eq!(prepared.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
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
