//! A folder's manifest: every folder and file in it, in the order they travel,
//! with each file's size and SHA-256. Encoding and checking are pure; the receiver
//! acts on a manifest only once all of it has passed [`check`].

use std::collections::HashMap;

use thiserror::Error;

use super::name::{NameError, NameRules, sanitize_with};
use super::progress::FileList;

/// Entries one folder may have (folders and files together).
pub const MAX_ENTRIES: u32 = 100_000;
/// Path components below the folder itself.
pub const MAX_DEPTH: usize = 64;
/// Bytes in one entry's path.
pub const MAX_PATH_LEN: usize = 4096;
/// Bytes in the whole manifest.
pub const MAX_MANIFEST_LEN: u32 = 16 << 20;

const KIND_FOLDER: u8 = 0;
const KIND_FILE: u8 = 1;
/// `kind` and `path_len`: the least an entry takes, which bounds what a declared
/// entry count may make us allocate.
const ENTRY_HEADER_LEN: usize = 3;
const FILE_TAIL_LEN: usize = 8 + 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Folder,
    File { size: u64, sha256: [u8; 32] },
}

/// One entry as the sender lists it: its path inside the folder, `/` between
/// components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
}

/// One entry as the receiver will store it: every component through the name rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub components: Vec<String>,
    pub kind: Kind,
}

/// A manifest that passed every check, with what the receiver needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub entries: Vec<StoredEntry>,
    pub total_size: u64,
    pub files: usize,
}

impl Checked {
    /// The files by the paths they are stored under, in the order they travel.
    pub fn file_list(&self) -> FileList {
        FileList::new(self.entries.iter().filter_map(|entry| match entry.kind {
            Kind::File { size, .. } => Some((entry.components.join("/"), size)),
            Kind::Folder => None,
        }))
    }
}

/// Why a manifest is refused. Nothing has been written when one is.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the folder lists {0} entries, more than the {MAX_ENTRIES} allowed")]
    TooManyEntries(u64),
    #[error("the folder's manifest is {0} bytes, more than the {MAX_MANIFEST_LEN} allowed")]
    TooLong(u64),
    #[error("the manifest ends inside entry {0}")]
    Truncated(usize),
    #[error("the manifest has {0} bytes after its last entry")]
    TrailingBytes(usize),
    #[error("entry {0} has an unknown kind {1}")]
    UnknownKind(usize, u8),
    #[error("entry {0} has a path that is not UTF-8")]
    NotUtf8(usize),
    #[error("entry {index} has a path longer than {MAX_PATH_LEN} bytes")]
    PathTooLong { index: usize },
    #[error("{path:?} is more than {MAX_DEPTH} folders deep")]
    TooDeep { path: String },
    #[error("{path:?} has an empty component (an absolute path, or `//`)")]
    EmptyComponent { path: String },
    #[error("{path:?}: {source}")]
    BadComponent { path: String, source: NameError },
    #[error("{path:?} is listed twice (after the name rules)")]
    Duplicate { path: String },
    #[error("{path:?} is listed as a file and as a folder")]
    FileAndFolder { path: String },
    #[error("{path:?} comes before its folder is listed")]
    MissingParent { path: String },
    #[error("the files' sizes add up to more than 2^64 bytes")]
    SizeOverflow,
    #[error("the files add up to {actual} bytes, not the {declared} announced")]
    WrongTotal { declared: u64, actual: u64 },
}

/// The bytes `entry` takes in a manifest.
pub fn encoded_len(entry: &Entry) -> usize {
    let sized = match entry.kind {
        Kind::Folder => 0,
        Kind::File { .. } => 8 + 32,
    };
    1 + 2 + entry.path.len() + sized
}

/// The manifest bytes for `entries`, in their order.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let kind = match entry.kind {
            Kind::Folder => KIND_FOLDER,
            Kind::File { .. } => KIND_FILE,
        };
        out.push(kind);
        let path_len = u16::try_from(entry.path.len()).expect("paths are at most MAX_PATH_LEN");
        out.extend_from_slice(&path_len.to_be_bytes());
        out.extend_from_slice(entry.path.as_bytes());
        if let Kind::File { size, sha256 } = entry.kind {
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&sha256);
        }
    }
    out
}

/// Checks what a folder's header announces before any of its manifest is read.
pub fn check_announced(entries: u32, manifest_len: u32) -> Result<(), ManifestError> {
    if entries > MAX_ENTRIES {
        return Err(ManifestError::TooManyEntries(entries.into()));
    }
    if manifest_len > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLong(manifest_len.into()));
    }
    Ok(())
}

/// Parses and checks a whole manifest of `declared_entries` entries whose files add
/// up to `declared_total` bytes, applying `rules` to every path component.
///
/// Every folder is listed before what it holds; no path is listed twice, as the
/// receiver would store it (so `.a` and `_a` collide, and on Windows `A` and `a`);
/// nothing is both a file and a folder; and the sizes add up without overflow.
pub fn check(
    bytes: &[u8],
    declared_entries: u32,
    declared_total: u64,
    rules: NameRules,
) -> Result<Checked, ManifestError> {
    check_announced(
        declared_entries,
        u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    )?;
    let count = declared_entries as usize;
    let mut entries = Vec::with_capacity(count.min(bytes.len() / ENTRY_HEADER_LEN));
    // Stored path (folded as `rules` compare names) → whether it is a folder.
    let mut seen: HashMap<String, bool> = HashMap::with_capacity(entries.capacity());
    let mut total: u64 = 0;
    let mut files = 0;
    let mut rest = bytes;
    for index in 0..count {
        let (kind, path, after) = split_entry(rest, index)?;
        rest = after;
        let components = stored_components(path, rules)?;
        // Components hold no `/`, so a parent's key is the front of its child's.
        let key = components
            .iter()
            .map(|c| rules.key(c))
            .collect::<Vec<_>>()
            .join("/");
        if let Some((parent_key, _)) = key.rsplit_once('/') {
            match seen.get(parent_key) {
                Some(true) => {}
                Some(false) => {
                    return Err(ManifestError::FileAndFolder {
                        path: components[..components.len() - 1].join("/"),
                    });
                }
                None => {
                    return Err(ManifestError::MissingParent {
                        path: path.to_owned(),
                    });
                }
            }
        }
        let is_folder = kind == Kind::Folder;
        if let Some(&was_folder) = seen.get(&key) {
            let path = path.to_owned();
            return Err(if was_folder == is_folder {
                ManifestError::Duplicate { path }
            } else {
                ManifestError::FileAndFolder { path }
            });
        }
        seen.insert(key, is_folder);
        if let Kind::File { size, .. } = kind {
            total = total.checked_add(size).ok_or(ManifestError::SizeOverflow)?;
            files += 1;
        }
        entries.push(StoredEntry { components, kind });
    }
    if !rest.is_empty() {
        return Err(ManifestError::TrailingBytes(rest.len()));
    }
    if total != declared_total {
        return Err(ManifestError::WrongTotal {
            declared: declared_total,
            actual: total,
        });
    }
    Ok(Checked {
        entries,
        total_size: total,
        files,
    })
}

/// The kind and path of the entry at the start of `bytes`, and what follows it.
fn split_entry(bytes: &[u8], index: usize) -> Result<(Kind, &str, &[u8]), ManifestError> {
    let truncated = ManifestError::Truncated(index);
    let [kind, len_high, len_low, rest @ ..] = bytes else {
        return Err(truncated);
    };
    let path_len = usize::from(u16::from_be_bytes([*len_high, *len_low]));
    if path_len > MAX_PATH_LEN {
        return Err(ManifestError::PathTooLong { index });
    }
    if rest.len() < path_len {
        return Err(truncated);
    }
    let (path, rest) = rest.split_at(path_len);
    let path = std::str::from_utf8(path).map_err(|_| ManifestError::NotUtf8(index))?;
    match *kind {
        KIND_FOLDER => Ok((Kind::Folder, path, rest)),
        KIND_FILE => {
            if rest.len() < FILE_TAIL_LEN {
                return Err(truncated);
            }
            let (tail, rest) = rest.split_at(FILE_TAIL_LEN);
            let size = u64::from_be_bytes(tail[..8].try_into().expect("8 bytes"));
            let sha256 = tail[8..].try_into().expect("32 bytes");
            Ok((Kind::File { size, sha256 }, path, rest))
        }
        other => Err(ManifestError::UnknownKind(index, other)),
    }
}

/// `path`'s components as they will be stored, each through the name rules.
fn stored_components(path: &str, rules: NameRules) -> Result<Vec<String>, ManifestError> {
    let depth = path.split('/').count();
    if depth > MAX_DEPTH {
        return Err(ManifestError::TooDeep {
            path: path.chars().take(64).collect(),
        });
    }
    path.split('/')
        .map(|component| {
            if component.is_empty() {
                return Err(ManifestError::EmptyComponent {
                    path: path.to_owned(),
                });
            }
            sanitize_with(component, rules).map_err(|source| ManifestError::BadComponent {
                path: path.to_owned(),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File {
                size,
                sha256: [7; 32],
            },
        }
    }

    fn folder(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Folder,
        }
    }

    fn checked(entries: &[Entry]) -> Result<Checked, ManifestError> {
        let total = entries
            .iter()
            .map(|e| match e.kind {
                Kind::File { size, .. } => size,
                Kind::Folder => 0,
            })
            .fold(0u64, u64::wrapping_add);
        check(
            &encode(entries),
            entries.len() as u32,
            total,
            NameRules::UNIX,
        )
    }

    #[test]
    fn a_tree_round_trips_with_its_names_stored_by_the_rules() {
        let entries = [
            folder("src"),
            folder("src/empty"),
            file("src/main.rs", 10),
            file("src/.hidden", 0),
            file("naïve café.txt", 5),
        ];
        let checked = checked(&entries).unwrap();
        assert_eq!(checked.total_size, 15);
        assert_eq!(checked.files, 3);
        let paths: Vec<String> = checked
            .entries
            .iter()
            .map(|e| e.components.join("/"))
            .collect();
        assert_eq!(
            paths,
            [
                "src",
                "src/empty",
                "src/main.rs",
                "src/_hidden",
                "naïve café.txt"
            ]
        );
    }

    #[test]
    fn paths_that_leave_the_folder_are_refused() {
        for path in ["..", "a/../b", "/etc/passwd", "a//b", "a/", ".", "a\\..\\b"] {
            let result = checked(&[folder("a"), file(path, 1)]);
            assert!(
                matches!(
                    result,
                    Err(ManifestError::BadComponent { .. } | ManifestError::EmptyComponent { .. })
                ),
                "{path}: {result:?}"
            );
        }
    }

    #[test]
    fn duplicates_and_a_file_that_is_also_a_folder_are_refused() {
        assert!(matches!(
            checked(&[file("a", 1), file("a", 1)]),
            Err(ManifestError::Duplicate { .. })
        ));
        assert!(matches!(
            checked(&[file(".a", 1), file("_a", 1)]),
            Err(ManifestError::Duplicate { .. })
        ));
        assert!(matches!(
            checked(&[file("a", 1), folder("a")]),
            Err(ManifestError::FileAndFolder { .. })
        ));
        assert!(matches!(
            checked(&[file("a", 1), file("a/b", 1)]),
            Err(ManifestError::FileAndFolder { .. })
        ));
        assert!(matches!(
            checked(&[file("a/b", 1)]),
            Err(ManifestError::MissingParent { .. })
        ));
        let entries = [file("Read.me", 1), file("READ.ME", 1)];
        let bytes = encode(&entries);
        assert!(check(&bytes, 2, 2, NameRules::UNIX).is_ok());
        assert!(matches!(
            check(&bytes, 2, 2, NameRules::WINDOWS),
            Err(ManifestError::Duplicate { .. })
        ));
    }

    #[test]
    fn depth_and_path_length_are_bounded() {
        let mut deep = vec![folder("d")];
        let mut path = String::from("d");
        for _ in 1..=MAX_DEPTH {
            path.push_str("/d");
            deep.push(folder(&path));
        }
        assert!(matches!(checked(&deep), Err(ManifestError::TooDeep { .. })));
        assert!(checked(&deep[..MAX_DEPTH]).is_ok());
        let ten_thousand = vec!["d"; 10_000].join("/");
        assert!(matches!(
            checked(&[folder(&ten_thousand)]),
            Err(ManifestError::PathTooLong { .. })
        ));
    }

    #[test]
    fn counts_and_lengths_are_checked_before_anything_is_allocated() {
        assert_eq!(
            check_announced(1_000_000, 100),
            Err(ManifestError::TooManyEntries(1_000_000))
        );
        assert_eq!(
            check_announced(10, u32::MAX),
            Err(ManifestError::TooLong(u32::MAX.into()))
        );
        // A count the bytes cannot hold fails where they end, having reserved
        // room only for what the bytes could hold.
        let bytes = encode(&[file("a", 1)]);
        assert_eq!(
            check(&bytes, MAX_ENTRIES, 1, NameRules::UNIX),
            Err(ManifestError::Truncated(1))
        );
        assert_eq!(
            check(&bytes, 0, 0, NameRules::UNIX),
            Err(ManifestError::TrailingBytes(bytes.len()))
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                check(&bytes[..cut], 1, 1, NameRules::UNIX),
                Err(ManifestError::Truncated(0)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn sizes_that_overflow_or_miss_the_total_are_refused() {
        let entries = [file("a", u64::MAX), file("b", 2)];
        assert_eq!(
            check(&encode(&entries), 2, 1, NameRules::UNIX),
            Err(ManifestError::SizeOverflow)
        );
        assert_eq!(
            check(&encode(&[file("a", 3)]), 1, 4, NameRules::UNIX),
            Err(ManifestError::WrongTotal {
                declared: 4,
                actual: 3
            })
        );
    }

    #[test]
    fn unknown_kinds_and_bad_text_are_refused() {
        let mut bytes = encode(&[folder("a")]);
        bytes[0] = 9;
        assert_eq!(
            check(&bytes, 1, 0, NameRules::UNIX),
            Err(ManifestError::UnknownKind(0, 9))
        );
        let mut bytes = encode(&[folder("a")]);
        bytes[3] = 0xff;
        assert_eq!(
            check(&bytes, 1, 0, NameRules::UNIX),
            Err(ManifestError::NotUtf8(0))
        );
    }
}
