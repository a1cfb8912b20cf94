//! Every call whose form differs between operating systems: private files and
//! folders, opening without following links, walking a folder by handles, renames
//! that never replace, durability paid once for many files, file identity, free
//! space, sockets, the console and stop signals. Both sides offer the
//! same functions with the same contract (the tests below hold either to it); the
//! rest of the code stays free of `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

use tokio::sync::Notify;

/// What others than a file's owner must not be able to do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read it or change it: a private key.
    Read,
    /// Change it: what decides whom we trust.
    Change,
}

/// Others have more access than they should: what the permissions say, in the
/// system's own terms, and the command that closes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub permissions: String,
    pub fix: String,
}

/// Why the process is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C, from the system or from the interactive front end.
    Interrupt,
    /// The system or the user's session ends the process (SIGTERM, a closed console).
    Terminate,
}

static SELF_INTERRUPTS: Notify = Notify::const_new();

/// Delivers Ctrl-C to [`Stops`] as the system would outside raw mode, so that one
/// handler serves the key and the signal.
pub fn interrupt_self() {
    SELF_INTERRUPTS.notify_one();
}

/// Every request to stop, from the system or from [`interrupt_self`].
pub struct Stops {
    system: Option<SystemStops>,
}

impl Stops {
    /// Starts listening; where the system's signals cannot be had, only
    /// [`interrupt_self`] is heard.
    pub fn listen() -> Self {
        Self {
            system: SystemStops::listen().ok(),
        }
    }

    pub async fn next(&mut self) -> Stop {
        let system = async {
            match self.system.as_mut() {
                Some(system) => system.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            stop = system => stop,
            () = SELF_INTERRUPTS.notified() => Stop::Interrupt,
        }
    }
}

/// Which file or folder something is on its system: the device (the volume on
/// Windows) and the inode (the file index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

/// One name in a [`Folder`], as it was when listed; a link is listed as a link,
/// never as what it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    pub name: std::ffi::OsString,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Folder,
    File {
        size: u64,
    },
    /// A symbolic link; on Windows also a junction (any name-surrogate reparse point).
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// How long a silently dead connection may go unnoticed.
pub const DEAD_PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// What identifies a file's content without reading it: where it lives, its size,
/// and when it or its metadata last changed, in nanoseconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified_ns: i128,
    pub changed_ns: i128,
}

impl FileStamp {
    pub fn id(&self) -> FileId {
        FileId {
            device: self.device,
            inode: self.inode,
        }
    }

    /// Whether the file last changed at least `margin` before `at`.
    pub fn settled_before(&self, at: std::time::SystemTime, margin: std::time::Duration) -> bool {
        let at_ns = match at.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => since.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        let latest = self.modified_ns.max(self.changed_ns);
        latest.saturating_add(margin.as_nanos() as i128) <= at_ns
    }
}

/// The contract each side keeps, in terms that hold on every system; the setup
/// that differs (opening a file to others, making links) is in each side's `testing`.
#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::path::PathBuf;

    use super::testing::{make_fifo, open_to_others, symlink_dir, symlink_file};
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn bound_unsent_sets_the_kernels_limit_on_unsent_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        bound_unsent(&socket, 128 * 1024).unwrap();
        let lowat = socket2::SockRef::from(&socket).tcp_notsent_lowat().unwrap();
        assert_eq!(lowat, 128 * 1024);
    }

    #[test]
    fn a_private_file_is_private_until_opened_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        create_private_file(&path)
            .unwrap()
            .write_all(b"key")
            .unwrap();
        for access in [Access::Read, Access::Change] {
            assert_eq!(open_secret(&path, access).unwrap().1, None);
        }
        open_to_others(&path);
        for access in [Access::Read, Access::Change] {
            let (mut file, exposure) = open_secret(&path, access).unwrap();
            let exposure = exposure.expect("others can get in");
            assert!(
                exposure.fix.contains(&*path.to_string_lossy()),
                "{exposure:?}"
            );
            let mut read = String::new();
            file.read_to_string(&mut read).unwrap();
            assert_eq!(read, "key");
        }
    }

    #[test]
    fn creating_a_private_file_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("there");
        std::fs::write(&path, b"old").unwrap();
        let err = create_private_file(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn a_no_replace_rename_refuses_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to, free) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let err = rename_no_replace(&from, &to).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&from).unwrap(), b"new");
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        rename_no_replace(&from, &free).unwrap();
        assert!(!from.exists());
        assert_eq!(std::fs::read(&free).unwrap(), b"new");
    }

    #[test]
    fn a_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("target"), dir.path().join("link"));
        create_private_file(&target).unwrap();
        symlink_file(&target, &link);
        assert!(open_private_file(&link, false).is_err());
        assert!(open_private_file(&link, true).is_err());
        assert!(open_secret(&link, Access::Read).is_err());
        assert!(create_private_file(&link).is_err());
        let file = open_private_file(&target, false).unwrap();
        assert!(is_same_file(&file, &target).unwrap());
        assert!(!is_same_file(&file, &link).unwrap());
        assert!(!is_same_file(&file, &dir.path().join("missing")).unwrap());
    }

    #[test]
    fn a_file_with_a_second_hard_link_is_not_ours_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        create_private_file(&path).unwrap();
        assert!(open_private_file(&path, true).is_ok());
        std::fs::hard_link(&path, dir.path().join("elsewhere")).unwrap();
        assert!(open_private_file(&path, true).is_err());
    }

    #[test]
    fn a_held_lock_blocks_a_second_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let first = create_private_file(&path).unwrap();
        first.try_lock().unwrap();
        let second = open_private_file(&path, true).unwrap();
        assert!(matches!(
            second.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        second.try_lock().unwrap();
    }

    #[test]
    fn a_private_folder_is_made_once_and_refused_when_opened_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("private");
        ensure_private_dir(&folder).unwrap();
        ensure_private_dir(&folder).unwrap();
        assert_eq!(folder_exposure(&folder).unwrap(), None);
        create_private_file(&folder.join("inside")).unwrap();
        assert_eq!(
            open_secret(&folder.join("inside"), Access::Read).unwrap().1,
            None
        );
        open_to_others(&folder);
        let err = ensure_private_dir(&folder).unwrap_err();
        assert!(err.to_string().contains("open to other users"), "{err}");
        assert!(folder_exposure(&folder).unwrap().is_some());
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(ensure_private_dir(&file).is_err());
    }

    #[test]
    fn a_stamp_names_the_file_and_follows_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamped");
        std::fs::write(&path, b"one").unwrap();
        let first = file_stamp(&std::fs::File::open(&path).unwrap()).unwrap();
        let again = file_stamp(&std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.size, 3);
        let other = dir.path().join("other");
        std::fs::write(&other, b"one").unwrap();
        let elsewhere = file_stamp(&std::fs::File::open(&other).unwrap()).unwrap();
        assert_ne!(
            (first.device, first.inode),
            (elsewhere.device, elsewhere.inode)
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b" two")
            .unwrap();
        let changed = file_stamp(&std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(changed.size, 7);
        assert_eq!((changed.device, changed.inode), (first.device, first.inode));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let since_1970 = modified.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(changed.modified_ns, since_1970.as_nanos() as i128);
    }

    /// A folder `root` holding an empty `sub`, and beside it `elsewhere` holding
    /// the file `name`.
    fn root_and_elsewhere(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (root, elsewhere) = (dir.path().join("root"), dir.path().join("elsewhere"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(name), b"secret").unwrap();
        (dir, root, elsewhere)
    }

    #[test]
    fn a_folder_lists_links_as_links_and_opens_nothing_through_one() {
        let (_dir, root, elsewhere) = root_and_elsewhere("secret");
        std::fs::write(root.join("file"), b"abc").unwrap();
        symlink_dir(&elsewhere, &root.join("to a folder"));
        symlink_file(&elsewhere.join("secret"), &root.join("to a file"));
        let has_fifo = make_fifo(&root.join("fifo"));

        let folder = Folder::open(&root).unwrap().expect("a folder");
        let mut entries = folder.entries().unwrap();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let listed: Vec<_> = entries
            .iter()
            .map(|entry| (entry.name.to_str().unwrap(), entry.kind))
            .collect();
        let mut expected = vec![
            ("file", EntryKind::File { size: 3 }),
            ("sub", EntryKind::Folder),
            ("to a file", EntryKind::Link),
            ("to a folder", EntryKind::Link),
        ];
        if has_fifo {
            expected.insert(0, ("fifo", EntryKind::Other));
        }
        assert_eq!(listed, expected);

        let mut read = String::new();
        let mut file = folder.file("file".as_ref()).unwrap().expect("a file");
        file.read_to_string(&mut read).unwrap();
        assert_eq!(read, "abc");
        assert!(folder.folder("sub".as_ref()).unwrap().is_some());
        for (name, what) in [
            ("to a folder", "a folder through a link"),
            ("to a file", "a file through a link"),
            ("sub", "a folder as a file"),
            ("fifo", "a FIFO as a file"),
        ] {
            if name == "fifo" && !has_fifo {
                continue;
            }
            assert!(folder.file(name.as_ref()).unwrap().is_none(), "{what}");
        }
        assert!(folder.folder("to a folder".as_ref()).unwrap().is_none());
        assert!(folder.folder("file".as_ref()).unwrap().is_none());
        assert!(Folder::open(&root.join("to a folder")).unwrap().is_none());
        assert!(Folder::open(&root.join("file")).unwrap().is_none());
        let missing = folder.file("missing".as_ref()).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_held_folder_is_read_whatever_takes_its_name() {
        let (_dir, root, elsewhere) = root_and_elsewhere("f");
        std::fs::write(root.join("sub/f"), b"inside").unwrap();
        let folder = Folder::open(&root).unwrap().unwrap();
        let sub = folder.folder("sub".as_ref()).unwrap().unwrap();
        std::fs::rename(root.join("sub"), root.join("moved")).unwrap();
        let moved = Folder::open(&root.join("moved")).unwrap().unwrap();
        assert_eq!(sub.id().unwrap(), moved.id().unwrap());
        assert_ne!(sub.id().unwrap(), folder.id().unwrap());
        symlink_dir(&elsewhere, &root.join("sub"));
        let mut read = String::new();
        let mut file = sub.file("f".as_ref()).unwrap().unwrap();
        file.read_to_string(&mut read).unwrap();
        assert_eq!(read, "inside");
        assert!(folder.folder("sub".as_ref()).unwrap().is_none());
    }

    #[test]
    fn free_space_is_what_the_disk_has() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
    }
}
