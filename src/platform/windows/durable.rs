//! [`SyncBatch`] on Windows: each file of the batch is flushed (`FlushFileBuffers`,
//! through a handle opened for it) one after the other at the end, rather than each
//! as it is complete. Names need nothing more: NTFS journals them, and a folder
//! cannot be flushed without write access to it (see [`super::sync_dir`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Files written one after another, made durable together by [`SyncBatch::sync`].
#[derive(Debug)]
pub struct SyncBatch {
    /// Where each file added since the last sync is.
    files: Vec<PathBuf>,
}

impl SyncBatch {
    /// A batch whose files and folders are all inside `top`.
    pub fn new(top: &Path) -> io::Result<SyncBatch> {
        let _ = top;
        Ok(SyncBatch { files: Vec::new() })
    }

    /// `file`, now complete at `path`, where it stays until the batch is synced.
    pub fn add_file(&mut self, file: &File, path: &Path) -> io::Result<()> {
        let _ = file;
        self.files.push(path.to_owned());
        Ok(())
    }

    /// A folder in which names of the batch are made: NTFS journals them.
    pub fn add_folder(&mut self, path: &Path) {
        let _ = path;
    }

    /// Makes every file added since the last sync durable, one flush each.
    pub fn sync(&mut self) -> io::Result<()> {
        for path in &self.files {
            OpenOptions::new().write(true).open(path)?.sync_all()?;
        }
        self.files.clear();
        Ok(())
    }
}

/// Starting a range's write-back early has no call of its own on Windows: the
/// cache manager's lazy writer does it.
pub fn start_write_back(file: &File, offset: u64, len: u64) {
    let _ = (file, offset, len);
}
