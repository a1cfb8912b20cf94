//! [`Folder`] on Unix: a directory descriptor, and every name inside it opened
//! relative to it (`openat`) with `O_NOFOLLOW`, so that a path is never resolved
//! again from its text once the walk has started.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, fstat, openat, statat};
use rustix::io::Errno;

use crate::platform::{EntryKind, FileId, FolderEntry};

/// A folder held open: what it lists, and what is opened in it, is in this very
/// folder, whatever is renamed or replaced around it meanwhile.
#[derive(Debug)]
pub struct Folder(OwnedFd);

const FOLDER: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Reading, never following a final link, never waiting on a FIFO or device, and
/// never making a terminal ours.
const FILE: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

impl Folder {
    /// Opens the folder at `path`, whose last component must be a folder and not a
    /// link to one; `None` if it is anything else.
    pub fn open(path: &std::path::Path) -> io::Result<Option<Folder>> {
        refused_as_none(openat(CWD, path, FOLDER, Mode::empty()), Errno::NOTDIR)
            .map(|fd| fd.map(Folder))
    }

    /// Which folder this is.
    pub fn id(&self) -> io::Result<FileId> {
        let stat = fstat(&self.0)?;
        Ok(FileId {
            device: stat.st_dev,
            inode: stat.st_ino,
        })
    }

    /// What the folder holds, in no particular order. A name removed while it is
    /// listed is left out.
    pub fn entries(&self) -> io::Result<Vec<FolderEntry>> {
        let mut entries = Vec::new();
        for entry in Dir::read_from(&self.0)? {
            let name = entry?.file_name().to_bytes().to_owned();
            if name == b"." || name == b".." {
                continue;
            }
            let stat = match statat(&self.0, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(err) => return Err(err.into()),
            };
            let kind = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => EntryKind::Folder,
                FileType::RegularFile => EntryKind::File {
                    size: u64::try_from(stat.st_size).unwrap_or(0),
                },
                FileType::Symlink => EntryKind::Link,
                _ => EntryKind::Other,
            };
            entries.push(FolderEntry {
                name: OsString::from(OsStr::from_bytes(&name)),
                kind,
            });
        }
        Ok(entries)
    }

    /// Opens the folder `name` in this one; `None` if `name` is now anything else,
    /// a link to a folder included.
    pub fn folder(&self, name: &OsStr) -> io::Result<Option<Folder>> {
        refused_as_none(openat(&self.0, name, FOLDER, Mode::empty()), Errno::NOTDIR)
            .map(|fd| fd.map(Folder))
    }

    /// Opens the regular file `name` in this one to read it; `None` if `name` is
    /// now anything else: a link, a folder, a FIFO or a device.
    pub fn file(&self, name: &OsStr) -> io::Result<Option<File>> {
        let Some(fd) = refused_as_none(openat(&self.0, name, FILE, Mode::empty()), Errno::LOOP)?
        else {
            return Ok(None);
        };
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        Ok(Some(File::from(fd)))
    }
}

/// An open refused because the name is a link (`O_NOFOLLOW`), or is not of the kind
/// asked for (`also`), is `None`; any other failure is an error.
fn refused_as_none(
    opened: rustix::io::Result<OwnedFd>,
    also: Errno,
) -> io::Result<Option<OwnedFd>> {
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(err) if err == Errno::LOOP || err == also || is_link_refusal(err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// FreeBSD and DragonFly refuse to open a link under `O_NOFOLLOW` with `EMLINK`.
fn is_link_refusal(err: Errno) -> bool {
    cfg!(any(target_os = "freebsd", target_os = "dragonfly")) && err == Errno::MLINK
}
