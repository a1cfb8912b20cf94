//! [`Folder`] on Windows: a folder handle, listed through that handle
//! (`FileIdBothDirectoryInfo`) and with every name in it opened relative to it
//! (`NtCreateFile` with the handle as `RootDirectory`, one component, never
//! following a link or junction), so that a path is never resolved again from its
//! text once the walk has started.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::{offset_of, size_of, zeroed};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::path::Path;
use std::ptr::{null, null_mut};

use windows_sys::Wdk::Foundation::OBJECT_ATTRIBUTES;
use windows_sys::Wdk::Storage::FileSystem::{
    FILE_DIRECTORY_FILE, FILE_OPEN, FILE_OPEN_REPARSE_POINT, FILE_SYNCHRONOUS_IO_NONALERT,
    NtCreateFile,
};
use windows_sys::Win32::Foundation::{
    ERROR_CANT_ACCESS_FILE, ERROR_DIRECTORY, ERROR_FILE_NOT_FOUND, ERROR_NO_MORE_FILES, HANDLE,
    RtlNtStatusToDosError, STATUS_DELETE_PENDING, UNICODE_STRING,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT, FILE_ATTRIBUTE_TAG_INFO,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_GENERIC_READ,
    FILE_ID_BOTH_DIR_INFO, FILE_LIST_DIRECTORY, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, FileAttributeTagInfo, FileIdBothDirectoryInfo,
    FileIdBothDirectoryRestartInfo, GetFileInformationByHandleEx, SYNCHRONIZE,
};
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

use super::{file_id, handle_information};
use crate::platform::{EntryKind, FileId, FolderEntry};

/// A folder held open: what it lists, and what is opened in it, is in this very
/// folder, whatever is renamed or replaced around it meanwhile.
#[derive(Debug)]
pub struct Folder(File);

/// Reparse points whose tag has this bit stand for another name: symbolic links
/// and junctions (`IsReparseTagNameSurrogate`). Others (OneDrive placeholders,
/// deduplicated files) are the file itself.
const NAME_SURROGATE: u32 = 0x2000_0000;

/// Reparse points that stand for something other than a file or folder: an
/// AF_UNIX socket, WSL's FIFOs and devices, an app execution alias.
const SPECIAL_TAGS: [u32; 5] = [
    0x8000_0023,
    0x8000_0024,
    0x8000_0025,
    0x8000_0026,
    0x8000_001B,
];

/// Bytes asked for per listing call.
const LISTING_BUFFER: usize = 64 * 1024;

/// What listing and opening a folder needs, and no more (reading its files is
/// asked for when they are opened).
const FOLDER_ACCESS: u32 = FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Folder,
    File,
}

impl Folder {
    /// Opens the folder at `path`, whose last component must be a folder and not a
    /// link or junction to one; `None` if it is anything else.
    pub fn open(path: &Path) -> io::Result<Option<Folder>> {
        let open = |flags| {
            OpenOptions::new()
                .access_mode(FOLDER_ACCESS)
                .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | flags)
                .open(path)
        };
        let first = open(FILE_FLAG_OPEN_REPARSE_POINT)?;
        Ok(settle(first, Want::Folder, || open(0))?.map(Folder))
    }

    /// Which folder this is.
    pub fn id(&self) -> io::Result<FileId> {
        Ok(file_id(&handle_information(&self.0)?))
    }

    /// What the folder holds, in no particular order.
    pub fn entries(&self) -> io::Result<Vec<FolderEntry>> {
        let mut entries = Vec::new();
        // u64s keep the records 8-byte aligned, as the system writes them.
        let mut buffer = vec![0u64; LISTING_BUFFER / size_of::<u64>()];
        let mut class = FileIdBothDirectoryRestartInfo;
        loop {
            // SAFETY: the buffer is writable for the length given, and the handle
            // is open for as long as `self` lives.
            let filled = unsafe {
                GetFileInformationByHandleEx(
                    self.0.as_raw_handle(),
                    class,
                    buffer.as_mut_ptr().cast(),
                    LISTING_BUFFER as u32,
                )
            };
            if filled == 0 {
                let err = io::Error::last_os_error();
                // An empty folder without `.` and `..` (a FAT drive's root)
                // answers the first call with "no such file".
                let first = class == FileIdBothDirectoryRestartInfo;
                return match err.raw_os_error() {
                    Some(code) if code == ERROR_NO_MORE_FILES as i32 => Ok(entries),
                    Some(code) if first && code == ERROR_FILE_NOT_FOUND as i32 => Ok(entries),
                    _ => Err(err),
                };
            }
            class = FileIdBothDirectoryInfo;
            // SAFETY: the buffer's bytes are initialised (zeroed, then written).
            let bytes =
                unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), LISTING_BUFFER) };
            read_records(bytes, &mut entries)?;
        }
    }

    /// Opens the folder `name` in this one; `None` if `name` is now anything else,
    /// a link or junction to a folder included.
    pub fn folder(&self, name: &OsStr) -> io::Result<Option<Folder>> {
        let exact = FILE_OPEN_REPARSE_POINT | FILE_DIRECTORY_FILE;
        let first = match self.open_within(name, FOLDER_ACCESS, exact) {
            Err(err) if err.raw_os_error() == Some(ERROR_DIRECTORY as i32) => return Ok(None),
            opened => opened?,
        };
        let follow = || self.open_within(name, FOLDER_ACCESS, FILE_DIRECTORY_FILE);
        Ok(settle(first, Want::Folder, follow)?.map(Folder))
    }

    /// Opens the regular file `name` in this one to read it; `None` if `name` is
    /// now anything else: a link or a folder.
    pub fn file(&self, name: &OsStr) -> io::Result<Option<File>> {
        let first = self.open_within(name, FILE_GENERIC_READ, FILE_OPEN_REPARSE_POINT)?;
        settle(first, Want::File, || {
            self.open_within(name, FILE_GENERIC_READ, 0)
        })
    }

    /// Opens the single name `name` relative to this folder's handle.
    fn open_within(&self, name: &OsStr, access: u32, options: u32) -> io::Result<File> {
        let wide: Vec<u16> = name.encode_wide().collect();
        if wide.is_empty() || wide.iter().any(|&unit| unit == u16::from(b'\\')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a single name",
            ));
        }
        let length = u16::try_from(wide.len() * 2)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let object_name = UNICODE_STRING {
            Length: length,
            MaximumLength: length,
            Buffer: wide.as_ptr().cast_mut(),
        };
        let attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: self.0.as_raw_handle(),
            ObjectName: &object_name,
            Attributes: 0,
            SecurityDescriptor: null(),
            SecurityQualityOfService: null(),
        };
        let mut handle: HANDLE = null_mut();
        // SAFETY: every pointer is valid for the call: the name outlives it, the
        // attributes point at it and at our open handle, and the status block and
        // handle are ours to write.
        let status = unsafe {
            let mut io_status: IO_STATUS_BLOCK = zeroed();
            NtCreateFile(
                &mut handle,
                access,
                &attributes,
                &mut io_status,
                null(),
                0,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                FILE_OPEN,
                options | FILE_SYNCHRONOUS_IO_NONALERT,
                null(),
                0,
            )
        };
        if status == STATUS_DELETE_PENDING {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the file is being deleted",
            ));
        }
        if status < 0 {
            // SAFETY: a plain conversion of a status code.
            let code = unsafe { RtlNtStatusToDosError(status) };
            return Err(io::Error::from_raw_os_error(code as i32));
        }
        // SAFETY: the call succeeded, so the handle is open and owned by no one else.
        Ok(unsafe { File::from_raw_handle(handle) })
    }
}

/// Judges a handle opened on the name itself (not following a reparse point):
/// `None` if it is not what was wanted or is a link or junction. Any other reparse
/// point is opened again through `follow`, and kept if that reaches the same file;
/// one that no driver on this system handles is `None` too.
fn settle(
    first: File,
    want: Want,
    follow: impl FnOnce() -> io::Result<File>,
) -> io::Result<Option<File>> {
    let tag = attribute_tag(&first)?;
    let is_folder = tag.FileAttributes & FILE_ATTRIBUTE_DIRECTORY != 0;
    if is_folder != (want == Want::Folder) {
        return Ok(None);
    }
    if tag.FileAttributes & FILE_ATTRIBUTE_REPARSE_POINT == 0 {
        return Ok(Some(first));
    }
    if tag.ReparseTag & NAME_SURROGATE != 0 {
        return Ok(None);
    }
    let followed = match follow() {
        Err(err) if err.raw_os_error() == Some(ERROR_CANT_ACCESS_FILE as i32) => return Ok(None),
        followed => followed?,
    };
    let same = file_id(&handle_information(&first)?) == file_id(&handle_information(&followed)?);
    Ok(same.then_some(followed))
}

fn attribute_tag(file: &File) -> io::Result<FILE_ATTRIBUTE_TAG_INFO> {
    // SAFETY: the information is plain data the call fills in, for the size given.
    unsafe {
        let mut tag: FILE_ATTRIBUTE_TAG_INFO = zeroed();
        let filled = GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileAttributeTagInfo,
            (&raw mut tag).cast(),
            size_of::<FILE_ATTRIBUTE_TAG_INFO>() as u32,
        );
        if filled == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tag)
    }
}

/// Reads the chain of `FILE_ID_BOTH_DIR_INFO` records the system wrote into
/// `bytes`, checking every offset and length against the buffer.
fn read_records(bytes: &[u8], entries: &mut Vec<FolderEntry>) -> io::Result<()> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "a malformed folder listing");
    let name_at = offset_of!(FILE_ID_BOTH_DIR_INFO, FileName);
    let mut offset = 0;
    loop {
        let header = bytes
            .get(offset..offset + size_of::<FILE_ID_BOTH_DIR_INFO>())
            .ok_or_else(malformed)?;
        // SAFETY: `header` holds as many bytes as the record type has (its name's
        // first unit included); the read copies them, so alignment does not matter.
        let record: FILE_ID_BOTH_DIR_INFO =
            unsafe { std::ptr::read_unaligned(header.as_ptr().cast()) };
        let name_len = record.FileNameLength as usize;
        let name_bytes = bytes
            .get(offset + name_at..offset + name_at + name_len)
            .ok_or_else(malformed)?;
        let name: Vec<u16> = name_bytes
            .chunks_exact(2)
            .map(|unit| u16::from_le_bytes([unit[0], unit[1]]))
            .collect();
        if name != [u16::from(b'.')] && name != [u16::from(b'.'); 2] {
            let attributes = record.FileAttributes;
            // For a reparse point, the record's EaSize holds its tag.
            let tag = (attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0).then_some(record.EaSize);
            let kind = if tag.is_some_and(|tag| tag & NAME_SURROGATE != 0) {
                EntryKind::Link
            } else if tag.is_some_and(|tag| SPECIAL_TAGS.contains(&tag)) {
                EntryKind::Other
            } else if attributes & FILE_ATTRIBUTE_DIRECTORY != 0 {
                EntryKind::Folder
            } else {
                EntryKind::File {
                    size: u64::try_from(record.EndOfFile).unwrap_or(0),
                }
            };
            entries.push(FolderEntry {
                name: OsString::from_wide(&name),
                kind,
            });
        }
        if record.NextEntryOffset == 0 {
            return Ok(());
        }
        offset += record.NextEntryOffset as usize;
    }
}
