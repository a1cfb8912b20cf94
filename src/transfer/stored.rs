//! The files this session has stored, so that an offer repeated only because its
//! verdict was lost (the connection dropped after the file was saved) is answered
//! "already have it" instead of storing a second copy.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How many stored files are remembered; older ones are forgotten first.
const MAX_REMEMBERED: usize = 256;

/// Recently stored files, by the offer that brought them.
#[derive(Debug, Default)]
pub struct StoredFiles {
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    size: u64,
    sha256: [u8; 32],
    path: PathBuf,
    modified: SystemTime,
}

impl StoredFiles {
    /// Remembers that the offer (`name`, `size`, `sha256`) was stored at `path`.
    pub fn remember(&mut self, name: &str, size: u64, sha256: [u8; 32], path: &Path) {
        let Ok(modified) = std::fs::symlink_metadata(path).and_then(|m| m.modified()) else {
            return;
        };
        if self.entries.len() == MAX_REMEMBERED {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            name: name.to_owned(),
            size,
            sha256,
            path: path.to_owned(),
            modified,
        });
    }

    /// Where this very offer was stored, if the file is still there as it was stored:
    /// the same size and modification time, not replaced by a link. This reads the
    /// file's metadata: call it off the async runtime.
    pub fn find(&self, name: &str, size: u64, sha256: [u8; 32]) -> Option<PathBuf> {
        self.entries
            .iter()
            .rev()
            .filter(|entry| entry.name == name && entry.size == size && entry.sha256 == sha256)
            .find(|entry| {
                std::fs::symlink_metadata(&entry.path).is_ok_and(|now| {
                    now.is_file()
                        && now.len() == entry.size
                        && now.modified().ok() == Some(entry.modified)
                })
            })
            .map(|entry| entry.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_stored_file_only_while_it_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"abc").unwrap();
        let mut stored = StoredFiles::default();
        stored.remember("a.txt", 3, [1; 32], &path);
        assert_eq!(stored.find("a.txt", 3, [1; 32]), Some(path.clone()));
        assert_eq!(stored.find("a.txt", 3, [2; 32]), None);
        assert_eq!(stored.find("b.txt", 3, [1; 32]), None);
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(stored.find("a.txt", 3, [1; 32]), None, "changed since");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(stored.find("a.txt", 3, [1; 32]), None, "gone");
    }

    #[test]
    fn forgets_the_oldest_beyond_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut stored = StoredFiles::default();
        for i in 0..=MAX_REMEMBERED {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, b"").unwrap();
            stored.remember(&i.to_string(), 0, [0; 32], &path);
        }
        assert_eq!(stored.find("0", 0, [0; 32]), None);
        assert!(stored.find("1", 0, [0; 32]).is_some());
    }
}
