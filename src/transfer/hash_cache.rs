//! The SHA-256s of files already hashed, so that sending an unchanged file again
//! skips the pass over its bytes. An entry is keyed by what changes whenever the
//! content can: device, inode, size, modification time and change time. A line per
//! entry in a private file beside the identity, appended as files are hashed, and
//! rewritten with the newest [`MAX_ENTRIES`] once it holds twice that many lines.
//!
//! It is only a cache: an unreadable file or line is ignored and the file is hashed
//! again. A wrong entry (a write through a shared mapping can leave the stamp alone)
//! could only make the receiver's check fail, never pass: the receiver hashes what it
//! receives, and an "already saved" answer to a cached hash makes the sender hash the
//! file again before it believes it (see `sending`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::platform::{self, FileStamp};

/// The cache's file, in the identity folder.
pub const FILE_NAME: &str = "hash_cache";
/// Entries kept; the least recently used go first.
pub const MAX_ENTRIES: usize = 16_384;
/// A file changed this recently could change again within the same timestamp tick
/// (two seconds on FAT) without its stamp showing it: its hash is not kept.
pub const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// The first word of every line: the format, so that another can replace it.
const FORMAT: &str = "v1";

/// A cache shared by the hashing threads of a session.
pub type SharedHashCache = Arc<Mutex<HashCache>>;

#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    /// Each stamp's hash, and when it was last used (a counter).
    entries: HashMap<FileStamp, ([u8; 32], u64)>,
    /// The same stamps by when they were last used, least recent first.
    by_use: BTreeMap<u64, FileStamp>,
    uses: u64,
    /// Lines in the file, valid or not: how much appending has grown it.
    lines_in_file: usize,
}

impl HashCache {
    /// Loads the cache at `path`; a missing or unreadable file is an empty cache.
    pub fn open(path: PathBuf) -> HashCache {
        let mut cache = HashCache {
            path,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            uses: 0,
            lines_in_file: 0,
        };
        let text = platform::open_private_file(&cache.path, false)
            .and_then(io::read_to_string)
            .unwrap_or_default();
        for line in text.lines() {
            cache.lines_in_file += 1;
            if let Some((stamp, sha256)) = parse_line(line) {
                cache.remember(stamp, sha256);
            }
        }
        cache
    }

    pub fn shared(self) -> SharedHashCache {
        Arc::new(Mutex::new(self))
    }

    /// The hash of the file with `stamp`, if it was hashed before.
    pub fn get(&mut self, stamp: &FileStamp) -> Option<[u8; 32]> {
        let (sha256, last_used) = self.entries.get_mut(stamp)?;
        self.uses += 1;
        self.by_use.remove(last_used);
        self.by_use.insert(self.uses, *stamp);
        *last_used = self.uses;
        Some(*sha256)
    }

    /// Keeps `sha256` for the file with `stamp`, whose hashing began at `hashed_at`,
    /// unless the file had changed too shortly before to trust its stamp.
    pub fn insert(&mut self, stamp: FileStamp, sha256: [u8; 32], hashed_at: SystemTime) {
        if !stamp.settled_before(hashed_at, SETTLED_AFTER) {
            return;
        }
        self.remember(stamp, sha256);
        // Failing to write costs only a hash pass next time.
        let _ = if self.lines_in_file + 1 >= 2 * MAX_ENTRIES {
            self.rewrite()
        } else {
            self.append(&stamp, &sha256)
        };
    }

    fn remember(&mut self, stamp: FileStamp, sha256: [u8; 32]) {
        self.uses += 1;
        if let Some((_, last_used)) = self.entries.insert(stamp, (sha256, self.uses)) {
            self.by_use.remove(&last_used);
        }
        self.by_use.insert(self.uses, stamp);
        if self.entries.len() > MAX_ENTRIES
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.entries.remove(&oldest);
        }
    }

    fn append(&mut self, stamp: &FileStamp, sha256: &[u8; 32]) -> io::Result<()> {
        let mut file = match platform::open_private_file(&self.path, true) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                platform::create_private_file(&self.path)?
            }
            opened => opened?,
        };
        file.seek(io::SeekFrom::End(0))?;
        file.write_all(format_line(stamp, sha256).as_bytes())?;
        self.lines_in_file += 1;
        Ok(())
    }

    /// Replaces the file with the entries in memory, oldest first.
    fn rewrite(&mut self) -> io::Result<()> {
        let text: String = self
            .by_use
            .values()
            .map(|stamp| format_line(stamp, &self.entries[stamp].0))
            .collect();
        let temporary = temporary_path(&self.path);
        let written = write_new(&temporary, text.as_bytes())
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        self.lines_in_file = self.entries.len();
        written
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file: File = platform::create_private_file(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn format_line(stamp: &FileStamp, sha256: &[u8; 32]) -> String {
    format!(
        "{FORMAT} {} {} {} {} {} {}\n",
        stamp.device,
        stamp.inode,
        stamp.size,
        stamp.modified_ns,
        stamp.changed_ns,
        hex::encode(sha256)
    )
}

fn parse_line(line: &str) -> Option<(FileStamp, [u8; 32])> {
    let mut words = line.split(' ');
    if words.next()? != FORMAT {
        return None;
    }
    let stamp = FileStamp {
        device: words.next()?.parse().ok()?,
        inode: words.next()?.parse().ok()?,
        size: words.next()?.parse().ok()?,
        modified_ns: words.next()?.parse().ok()?,
        changed_ns: words.next()?.parse().ok()?,
    };
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(words.next()?, &mut sha256).ok()?;
    words.next().is_none().then_some((stamp, sha256))
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn stamp(inode: u64) -> FileStamp {
        FileStamp {
            device: 2049,
            inode,
            size: 1 << 30,
            modified_ns: 1_700_000_000_123_456_789,
            changed_ns: -5,
        }
    }

    fn long_after() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    #[test]
    fn lines_read_back_as_written() {
        let line = format_line(&stamp(7), &[0xab; 32]);
        assert_eq!(parse_line(line.trim_end()), Some((stamp(7), [0xab; 32])));
    }

    #[test]
    fn damaged_lines_are_ignored() {
        let good = format_line(&stamp(7), &[1; 32]);
        let good = good.trim_end();
        for bad in [
            "",
            &good.replacen("v1", "v2", 1),
            &good[..good.len() - 1],
            &format!("{good} extra"),
            &good.replacen(" 7 ", " -7 ", 1),
            &good.replacen(" 7 ", " 7  ", 1),
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_damage_around_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut cache = HashCache::open(path.clone());
        cache.insert(stamp(1), [1; 32], long_after());
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"garbage\n").unwrap();
        drop(file);
        let mut cache = HashCache::open(path.clone());
        cache.insert(stamp(2), [2; 32], long_after());
        let mut cache = HashCache::open(path);
        assert_eq!(cache.get(&stamp(1)), Some([1; 32]));
        assert_eq!(cache.get(&stamp(2)), Some([2; 32]));
        assert_eq!(cache.get(&stamp(3)), None);
    }

    #[test]
    fn any_change_to_the_stamp_misses() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = HashCache::open(dir.path().join(FILE_NAME));
        cache.insert(stamp(1), [1; 32], long_after());
        let base = stamp(1);
        for changed in [
            FileStamp { device: 1, ..base },
            FileStamp { inode: 2, ..base },
            FileStamp { size: 1, ..base },
            FileStamp {
                modified_ns: base.modified_ns + 1,
                ..base
            },
            FileStamp {
                changed_ns: base.changed_ns + 1,
                ..base
            },
        ] {
            assert_eq!(cache.get(&changed), None, "{changed:?}");
        }
    }

    #[test]
    fn a_file_changed_just_before_hashing_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = HashCache::open(dir.path().join(FILE_NAME));
        let changed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fresh = FileStamp {
            modified_ns: 1_700_000_000 * 1_000_000_000,
            changed_ns: 1_700_000_000 * 1_000_000_000,
            ..stamp(1)
        };
        cache.insert(fresh, [1; 32], changed_at + Duration::from_secs(1));
        assert_eq!(cache.get(&fresh), None);
        cache.insert(fresh, [1; 32], changed_at + SETTLED_AFTER);
        assert_eq!(cache.get(&fresh), Some([1; 32]));
    }

    #[test]
    fn the_least_recently_used_go_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut cache = HashCache::open(path.clone());
        cache.insert(stamp(0), [0; 32], long_after());
        for inode in 1..=(2 * MAX_ENTRIES as u64) {
            assert!(cache.get(&stamp(0)).is_some(), "kept while in use");
            cache.insert(stamp(inode), [1; 32], long_after());
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        assert_eq!(cache.get(&stamp(1)), None, "the oldest unused one went");
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 2 * MAX_ENTRIES, "{lines} lines");
        let mut reopened = HashCache::open(path);
        assert_eq!(reopened.get(&stamp(0)), Some([0; 32]));
        assert_eq!(reopened.get(&stamp(2 * MAX_ENTRIES as u64)), Some([1; 32]));
    }
}
