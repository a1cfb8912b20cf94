//! The Windows side of [`crate::platform`].
//!
//! Privacy here is an access list, not mode bits. What we create gets a protected
//! list (nothing inherited from the folder above) that lets in only the user, SYSTEM
//! and the Administrators, the three that OpenSSH for Windows also accepts on a
//! private key. What we open must be owned by the user (or the Administrators, who
//! own what an elevated prompt creates), and its list must let nobody else in.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::{size_of, zeroed};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, AsRawSocket, FromRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr::null_mut;

use tokio::signal::windows::{CtrlBreak, CtrlC, CtrlClose, CtrlShutdown};
use windows_sys::Win32::Foundation::{
    ERROR_SUCCESS, GENERIC_ALL, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
    LocalFree,
};
use windows_sys::Win32::Networking::WinSock::{
    IPPROTO_TCP, SO_KEEPALIVE, SOCKET, SOL_SOCKET, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL,
    TCP_MAXRT, WSAGetLastError, setsockopt,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo,
    SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, EqualSid, GetAce,
    GetTokenInformation, INHERIT_ONLY_ACE, IsWellKnownSid, OWNER_SECURITY_INFORMATION, PSID,
    SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER, TokenUser, WELL_KNOWN_SID_TYPE,
    WinBuiltinAdministratorsSid, WinCreatorOwnerRightsSid, WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CREATE_NEW, CreateDirectoryW, CreateFileW, DELETE,
    FILE_APPEND_DATA, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_NORMAL,
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_BASIC_INFO, FILE_DELETE_CHILD, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_TYPE_DISK, FILE_WRITE_DATA, FileBasicInfo,
    GetDiskFreeSpaceExW, GetFileInformationByHandle, GetFileInformationByHandleEx, GetFileType,
    MOVEFILE_WRITE_THROUGH, MoveFileExW, READ_CONTROL, WRITE_DAC, WRITE_OWNER,
};
use windows_sys::Win32::System::Console::{
    CONSOLE_SCREEN_BUFFER_INFO, ENABLE_VIRTUAL_TERMINAL_PROCESSING, FlushConsoleInputBuffer,
    GetConsoleMode, GetConsoleScreenBufferInfo, GetStdHandle, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    SetConsoleMode,
};
use windows_sys::Win32::System::SystemServices::ACCESS_ALLOWED_ACE_TYPE;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{Access, DEAD_PEER_TIMEOUT, Exposure, FileId, FileStamp, Stop};

mod durable;
mod folder;
pub use durable::{SyncBatch, start_write_back};
pub use folder::Folder;

/// Windows reserves `< > : " | ? *` in names, and names that differ only in case are one.
pub const WINDOWS_NAMES: bool = true;

/// Unanswered keepalive probes before an idle connection counts as dead.
const KEEPALIVE_PROBES: u32 = 3;

/// Rights that read a file or change it, its list or its owner.
const READS_OR_CHANGES: u32 = FILE_READ_DATA
    | FILE_WRITE_DATA
    | FILE_APPEND_DATA
    | DELETE
    | WRITE_DAC
    | WRITE_OWNER
    | GENERIC_READ
    | GENERIC_WRITE
    | GENERIC_ALL;

/// Rights that change a file or what is in a folder (adding a file, a subfolder,
/// deleting a child), its list or its owner.
const CHANGES: u32 = FILE_WRITE_DATA
    | FILE_APPEND_DATA
    | FILE_DELETE_CHILD
    | DELETE
    | WRITE_DAC
    | WRITE_OWNER
    | GENERIC_WRITE
    | GENERIC_ALL;

/// 100 ns ticks between 1601, where Windows counts from, and 1970.
const TICKS_TO_1970: i64 = 116_444_736_000_000_000;

/// The stamp of an open file: the volume and file index identify it, and the last
/// write and last change (which includes metadata) tell whether it changed.
pub fn file_stamp(file: &File) -> io::Result<FileStamp> {
    let info = handle_information(file)?;
    // SAFETY: FILE_BASIC_INFO is plain data, filled in by the call for the size given.
    let basic = unsafe {
        let mut basic: FILE_BASIC_INFO = zeroed();
        let filled = GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileBasicInfo,
            (&raw mut basic).cast(),
            size_of::<FILE_BASIC_INFO>() as u32,
        );
        if filled == 0 {
            return Err(io::Error::last_os_error());
        }
        basic
    };
    let nanos_since_1970 = |ticks: i64| (i128::from(ticks) - i128::from(TICKS_TO_1970)) * 100;
    let id = file_id(&info);
    Ok(FileStamp {
        device: id.device,
        inode: id.inode,
        size: u64::from(info.nFileSizeHigh) << 32 | u64::from(info.nFileSizeLow),
        modified_ns: nanos_since_1970(basic.LastWriteTime),
        changed_ns: nanos_since_1970(basic.ChangeTime),
    })
}

/// Creates a file that did not exist, with a list that lets in only the user,
/// SYSTEM and the Administrators from the start. `CREATE_NEW` fails on anything
/// already there, a link included.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let descriptor = private_descriptor(false)?;
    let attributes = descriptor.attributes();
    let path = wide(path);
    // SAFETY: the name is NUL-terminated and the attributes outlive the call.
    let handle = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            &attributes,
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT,
            null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_handle(handle) })
}

/// Opens a file to send, following links as the user's own path does. Opening
/// never waits here (pipes live under `\\.\pipe\`); the caller finds on the handle
/// whether it is a regular file.
pub fn open_to_send(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Opens an existing file that must be ours alone: a link (reparse point) is never
/// followed, and the open handle must be a file on disk, owned by the user, with no
/// other hard link (a second link could make our writes land outside our folder).
pub fn open_private_file(path: &Path, write: bool) -> io::Result<File> {
    let (file, info, _) = open_owned(path, write)?;
    if info.nNumberOfLinks != 1 {
        return Err(refused(path, "has other hard links"));
    }
    Ok(file)
}

/// Opens a file that holds a secret of ours (a private key, whom we trust) as
/// [`open_owned`] does, and says whether its list gives others than the user,
/// SYSTEM and the Administrators `access` to it, judged on the open handle.
pub fn open_secret(path: &Path, access: Access) -> io::Result<(File, Option<Exposure>)> {
    let (file, _, security) = open_owned(path, false)?;
    let rights = match access {
        Access::Read => READS_OR_CHANGES,
        Access::Change => CHANGES,
    };
    let exposure = security
        .others_allowed(rights)?
        .map(|sid| exposure(path, &sid, "F"));
    Ok((file, exposure))
}

/// Opens `path` without following a final link and checks on the open handle that
/// it is a file on disk (not a folder, a link or a device such as `CON`) owned by us.
fn open_owned(
    path: &Path,
    write: bool,
) -> io::Result<(File, BY_HANDLE_FILE_INFORMATION, Security)> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    // SAFETY: the handle is open for as long as `file` lives.
    if unsafe { GetFileType(file.as_raw_handle()) } != FILE_TYPE_DISK {
        return Err(refused(path, "is not a regular file"));
    }
    let info = handle_information(&file)?;
    if info.dwFileAttributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY) != 0 {
        return Err(refused(path, "is not a regular file"));
    }
    let security = Security::of(file.as_raw_handle())?;
    if !security.owned_by_us() {
        return Err(refused(path, "belongs to another user"));
    }
    Ok((file, info, security))
}

/// Whether the list of `dir` lets others than the user, SYSTEM and the
/// Administrators add, remove or replace what is in it, as ssh's StrictModes refuses.
pub fn folder_exposure(dir: &Path) -> io::Result<Option<Exposure>> {
    let folder = open_folder(dir, false)?;
    let security = Security::of(folder.as_raw_handle())?;
    Ok(security
        .others_allowed(CHANGES)?
        .map(|sid| exposure(dir, &sid, "(OI)(CI)F")))
}

/// Creates `path` as a folder only the user (with SYSTEM and the Administrators)
/// may enter, or checks that the existing one is exactly that: a real folder (not a
/// link or junction), ours, closed to everyone else.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    let descriptor = private_descriptor(true)?;
    let attributes = descriptor.attributes();
    let name = wide(path);
    // SAFETY: the name is NUL-terminated and the attributes outlive the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } != 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::AlreadyExists {
        return Err(err);
    }
    let folder = open_folder(path, true)?;
    let info = handle_information(&folder)?;
    if info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0
        || info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY == 0
    {
        return Err(refused(path, "is not a folder"));
    }
    let security = Security::of(folder.as_raw_handle())?;
    if !security.owned_by_us() {
        return Err(refused(path, "belongs to another user"));
    }
    if let Some(sid) = security.others_allowed(READS_OR_CHANGES)? {
        let fix = exposure(path, &sid, "(OI)(CI)F").fix;
        return Err(refused(
            path,
            &format!("is open to other users (access for {sid}); run: {fix}"),
        ));
    }
    Ok(())
}

/// A handle on a folder for its attributes and list; `exact` does not follow a link.
fn open_folder(path: &Path, exact: bool) -> io::Result<File> {
    let link = if exact {
        FILE_FLAG_OPEN_REPARSE_POINT
    } else {
        0
    };
    OpenOptions::new()
        .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | link)
        .open(path)
}

/// True when `path` (not followed if it is a link) is the very file `file` is open on.
pub fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    let named = match OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
    {
        Ok(named) => named,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    Ok(file_id(&handle_information(file)?) == file_id(&handle_information(&named)?))
}

/// Moves `from` to `to`, failing with `AlreadyExists` rather than replace `to`:
/// `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`, written through to disk
/// before it returns.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (wide(from), wide(to));
    // SAFETY: both names are NUL-terminated.
    if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), MOVEFILE_WRITE_THROUGH) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable. There is nothing left to do here:
/// renames are written through by [`rename_no_replace`], NTFS journals the rest of
/// a folder's changes, and a folder cannot be flushed without write access to it.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes Windows notice a peer that vanished silently within
/// [`DEAD_PEER_TIMEOUT`]: keepalive probes when the connection is idle, and a limit
/// on how long sent data may go unacknowledged (`TCP_MAXRT`) when it is not.
pub fn detect_dead_peer(socket: &tokio::net::TcpStream) -> io::Result<()> {
    let socket = socket.as_raw_socket() as SOCKET;
    let interval = (DEAD_PEER_TIMEOUT / (KEEPALIVE_PROBES + 2)).as_secs() as u32;
    set_socket_option(socket, SOL_SOCKET, SO_KEEPALIVE, 1)?;
    set_socket_option(socket, IPPROTO_TCP, TCP_KEEPIDLE, interval * 2)?;
    set_socket_option(socket, IPPROTO_TCP, TCP_KEEPINTVL, interval)?;
    set_socket_option(socket, IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_PROBES)?;
    let timeout = u32::try_from(DEAD_PEER_TIMEOUT.as_secs()).unwrap_or(u32::MAX);
    set_socket_option(socket, IPPROTO_TCP, TCP_MAXRT, timeout)
}

/// Windows has no limit on unsent data alone (`TCP_NOTSENT_LOWAT`); its default stays.
pub fn bound_unsent(_socket: &tokio::net::TcpStream, _bytes: u32) -> io::Result<()> {
    Ok(())
}

fn set_socket_option(socket: SOCKET, level: i32, name: i32, value: u32) -> io::Result<()> {
    // SAFETY: the option value is a DWORD that lives through the call.
    let failed = unsafe {
        setsockopt(
            socket,
            level,
            name,
            (&raw const value).cast(),
            size_of::<u32>() as i32,
        )
    };
    if failed != 0 {
        // SAFETY: no other call in between could have changed the error.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(())
}

/// The width in columns of the console window standard output is, if it is one.
pub fn stdout_columns() -> Option<usize> {
    // SAFETY: the buffer information is plain data the call fills in.
    let info = unsafe {
        let mut info: CONSOLE_SCREEN_BUFFER_INFO = zeroed();
        if GetConsoleScreenBufferInfo(GetStdHandle(STD_OUTPUT_HANDLE), &mut info) == 0 {
            return None;
        }
        info
    };
    let columns = i32::from(info.srWindow.Right) - i32::from(info.srWindow.Left) + 1;
    usize::try_from(columns).ok().filter(|&columns| columns > 0)
}

/// Whether the console on standard output understands escape sequences, turning
/// them on where it can (Windows 10 and later). The classic console of older
/// Windows cannot, and gets the plain front end.
pub fn enable_escape_sequences() -> bool {
    // SAFETY: the console calls take the standard handle and a mode by value.
    unsafe {
        let output = GetStdHandle(STD_OUTPUT_HANDLE);
        let mut mode = 0;
        if GetConsoleMode(output, &mut mode) == 0 {
            return false;
        }
        mode & ENABLE_VIRTUAL_TERMINAL_PROCESSING != 0
            || SetConsoleMode(output, mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING) != 0
    }
}

/// Nothing to do on Windows: a port whose earlier connections linger in TIME_WAIT
/// may be listened on again as it is, and `SO_REUSEADDR` would let another program
/// take the port over.
pub fn allow_quick_rebind(_socket: &tokio::net::TcpSocket) -> io::Result<()> {
    Ok(())
}

/// Bytes the user may still write under `dir` (quotas included).
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let dir = wide(dir);
    let mut available = 0;
    // SAFETY: the name is NUL-terminated; the totals we do not want may be null.
    let done = unsafe { GetDiskFreeSpaceExW(dir.as_ptr(), &mut available, null_mut(), null_mut()) };
    if done == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(available)
}

/// Writes `bytes` to standard output and flushes, so that a console never shows
/// half a frame. The standard library writes to a console in UTF-16, as it must.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Throws away what was typed at the console and not yet read, so that nothing
/// typed into `chat` is left for `cmd` once it exits.
pub fn discard_typed_input() {
    // SAFETY: takes the standard input handle by value.
    unsafe { FlushConsoleInputBuffer(GetStdHandle(STD_INPUT_HANDLE)) };
}

/// The requests to stop that Windows delivers: Ctrl-C and Ctrl-Break interrupt;
/// closing the console window and shutting down terminate (Windows then allows a
/// few seconds, which the graceful close fits in).
pub struct SystemStops {
    interrupt: CtrlC,
    interrupt_break: CtrlBreak,
    close: CtrlClose,
    shutdown: CtrlShutdown,
}

impl SystemStops {
    pub fn listen() -> io::Result<Self> {
        use tokio::signal::windows;
        Ok(Self {
            interrupt: windows::ctrl_c()?,
            interrupt_break: windows::ctrl_break()?,
            close: windows::ctrl_close()?,
            shutdown: windows::ctrl_shutdown()?,
        })
    }

    /// The next request; pending forever once the system can deliver no more.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            Some(()) = self.interrupt.recv() => Stop::Interrupt,
            Some(()) = self.interrupt_break.recv() => Stop::Interrupt,
            Some(()) = self.close.recv() => Stop::Terminate,
            Some(()) = self.shutdown.recv() => Stop::Terminate,
            else => std::future::pending().await,
        }
    }
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}", path.display()),
    )
}

/// What an access rule for `sid` looks like to the user, and the `icacls` command,
/// as typed in `cmd`, that leaves only the user's own access (`rights`) in place.
fn exposure(path: &Path, sid: &str, rights: &str) -> Exposure {
    Exposure {
        permissions: format!("permissions (access for {sid})"),
        fix: format!(
            "icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:{rights}\" /remove:g *{sid}",
            path.display()
        ),
    }
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// The volume and file index of what a handle is open on.
fn file_id(info: &BY_HANDLE_FILE_INFORMATION) -> FileId {
    FileId {
        device: u64::from(info.dwVolumeSerialNumber),
        inode: u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow),
    }
}

fn handle_information(file: &File) -> io::Result<BY_HANDLE_FILE_INFORMATION> {
    // SAFETY: the information is plain data the call fills in.
    unsafe {
        let mut info: BY_HANDLE_FILE_INFORMATION = zeroed();
        if GetFileInformationByHandle(file.as_raw_handle(), &mut info) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }
}

/// Memory the system allocated for us, freed with `LocalFree`.
struct LocalMemory(*mut c_void);

impl Drop for LocalMemory {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a call that allocates with LocalAlloc.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// A security descriptor made from its text form (SDDL).
struct Descriptor(LocalMemory);

impl Descriptor {
    fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0.0,
            bInheritHandle: 0,
        }
    }
}

/// A protected list (`P`: nothing inherited) giving full access to the user, SYSTEM
/// and the Administrators only; a folder's rules also apply to what is made in it.
fn private_descriptor(folder: bool) -> io::Result<Descriptor> {
    let user = CurrentUser::get()?;
    let user = sid_string(user.sid())?;
    let inherit = if folder { "OICI" } else { "" };
    let text: Vec<u16> =
        format!("D:P(A;{inherit};FA;;;{user})(A;{inherit};FA;;;SY)(A;{inherit};FA;;;BA)")
            .encode_utf16()
            .chain(Some(0))
            .collect();
    let mut descriptor = null_mut();
    // SAFETY: the text is NUL-terminated; the descriptor is ours to free.
    let made = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            null_mut(),
        )
    };
    if made == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Descriptor(LocalMemory(descriptor)))
}

/// The user this process runs as, from its token.
struct CurrentUser {
    /// A `TOKEN_USER` and the SID it points into, aligned for the structure.
    token_user: Vec<u64>,
}

impl CurrentUser {
    fn get() -> io::Result<Self> {
        let mut token: HANDLE = null_mut();
        // SAFETY: the pseudo-handle of our own process needs no closing.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the token handle was just opened and is owned by nothing else.
        let token = unsafe { OwnedHandle::from_raw_handle(token) };
        let mut needed = 0;
        // SAFETY: asking for the size only, with no buffer.
        unsafe {
            GetTokenInformation(token.as_raw_handle(), TokenUser, null_mut(), 0, &mut needed)
        };
        let mut token_user = vec![0u64; (needed as usize).div_ceil(size_of::<u64>())];
        // SAFETY: the buffer holds `needed` bytes and is aligned for TOKEN_USER.
        let filled = unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                token_user.as_mut_ptr().cast(),
                needed,
                &mut needed,
            )
        };
        if filled == 0 || token_user.len() * size_of::<u64>() < size_of::<TOKEN_USER>() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { token_user })
    }

    fn sid(&self) -> PSID {
        // SAFETY: the buffer holds a TOKEN_USER, filled in by `get`.
        unsafe { (*self.token_user.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    }
}

/// The owner and access list of an open file or folder.
struct Security {
    owner: PSID,
    list: *const ACL,
    user: CurrentUser,
    _descriptor: LocalMemory,
}

impl Security {
    fn of(handle: HANDLE) -> io::Result<Self> {
        let (mut owner, mut list, mut descriptor) = (null_mut(), null_mut(), null_mut());
        // SAFETY: the handle is open with READ_CONTROL; the descriptor is ours to
        // free, and owner and list point into it.
        let status = unsafe {
            GetSecurityInfo(
                handle,
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                &mut owner,
                null_mut(),
                &mut list,
                null_mut(),
                &mut descriptor,
            )
        };
        if status != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        Ok(Self {
            owner,
            list,
            user: CurrentUser::get()?,
            _descriptor: LocalMemory(descriptor),
        })
    }

    fn owned_by_us(&self) -> bool {
        // SAFETY: both SIDs are valid for as long as `self` lives.
        let ours = unsafe { EqualSid(self.owner, self.user.sid()) != 0 };
        ours || is_well_known(self.owner, WinBuiltinAdministratorsSid)
    }

    /// The first SID other than ours, SYSTEM's and the Administrators' that the list
    /// allows any of `rights` on the object itself.
    fn others_allowed(&self, rights: u32) -> io::Result<Option<String>> {
        if self.list.is_null() {
            return Ok(Some("Everyone (there is no access list at all)".into()));
        }
        // SAFETY: the list is valid for as long as `self` lives.
        let count = unsafe { (*self.list).AceCount };
        for index in 0..u32::from(count) {
            let mut rule = null_mut();
            // SAFETY: `index` is below the list's count.
            if unsafe { GetAce(self.list, index, &mut rule) } == 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: every rule starts with its header.
            let header = unsafe { &*rule.cast::<ACE_HEADER>() };
            if u32::from(header.AceType) != ACCESS_ALLOWED_ACE_TYPE
                || u32::from(header.AceFlags) & INHERIT_ONLY_ACE != 0
            {
                continue;
            }
            // SAFETY: an ACCESS_ALLOWED rule is an ACCESS_ALLOWED_ACE, its SID
            // starting where `SidStart` is.
            let allowed = unsafe { &*rule.cast::<ACCESS_ALLOWED_ACE>() };
            let sid: PSID = (&raw const allowed.SidStart).cast_mut().cast();
            if allowed.Mask & rights != 0 && !self.trusted(sid) {
                return sid_string(sid).map(Some);
            }
        }
        Ok(None)
    }

    /// The user, SYSTEM, the Administrators, and "the owner" (which `owned_by_us`
    /// has checked is one of those).
    fn trusted(&self, sid: PSID) -> bool {
        // SAFETY: both SIDs are valid for as long as `self` lives.
        let ours = unsafe { EqualSid(sid, self.user.sid()) != 0 };
        ours || is_well_known(sid, WinLocalSystemSid)
            || is_well_known(sid, WinBuiltinAdministratorsSid)
            || (is_well_known(sid, WinCreatorOwnerRightsSid) && self.owned_by_us())
    }
}

fn is_well_known(sid: PSID, kind: WELL_KNOWN_SID_TYPE) -> bool {
    // SAFETY: `sid` is valid; the call only reads it.
    unsafe { IsWellKnownSid(sid, kind) != 0 }
}

/// A SID in its text form, `S-1-5-…`, as `icacls` takes it after a `*`.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text = null_mut();
    // SAFETY: `sid` is valid; the text is ours to free.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let _free = LocalMemory(text.cast());
    // SAFETY: the text is NUL-terminated.
    let units = unsafe {
        let length = (0..).take_while(|&at| *text.add(at) != 0).count();
        std::slice::from_raw_parts(text, length)
    };
    Ok(String::from_utf16_lossy(units))
}

/// What the contract tests need to set up, written the Windows way.
#[cfg(test)]
pub mod testing {
    use std::path::Path;
    use std::process::Command;

    /// Gives everyone access to `path`.
    pub fn open_to_others(path: &Path) {
        let status = Command::new("icacls")
            .arg(path)
            .args(["/grant", "*S-1-1-0:F"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn symlink_file(target: &Path, link: &Path) {
        std::os::windows::fs::symlink_file(target, link).unwrap();
    }

    pub fn symlink_dir(target: &Path, link: &Path) {
        std::os::windows::fs::symlink_dir(target, link).unwrap();
    }

    /// Windows keeps no FIFOs among files.
    pub fn make_fifo(_path: &Path) -> bool {
        false
    }
}
