//! [`SyncBatch`] on Unix: the durability of many files paid once for all of them.
//! On Linux the caller starts the write-back of large files as they grow
//! ([`start_write_back`], `sync_file_range`), and one `syncfs` waits for all of it,
//! for the small files' bytes, and for every name made meanwhile.
//! macOS writes each file out to the drive as it is complete (`fsync`, which there
//! leaves the drive's cache alone), and one `F_BARRIERFSYNC` then orders all of it
//! before anything written after; the caller's next full sync (`F_FULLFSYNC`, which
//! [`super::sync_dir`] and `File::sync_all` are there) makes it durable. Other
//! systems `fsync` each file as it is complete and each folder at the end.

use std::fs::File;
use std::io;
use std::path::Path;

/// Files written one after another, and the folders their names are in, made
/// durable together by [`SyncBatch::sync`].
#[derive(Debug)]
pub struct SyncBatch {
    /// The batch's top folder, open from before its first file was written, so
    /// that `syncfs` on it reports any write-back error since.
    top: File,
    /// Folders whose names are synced at the end, where `syncfs` does not do it.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    folders: Vec<std::path::PathBuf>,
}

impl SyncBatch {
    /// A batch whose files and folders are all inside `top`.
    pub fn new(top: &Path) -> io::Result<SyncBatch> {
        Ok(SyncBatch {
            top: File::open(top)?,
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            folders: Vec::new(),
        })
    }

    /// `file`, now complete at `path`. On Linux nothing is done yet: the caller
    /// starts the write-back of a large file ([`start_write_back`]), and `syncfs`
    /// finds the rest. Elsewhere the file is written out now.
    pub fn add_file(&mut self, file: &File, path: &Path) -> io::Result<()> {
        let _ = path;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = file;
            Ok(())
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            rustix::fs::fsync(file).map_err(io::Error::from)
        }
    }

    /// A folder in which names of the batch are made (the top one included).
    pub fn add_folder(&mut self, path: &Path) {
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        self.folders.push(path.to_owned());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = path;
    }

    /// Makes every file added so far, and every name in the batch's folders,
    /// reach the disk before anything written after this returns: durable at once
    /// on Linux (`syncfs`) and on systems without a barrier (`fsync`), and on macOS
    /// with the caller's next full sync. The batch may go on and sync again.
    pub fn sync(&mut self) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            rustix::fs::syncfs(&self.top)?;
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            for folder in &self.folders {
                rustix::fs::fsync(File::open(folder)?)?;
            }
            barrier(&self.top)?;
        }
        Ok(())
    }
}

/// Starts writing `len` bytes of `file` from `offset` (all of it from there if
/// `len` is 0) to the disk without waiting for them (Linux); elsewhere nothing.
/// Only a hint: a failure shows in the sync that follows.
pub fn start_write_back(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (offset, len) = (
            i64::try_from(offset).unwrap_or(i64::MAX),
            i64::try_from(len).unwrap_or(0),
        );
        // SAFETY: a system call on a descriptor `file` keeps open; it touches no memory.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Orders everything written so far before anything written after: the barrier
/// `F_BARRIERFSYNC` on Apple's systems, where it is supported (`F_FULLFSYNC`
/// otherwise); a plain `fsync` elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn barrier(top: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a system call on a descriptor `top` keeps open; it touches no memory.
        if unsafe { libc::fcntl(top.as_raw_fd(), libc::F_BARRIERFSYNC) } != -1 {
            return Ok(());
        }
        rustix::fs::fcntl_fullfsync(top).map_err(io::Error::from)
    }
    #[cfg(not(target_vendor = "apple"))]
    rustix::fs::fsync(top).map_err(io::Error::from)
}
