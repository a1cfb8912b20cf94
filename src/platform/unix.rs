//! The Unix side of [`crate::platform`].

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{CWD, OFlags, RenameFlags, renameat_with};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Access, DEAD_PEER_TIMEOUT, Exposure, FileStamp, Stop};

mod durable;
mod folder;
pub use durable::{SyncBatch, start_write_back};
pub use folder::Folder;

/// Unix forbids only `/` and NUL in a name, and tells names apart by case.
pub const WINDOWS_NAMES: bool = false;

/// Unanswered keepalive probes before an idle connection counts as dead.
const KEEPALIVE_PROBES: u32 = 3;

/// The stamp of an open file.
pub fn file_stamp(file: &File) -> io::Result<FileStamp> {
    let metadata = file.metadata()?;
    let nanos =
        |seconds: i64, nanoseconds: i64| seconds as i128 * 1_000_000_000 + nanoseconds as i128;
    Ok(FileStamp {
        device: metadata.dev(),
        inode: metadata.ino(),
        size: metadata.len(),
        modified_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
        changed_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
    })
}

/// Creates a file that did not exist, readable and writable by its owner alone.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Opens a file to send, following links as the user's own path does. A FIFO or
/// device never blocks the open (a FIFO would wait for a writer): the caller finds on
/// the handle that it is not a regular file.
pub fn open_to_send(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Opens an existing file that must be ours alone: the last component is never
/// followed if it is a link, a FIFO or device never blocks the open, and the open
/// handle must be a regular file owned by us with no other hard link (a second link
/// could make our writes land in a file outside our folder).
pub fn open_private_file(path: &Path, write: bool) -> io::Result<File> {
    let (file, metadata) = open_owned(path, write)?;
    if metadata.nlink() != 1 {
        return Err(refused(path, "has other hard links"));
    }
    Ok(file)
}

/// Opens a file that holds a secret of ours (a private key, whom we trust) as
/// [`open_owned`] does, and says whether others than its owner have `access` to it,
/// judged on the open handle so that the file cannot be swapped between check and read.
pub fn open_secret(path: &Path, access: Access) -> io::Result<(File, Option<Exposure>)> {
    let (file, metadata) = open_owned(path, false)?;
    let mode = metadata.permissions().mode() & 0o7777;
    let (others, fix) = match access {
        Access::Read => (0o077, "chmod 600"),
        Access::Change => (0o022, "chmod go-w"),
    };
    Ok((
        file,
        (mode & others != 0).then(|| exposure(path, mode, fix)),
    ))
}

fn exposure(path: &Path, mode: u32, fix: &str) -> Exposure {
    Exposure {
        permissions: format!("permissions {mode:04o}"),
        fix: format!("{fix} '{}'", path.display()),
    }
}

/// Opens `path` without following a final link and without blocking on a FIFO, and
/// checks on the open handle that it is a regular file we own.
fn open_owned(path: &Path, write: bool) -> io::Result<(File, std::fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return Err(refused(path, "belongs to another user"));
    }
    Ok((file, metadata))
}

/// Whether others than its owner may change what is in `dir` (group- or
/// world-writable), as ssh's StrictModes refuses.
pub fn folder_exposure(dir: &Path) -> io::Result<Option<Exposure>> {
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    Ok((mode & 0o022 != 0).then(|| exposure(dir, mode, "chmod go-w")))
}

/// Creates `path` as a folder only its owner can enter, or checks that the existing
/// one is exactly that: a real folder (not a link), ours, closed to everyone else.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let metadata = std::fs::symlink_metadata(path)?;
    if !metadata.file_type().is_dir() {
        return Err(refused(path, "is not a folder"));
    }
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return Err(refused(path, "belongs to another user"));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(refused(
            path,
            &format!(
                "is open to other users (mode {:o}); run: chmod 700 {}",
                metadata.permissions().mode() & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// True when `path` (not followed if it is a link) is the very file `file` is open on.
pub fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    let named = match std::fs::symlink_metadata(path) {
        Ok(named) => named,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    Ok(open.dev() == named.dev() && open.ino() == named.ino())
}

/// Moves the file or folder `from` to `to`, failing with `AlreadyExists` rather
/// than replace `to`: `renameat2(RENAME_NOREPLACE)`, or where the file system lacks
/// it, a hard link and unlink for a file, and for a folder an empty folder made at
/// `to` (which fails if anything is there) that the rename then replaces.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if std::fs::symlink_metadata(from)?.is_dir() {
                return rename_folder_onto_its_own_place(from, to);
            }
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(err) => Err(err.into()),
    }
}

fn rename_folder_onto_its_own_place(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(err) => {
            // Someone put something in it meanwhile: it is theirs now, if not empty.
            let _ = std::fs::remove_dir(to);
            match err.raw_os_error() {
                Some(code) if code == rustix::io::Errno::NOTEMPTY.raw_os_error() => Err(
                    io::Error::new(io::ErrorKind::AlreadyExists, "the name was taken meanwhile"),
                ),
                _ => Err(err),
            }
        }
    }
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the kernel notice a peer that vanished silently (a cable pulled, a NAT that
/// forgot us, a machine that lost power) within [`DEAD_PEER_TIMEOUT`]: keepalive
/// probes when the connection is idle, and a limit on how long sent data may stay
/// unacknowledged when it is not. Without these, TCP takes about 15 minutes.
pub fn detect_dead_peer(socket: &tokio::net::TcpStream) -> io::Result<()> {
    use rustix::net::sockopt;
    let interval = DEAD_PEER_TIMEOUT / (KEEPALIVE_PROBES + 2);
    sockopt::set_socket_keepalive(socket, true)?;
    sockopt::set_tcp_keepidle(socket, interval * 2)?;
    sockopt::set_tcp_keepintvl(socket, interval)?;
    sockopt::set_tcp_keepcnt(socket, KEEPALIVE_PROBES)?;
    let timeout_ms = u32::try_from(DEAD_PEER_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    sockopt::set_tcp_user_timeout(socket, timeout_ms)?;
    Ok(())
}

/// Keeps at most `bytes` of written data waiting unsent in the kernel, so that what
/// the program queues later (a chat line behind file data) waits in its own queue,
/// where it can go first, rather than behind megabytes in the socket's. Throughput is
/// unaffected: the limit is on data not yet sent, not on data in flight. Linux only;
/// elsewhere the kernel's default stays.
pub fn bound_unsent(socket: &tokio::net::TcpStream, bytes: u32) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(socket).set_tcp_notsent_lowat(bytes)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (socket, bytes);
    Ok(())
}

/// The width in columns of the terminal standard output is, if it is one.
pub fn stdout_columns() -> Option<usize> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Whether the terminal on standard output understands escape sequences: every
/// Unix terminal does (`TERM=dumb` is judged by the caller).
pub fn enable_escape_sequences() -> bool {
    true
}

/// Lets a restarted peer listen on its port again at once, while connections of
/// its previous run linger in TIME_WAIT (`SO_REUSEADDR`, as std and tokio set on
/// Unix; on Windows the same option would let another program take the port).
pub fn allow_quick_rebind(socket: &tokio::net::TcpSocket) -> io::Result<()> {
    socket.set_reuseaddr(true)
}

/// Bytes an unprivileged user may still write under `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}", path.display()),
    )
}

/// Writes `bytes` to standard output in as few system calls as it takes, with no
/// buffer in between, so that a terminal never shows half a frame.
pub fn write_stdout(mut bytes: &[u8]) -> io::Result<()> {
    let stdout = io::stdout();
    while !bytes.is_empty() {
        match rustix::io::write(&stdout, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Throws away what was typed at the terminal and not yet read, so that nothing
/// typed into `chat` is left for the shell once it exits.
pub fn discard_typed_input() {
    let _ = rustix::termios::tcflush(io::stdin(), rustix::termios::QueueSelector::IFlush);
}

/// The requests to stop that the system delivers: SIGINT (Ctrl-C outside raw
/// mode) and SIGTERM.
pub struct SystemStops {
    interrupt: Signal,
    terminate: Signal,
}

impl SystemStops {
    pub fn listen() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next request; pending forever once the system can deliver no more.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            Some(()) = self.interrupt.recv() => Stop::Interrupt,
            Some(()) = self.terminate.recv() => Stop::Terminate,
            else => std::future::pending().await,
        }
    }
}

/// What the contract tests need to set up, written the Unix way.
#[cfg(test)]
pub mod testing {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Gives everyone access to `path`.
    pub fn open_to_others(path: &Path) {
        let mode = if path.is_dir() { 0o777 } else { 0o666 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn symlink_file(target: &Path, link: &Path) {
        std::os::unix::fs::symlink(target, link).unwrap();
    }

    pub fn symlink_dir(target: &Path, link: &Path) {
        std::os::unix::fs::symlink(target, link).unwrap();
    }

    /// Makes a FIFO at `path`; false where the system has no such files.
    pub fn make_fifo(path: &Path) -> bool {
        rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::RWXU).unwrap();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_moved_without_renameat2_never_replaces_anything() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("staging");
        std::fs::create_dir(&from).unwrap();
        std::fs::write(from.join("a.txt"), b"kept").unwrap();
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("theirs"), b"theirs").unwrap();
        let a_file = dir.path().join("a file");
        std::fs::write(&a_file, b"a file").unwrap();
        for target in [&taken, &a_file] {
            let err = rename_folder_onto_its_own_place(&from, target).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{target:?}");
        }
        assert_eq!(std::fs::read(taken.join("theirs")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(&a_file).unwrap(), b"a file");
        let free = dir.path().join("free");
        rename_folder_onto_its_own_place(&from, &free).unwrap();
        assert_eq!(std::fs::read(free.join("a.txt")).unwrap(), b"kept");
        assert!(!from.exists());
    }
}
