//! [`Folder`] on Windows: a folder held open without `FILE_SHARE_DELETE`, with
//! every folder above it up to where the walk began, so that none of them can be
//! renamed, removed or replaced by a link while it is held; names inside are then
//! opened by path without following a reparse point (a link or junction).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use windows_sys::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_LIST_DIRECTORY, FILE_READ_ATTRIBUTES, FILE_SHARE_READ,
    FILE_SHARE_WRITE, FILE_TYPE_DISK, GetFileType, SYNCHRONIZE,
};

use super::handle_information;
use crate::platform::{EntryKind, FolderEntry};

/// A folder held open: what it lists, and what is opened in it, is in this very
/// folder, whatever is attempted around it meanwhile.
#[derive(Debug, Clone)]
pub struct Folder(Arc<Held>);

#[derive(Debug)]
struct Held {
    path: PathBuf,
    _handle: File,
    /// Holding the folder above keeps the whole path from the walk's start fixed.
    _above: Option<Folder>,
}

impl Folder {
    /// Opens the folder at `path`, whose last component must be a folder and not a
    /// link or junction to one; `None` if it is anything else.
    pub fn open(path: &Path) -> io::Result<Option<Folder>> {
        Self::hold(path.to_owned(), None)
    }

    fn hold(path: PathBuf, above: Option<Folder>) -> io::Result<Option<Folder>> {
        let handle = OpenOptions::new()
            .access_mode(FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(&path)?;
        let attributes = handle_information(&handle)?.dwFileAttributes;
        if attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0
            || attributes & FILE_ATTRIBUTE_DIRECTORY == 0
        {
            return Ok(None);
        }
        Ok(Some(Folder(Arc::new(Held {
            path,
            _handle: handle,
            _above: above,
        }))))
    }

    /// What the folder holds, in no particular order. A name removed while it is
    /// listed is left out.
    pub fn entries(&self) -> io::Result<Vec<FolderEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.0.path)? {
            let entry = entry?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let kind = if metadata.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
                EntryKind::Link
            } else if metadata.is_dir() {
                EntryKind::Folder
            } else if metadata.is_file() {
                EntryKind::File {
                    size: metadata.len(),
                }
            } else {
                EntryKind::Other
            };
            entries.push(FolderEntry {
                name: entry.file_name(),
                kind,
            });
        }
        Ok(entries)
    }

    /// Opens the folder `name` in this one; `None` if `name` is now anything else,
    /// a link or junction to a folder included.
    pub fn folder(&self, name: &OsStr) -> io::Result<Option<Folder>> {
        Self::hold(self.0.path.join(name), Some(self.clone()))
    }

    /// Opens the regular file `name` in this one to read it; `None` if `name` is
    /// now anything else: a link, a folder or a device.
    pub fn file(&self, name: &OsStr) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.0.path.join(name))?;
        // SAFETY: the handle is open for as long as `file` lives.
        if unsafe { GetFileType(file.as_raw_handle()) } != FILE_TYPE_DISK {
            return Ok(None);
        }
        let attributes = handle_information(&file)?.dwFileAttributes;
        if attributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY) != 0 {
            return Ok(None);
        }
        Ok(Some(file))
    }
}
