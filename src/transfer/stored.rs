//! The record of files this `chat` stored, and the check behind "already saved".
//!
//! An offer of a file that this identity received and stored before, byte for byte,
//! is answered "already saved" instead of storing a second copy: typically the
//! connection dropped, or the receiver was restarted, after the file was stored and
//! before its verdict reached the sender, who then offers it again.
//!
//! The answer rests on a record, never on what merely happens to lie in the download
//! folder: otherwise the peer could learn, without sending a byte, whether any file
//! of a given name and content is there. Each stored file gets a line, written and
//! synced before the rename that gives the file its final name, so a receiver killed
//! right after `Saved` still knows its own file after a restart. A line names the
//! offer (name, size, SHA-256), where the file went, and which file it is (device,
//! inode and modification time, which a rename keeps). It is trusted only while the
//! file at that path is still that very file, unchanged, with that size and, read
//! again, that SHA-256: a damaged, stale or forged line can make the receiver store
//! a second copy, never trust other bytes.
//!
//! The record is a private file beside the identity, one per identity (`NAME.stored`),
//! so that two identities receiving into one folder each know only their own files.
//! It holds at most [`MAX_ENTRIES`] files, the newest, and is rewritten with them
//! once it has grown to twice that many lines.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::parts::Meta;
use crate::platform::{self, FileId};

/// The record's file name beside an identity's certificate, after its stem.
pub const EXTENSION: &str = "stored";
/// Stored files remembered; the oldest are forgotten first.
pub const MAX_ENTRIES: usize = 512;
/// Matching lines whose files are read again for one offer, newest first: with the
/// offer's exact size, that bounds what one offer makes the receiver read.
pub const MAX_CHECKED: usize = 2;
/// Paths longer than this (in UTF-8 bytes) are not recorded: such a file is
/// only ever stored again as a copy.
const MAX_PATH_LEN: usize = 1024;
/// A line: the format, three numbers for the file, its size, its SHA-256, and the
/// offered name (at most 255 bytes) and the path in hex.
const MAX_LINE_LEN: usize = 3 + 3 * 42 + 21 + 65 + 2 * 256 + 2 * MAX_PATH_LEN + 2;
/// More than this is not read: the record is never longer when `chat` wrote it.
const MAX_FILE_LEN: u64 = (2 * MAX_ENTRIES * MAX_LINE_LEN) as u64;
/// The first word of every line.
const FORMAT: &str = "v1";

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The offer it answered, with the name after the name rules.
    meta: Meta,
    /// Where it was stored: the download folder's canonical path and its name there.
    path: PathBuf,
    id: FileId,
    /// When its bytes were last written, in nanoseconds since 1970: a rename keeps
    /// it, and a file made later under a freed inode number has its own.
    modified_ns: i128,
}

/// What this identity stored, in memory and in its file.
#[derive(Debug)]
pub struct StoredRecord {
    file: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Lines in the file, valid or not: how much appending has grown it.
    lines_in_file: usize,
}

impl StoredRecord {
    /// Loads the record at `file`. A missing, unreadable or oversized file is an
    /// empty record, and a damaged line is passed over: either can only make a file
    /// be stored again.
    pub fn open(file: PathBuf) -> StoredRecord {
        let mut state = State::default();
        let text = platform::open_private_file(&file, false)
            .and_then(|opened| {
                let mut bytes = Vec::new();
                opened.take(MAX_FILE_LEN).read_to_end(&mut bytes)?;
                Ok(bytes)
            })
            .unwrap_or_default();
        // Only whole lines count: a line cut short by a crash or by the read limit
        // ends without its line feed.
        let mut lines = text.split_inclusive(|&byte| byte == b'\n');
        for line in lines.by_ref() {
            state.lines_in_file += 1;
            let parsed = line
                .strip_suffix(b"\n")
                .and_then(|line| std::str::from_utf8(line).ok())
                .and_then(parse_line);
            if let Some(entry) = parsed {
                state.push(entry);
            }
        }
        StoredRecord {
            file,
            state: Mutex::new(state),
        }
    }

    /// Notes that the file open as `file`, verified against `meta`, is about to be
    /// renamed to `target` in the download folder `dir`. Synced before it returns,
    /// so it outlives the process as soon as the rename can.
    pub fn remember(&self, dir: &Path, meta: &Meta, target: &Path, file: &File) -> io::Result<()> {
        if meta.sha256.is_none() {
            return Err(io::Error::other("a file is recorded only with its SHA-256"));
        }
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other("the stored file has no name"))?;
        let path = std::fs::canonicalize(dir)?.join(name);
        let stamp = platform::file_stamp(file)?;
        let entry = Entry {
            meta: meta.clone(),
            path,
            id: stamp.id(),
            modified_ns: stamp.modified_ns,
        };
        let line = format_line(&entry)
            .ok_or_else(|| io::Error::other("the stored file's path is too long to record"))?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        state.push(entry);
        if state.lines_in_file + 1 >= 2 * MAX_ENTRIES {
            self.rewrite(&mut state)
        } else {
            self.append(&mut state, &line)
        }
    }

    /// Where the download folder `dir` holds a file this identity stored for exactly
    /// the offer `meta`, checked on disk now: the same file, size and SHA-256. Reads
    /// at most [`MAX_CHECKED`] files of `meta.size` bytes: call it off the async
    /// runtime.
    pub fn find(&self, dir: &Path, meta: &Meta) -> Option<PathBuf> {
        let folder = std::fs::canonicalize(dir).ok()?;
        let candidates: Vec<Entry> = {
            let state = self.state.lock().ok()?;
            (state.entries.iter().rev())
                .filter(|entry| entry.meta.same_offer(meta) && entry.path.parent() == Some(&folder))
                .take(MAX_CHECKED)
                .cloned()
                .collect()
        };
        candidates
            .into_iter()
            .find(|entry| holds(entry, meta))
            .and_then(|entry| Some(dir.join(entry.path.file_name()?)))
    }

    fn append(&self, state: &mut State, line: &str) -> io::Result<()> {
        let mut file = match platform::open_private_file(&self.file, true) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                platform::create_private_file(&self.file)?
            }
            opened => opened?,
        };
        file.seek(io::SeekFrom::End(0))?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        state.lines_in_file += 1;
        Ok(())
    }

    /// Replaces the file with the entries in memory, oldest first.
    fn rewrite(&self, state: &mut State) -> io::Result<()> {
        let text: String = state.entries.iter().filter_map(format_line).collect();
        let mut name = self.file.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}.tmp", std::process::id()));
        let temporary = self.file.with_file_name(name);
        let _ = std::fs::remove_file(&temporary);
        let written = platform::create_private_file(&temporary)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &self.file));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        state.lines_in_file = state.entries.len();
        written
    }
}

impl State {
    fn push(&mut self, entry: Entry) {
        self.entries.retain(|kept| kept.path != entry.path);
        self.entries.push_back(entry);
        if self.entries.len() > MAX_ENTRIES {
            self.entries.pop_front();
        }
    }
}

/// Whether the entry's path, not followed if it is a link, is still the very file
/// we stored, unchanged since: a regular file of ours with `meta`'s size and SHA-256.
fn holds(entry: &Entry, meta: &Meta) -> bool {
    let Ok(file) = platform::open_private_file(&entry.path, false) else {
        return false;
    };
    match platform::file_stamp(&file) {
        Ok(stamp)
            if stamp.id() == entry.id
                && stamp.modified_ns == entry.modified_ns
                && stamp.size == meta.size => {}
        _ => return false,
    }
    let mut hasher = Sha256::new();
    super::hash_into(&mut hasher, (&file).take(meta.size), |_| {}).ok() == Some(meta.size)
        && Some(<[u8; 32]>::from(hasher.finalize())) == meta.sha256
}

/// The line for `entry`, or nothing for a path too long or not UTF-8.
fn format_line(entry: &Entry) -> Option<String> {
    let path = entry
        .path
        .to_str()
        .filter(|path| path.len() <= MAX_PATH_LEN)?;
    Some(format!(
        "{FORMAT} {} {} {} {} {} {} {}\n",
        entry.id.device,
        entry.id.inode,
        entry.modified_ns,
        entry.meta.size,
        hex::encode(entry.meta.sha256?),
        hex::encode(&entry.meta.name),
        hex::encode(path),
    ))
}

/// The exact form [`format_line`] writes (without its line feed), or nothing.
fn parse_line(line: &str) -> Option<Entry> {
    let mut words = line.split(' ');
    if words.next()? != FORMAT {
        return None;
    }
    let number = |word: &str| {
        word.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| word.parse())
    };
    let signed = |word: &str| {
        let digits = word.strip_prefix('-').unwrap_or(word);
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| word.parse())
    };
    let device = number(words.next()?)?.ok()?;
    let inode = number(words.next()?)?.ok()?;
    let modified_ns = signed(words.next()?)?.ok()?;
    let size = number(words.next()?)?.ok()?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(words.next()?, &mut sha256).ok()?;
    let name = String::from_utf8(hex::decode(words.next()?).ok()?).ok()?;
    let path = String::from_utf8(hex::decode(words.next()?).ok()?).ok()?;
    if words.next().is_some() || name.is_empty() || path.len() > MAX_PATH_LEN {
        return None;
    }
    Some(Entry {
        meta: Meta {
            name,
            size,
            sha256: Some(sha256),
            sender: None,
        },
        path: PathBuf::from(path),
        id: FileId { device, inode },
        modified_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, data: &[u8]) -> Meta {
        Meta {
            name: name.into(),
            size: data.len() as u64,
            sha256: Some(Sha256::digest(data).into()),
            sender: None,
        }
    }

    /// Stores `data` as `name` in `dir` the way a transfer does: remembered, then
    /// renamed from a part file.
    fn store(record: &StoredRecord, dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let part = dir.join(format!(".{name}.part"));
        std::fs::write(&part, data).unwrap();
        let target = dir.join(name);
        let file = File::open(&part).unwrap();
        record
            .remember(dir, &meta(name, data), &target, &file)
            .unwrap();
        std::fs::rename(&part, &target).unwrap();
        target
    }

    fn record_in(dir: &Path) -> (PathBuf, StoredRecord) {
        let file = dir.join("alice.stored");
        (file.clone(), StoredRecord::open(file))
    }

    #[test]
    fn finds_a_file_it_stored_also_after_a_restart() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (file, record) = record_in(home.path());
        let stored = store(&record, downloads.path(), "a.txt", b"abc");
        assert_eq!(
            record.find(downloads.path(), &meta("a.txt", b"abc")),
            Some(stored.clone())
        );
        let restarted = StoredRecord::open(file);
        assert_eq!(
            restarted.find(downloads.path(), &meta("a.txt", b"abc")),
            Some(stored)
        );
        assert_eq!(
            restarted.find(downloads.path(), &meta("a.txt", b"abd")),
            None
        );
        assert_eq!(
            restarted.find(downloads.path(), &meta("b.txt", b"abc")),
            None
        );
        assert_eq!(
            restarted.find(home.path(), &meta("a.txt", b"abc")),
            None,
            "another folder"
        );
    }

    #[test]
    fn a_file_it_did_not_store_is_never_found() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (_, record) = record_in(home.path());
        std::fs::write(downloads.path().join("a.txt"), b"abc").unwrap();
        assert_eq!(record.find(downloads.path(), &meta("a.txt", b"abc")), None);
        // A file stored by us, then replaced by hand with the same bytes.
        let stored = store(&record, downloads.path(), "b.txt", b"abc");
        std::fs::remove_file(&stored).unwrap();
        std::fs::write(&stored, b"abc").unwrap();
        // Made under the freed inode number, maybe, but at a time of its own (set
        // apart here, as a clock tick may be coarser than this test).
        let earlier = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&stored)
            .unwrap()
            .set_modified(earlier)
            .unwrap();
        assert_eq!(record.find(downloads.path(), &meta("b.txt", b"abc")), None);
    }

    #[test]
    fn a_stored_file_that_changed_is_no_longer_found() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (_, record) = record_in(home.path());
        let stored = store(&record, downloads.path(), "a.txt", b"abc");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&stored)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert_eq!(record.find(downloads.path(), &meta("a.txt", b"abc")), None);
    }

    #[test]
    fn links_to_a_stored_file_never_count() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (_, record) = record_in(home.path());
        let stored = store(&record, downloads.path(), "a.txt", b"abc");
        std::fs::hard_link(&stored, home.path().join("elsewhere")).unwrap();
        assert_eq!(record.find(downloads.path(), &meta("a.txt", b"abc")), None);
        std::fs::remove_file(home.path().join("elsewhere")).unwrap();
        let moved = downloads.path().join("moved");
        std::fs::rename(&stored, &moved).unwrap();
        crate::platform::testing::symlink_file(&moved, &stored);
        assert_eq!(record.find(downloads.path(), &meta("a.txt", b"abc")), None);
    }

    #[test]
    fn a_corrupt_or_truncated_record_is_not_trusted() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (file, record) = record_in(home.path());
        let a = store(&record, downloads.path(), "a.txt", b"abc");
        let b = store(&record, downloads.path(), "b.txt", b"bcd");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2);

        // Cut inside the last line: the first line still counts, the cut one not.
        std::fs::write(&file, &text[..text.len() - 5]).unwrap();
        let cut = StoredRecord::open(file.clone());
        assert_eq!(cut.find(downloads.path(), &meta("a.txt", b"abc")), Some(a));
        assert_eq!(cut.find(downloads.path(), &meta("b.txt", b"bcd")), None);

        // Every single damaged byte of a line makes it worthless or points it at a
        // file that must still be the one stored, so nothing but the stored file is
        // ever found.
        let line = text.lines().nth(1).unwrap();
        std::fs::write(downloads.path().join("b (1).txt"), b"bcd").unwrap();
        for at in 0..line.len() {
            for replacement in [b'0', b'f', b' ', b'x', b'\n'] {
                let mut damaged = line.as_bytes().to_vec();
                damaged[at] = replacement;
                damaged.push(b'\n');
                std::fs::write(&file, &damaged).unwrap();
                let found =
                    StoredRecord::open(file.clone()).find(downloads.path(), &meta("b.txt", b"bcd"));
                assert!(
                    found.is_none() || found == Some(b.clone()),
                    "{at}: {found:?}"
                );
            }
        }

        // A record pointed by hand at a file chat never stored.
        let canonical = std::fs::canonicalize(downloads.path()).unwrap();
        let hex_path = |name: &str| hex::encode(canonical.join(name).to_str().unwrap());
        let forged = line.replace(&hex_path("b.txt"), &hex_path("b (1).txt"));
        assert_ne!(forged, line);
        std::fs::write(&file, format!("{forged}\n")).unwrap();
        let forged = StoredRecord::open(file.clone());
        assert_eq!(forged.find(downloads.path(), &meta("b.txt", b"bcd")), None);

        // Garbage, and a record too large for `chat` to have written.
        std::fs::write(&file, [0xffu8; 300]).unwrap();
        assert_eq!(
            StoredRecord::open(file.clone()).find(downloads.path(), &meta("a.txt", b"abc")),
            None
        );
        let mut huge = text.repeat((MAX_FILE_LEN as usize / text.len()) + 1);
        huge.insert_str(0, "junk\n");
        std::fs::write(&file, huge).unwrap();
        let record = StoredRecord::open(file);
        assert!(record.state.lock().unwrap().entries.len() <= MAX_ENTRIES);
    }

    #[test]
    fn the_record_stays_bounded_and_keeps_the_newest() {
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (file, record) = record_in(home.path());
        let first = store(&record, downloads.path(), "first", b"1");
        for i in 0..2 * MAX_ENTRIES {
            let entry = Entry {
                meta: meta(&format!("n{i}"), b""),
                path: downloads.path().join(format!("n{i}")),
                id: FileId {
                    device: 1,
                    inode: i as u64,
                },
                modified_ns: 0,
            };
            let mut state = record.state.lock().unwrap();
            state.push(entry.clone());
            if state.lines_in_file + 1 >= 2 * MAX_ENTRIES {
                record.rewrite(&mut state).unwrap();
            } else {
                record
                    .append(&mut state, &format_line(&entry).unwrap())
                    .unwrap();
            }
        }
        let last = store(&record, downloads.path(), "last", b"2");
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 2 * MAX_ENTRIES, "{lines} lines");
        let reopened = StoredRecord::open(file);
        assert_eq!(
            reopened.find(downloads.path(), &meta("first", b"1")),
            None,
            "forgotten"
        );
        assert_eq!(
            reopened.find(downloads.path(), &meta("last", b"2")),
            Some(last)
        );
        assert!(first.exists(), "forgetting a file leaves it where it is");
    }

    #[test]
    fn the_record_is_private() {
        use crate::platform::{self, Access};
        let home = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let (file, record) = record_in(home.path());
        store(&record, downloads.path(), "a.txt", b"abc");
        let (_, exposure) = platform::open_secret(&file, Access::Read).unwrap();
        assert_eq!(exposure, None);
    }
}
