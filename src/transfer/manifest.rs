//! A folder's manifest: every folder and file in it, in the order they travel,
//! with each file's size and SHA-256. Encoding and checking are pure; the receiver
//! acts on a manifest only once all of it has passed [`check`].
//!
//! The checked form is a tree held in a few flat arrays, each entry its parent's
//! index and its own stored name, so that what a manifest costs to hold is bounded
//! by its bytes and entries ([`memory_bound`]) however deep its paths run.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// Heap bytes a receiver may spend on each entry beyond the manifest's own bytes,
/// while checking it and while receiving its folder: the entry's place in the tree,
/// a file's size and SHA-256, the index that finds duplicates, and the progress
/// report's count.
pub const ENTRY_COST: u64 = 128;
/// The most heap that manifests may hold at once in one session: what the largest
/// manifest may cost, so that any one folder fits, and nothing beyond.
pub const MEMORY_BUDGET: u64 = memory_bound(MAX_ENTRIES, MAX_MANIFEST_LEN);

const KIND_FOLDER: u8 = 0;
const KIND_FILE: u8 = 1;
/// `kind` and `path_len`: the least an entry takes, which bounds what a declared
/// entry count may make us allocate.
const ENTRY_HEADER_LEN: usize = 3;
const FILE_TAIL_LEN: usize = 8 + 32;
/// The parent of an entry at the top of the folder, and the end of a chain in the
/// index: no entry has this index.
const NONE: u32 = u32::MAX;

/// The most heap a manifest of `manifest_len` bytes and `entries` entries holds on
/// a receiver: its bytes as they arrive, the stored names as long again (a stored
/// name is never longer than the manifest, [`check`] makes sure), and
/// [`ENTRY_COST`] for each entry.
pub const fn memory_bound(entries: u32, manifest_len: u32) -> u64 {
    2 * manifest_len as u64 + entries as u64 * ENTRY_COST
}

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

/// An entry's place in the checked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// The folder it is in: an earlier entry, or [`NONE`] at the top.
    parent: u32,
    /// Where its stored name ends in [`Checked::names`]; the previous entry's name
    /// ends where it starts.
    name_end: u32,
    /// Its index among the files, or [`NONE`] for a folder.
    file: u32,
}

/// A file of the checked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileNode {
    entry: u32,
    size: u64,
    sha256: [u8; 32],
}

/// A manifest that passed every check: a tree in manifest order, each name as the
/// receiver will store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Every entry's stored name (its last component), one after the other.
    names: String,
    nodes: Vec<Node>,
    files: Vec<FileNode>,
    pub total_size: u64,
}

/// One entry of a [`Checked`] manifest, as the receiver will store it.
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    checked: &'a Checked,
    index: usize,
}

impl Checked {
    /// How many entries it has, folders and files.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many of its entries are files.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Its entries in manifest order: every folder before what it holds.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = StoredEntry<'_>> {
        (0..self.nodes.len()).map(|index| StoredEntry {
            checked: self,
            index,
        })
    }

    /// The `index`th file, in the order files travel.
    pub fn file(&self, index: usize) -> Option<StoredEntry<'_>> {
        let file = self.files.get(index)?;
        Some(StoredEntry {
            checked: self,
            index: file.entry as usize,
        })
    }

    /// The heap bytes it holds, by its own count.
    pub fn heap_len(&self) -> usize {
        self.names.capacity()
            + self.nodes.capacity() * size_of::<Node>()
            + self.files.capacity() * size_of::<FileNode>()
    }

    /// The files by the paths they are stored under, in the order they travel; each
    /// path is made when it is told, from the manifest the list shares.
    pub fn file_list(self: &Arc<Self>) -> FileList {
        let checked = Arc::clone(self);
        FileList::from_fn(self.files.iter().map(|file| file.size), move |index| {
            checked
                .file(index)
                .map(|entry| entry.path())
                .unwrap_or_default()
        })
    }

    fn name(&self, index: usize) -> &str {
        let start = index
            .checked_sub(1)
            .map_or(0, |before| self.nodes[before].name_end as usize);
        &self.names[start..self.nodes[index].name_end as usize]
    }
}

impl<'a> StoredEntry<'a> {
    pub fn kind(&self) -> Kind {
        match self.checked.nodes[self.index].file {
            NONE => Kind::Folder,
            file => {
                let file = &self.checked.files[file as usize];
                Kind::File {
                    size: file.size,
                    sha256: file.sha256,
                }
            }
        }
    }

    /// Its last component, as stored.
    pub fn name(&self) -> &'a str {
        self.checked.name(self.index)
    }

    /// Its components, as stored, from the top of the folder down: at most
    /// [`MAX_DEPTH`].
    pub fn components(&self) -> Vec<&'a str> {
        let nodes = &self.checked.nodes;
        let mut components = Vec::new();
        let mut at = self.index as u32;
        while at != NONE {
            components.push(self.checked.name(at as usize));
            at = nodes[at as usize].parent;
        }
        components.reverse();
        components
    }

    /// Its stored path, `/` between components.
    pub fn path(&self) -> String {
        self.components().join("/")
    }

    /// Where it is stored inside `folder`.
    pub fn path_in(&self, folder: &Path) -> PathBuf {
        let mut path = folder.to_owned();
        path.extend(self.components());
        path
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
    /// Names that grow under the name rules (normal form C can lengthen text) may
    /// not make the tree hold more than the manifest's bytes.
    #[error("the names, as stored, take more bytes than the manifest")]
    NamesTooLong,
    /// The caller stopped the check (its connection ended) before it was done.
    #[error("the check was stopped")]
    Stopped,
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
    check_until(bytes, declared_entries, declared_total, rules, || false)
}

/// [`check`], which gives up with [`ManifestError::Stopped`] once `stop` says so:
/// it is asked before each entry.
pub fn check_until(
    bytes: &[u8],
    declared_entries: u32,
    declared_total: u64,
    rules: NameRules,
    stop: impl Fn() -> bool,
) -> Result<Checked, ManifestError> {
    check_announced(
        declared_entries,
        u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    )?;
    let count = declared_entries as usize;
    let mut tree = Tree::new(count.min(bytes.len() / ENTRY_HEADER_LEN), rules);
    let mut total: u64 = 0;
    let mut rest = bytes;
    // One entry's stored components at a time.
    let mut components = Vec::with_capacity(MAX_DEPTH);
    for index in 0..count {
        if stop() {
            return Err(ManifestError::Stopped);
        }
        let (kind, path, after) = split_entry(rest, index)?;
        rest = after;
        stored_components(path, rules, &mut components)?;
        let (name, folders) = components.split_last().expect("a path has a component");
        let mut parent = NONE;
        for (depth, folder) in folders.iter().enumerate() {
            parent = match tree.find(parent, &rules.key(folder)) {
                (Some(found), _) if tree.is_folder(found) => found,
                // A file where its folder should be; further up, the folder below
                // it could not have been listed.
                (Some(_), _) if depth + 1 == folders.len() => {
                    return Err(ManifestError::FileAndFolder {
                        path: folders.join("/"),
                    });
                }
                _ => {
                    return Err(ManifestError::MissingParent {
                        path: path.to_owned(),
                    });
                }
            };
        }
        let is_folder = kind == Kind::Folder;
        let (found, hash) = tree.find(parent, &rules.key(name));
        if let Some(found) = found {
            let path = path.to_owned();
            return Err(if tree.is_folder(found) == is_folder {
                ManifestError::Duplicate { path }
            } else {
                ManifestError::FileAndFolder { path }
            });
        }
        if tree.checked.names.len() + name.len() > bytes.len() {
            return Err(ManifestError::NamesTooLong);
        }
        if let Kind::File { size, .. } = kind {
            total = total.checked_add(size).ok_or(ManifestError::SizeOverflow)?;
        }
        tree.push(parent, name, kind, hash);
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
    let mut checked = tree.checked;
    checked.total_size = total;
    checked.names.shrink_to_fit();
    checked.nodes.shrink_to_fit();
    checked.files.shrink_to_fit();
    Ok(checked)
}

/// A checked tree as it grows, with an index to find an entry by its folder and
/// name as the rules compare names.
struct Tree {
    checked: Checked,
    rules: NameRules,
    /// The hash of (parent, key of name) → the last entry with that hash.
    index: HashMap<u64, u32>,
    /// For each entry, the entry before it with the same hash, or [`NONE`].
    same_hash: Vec<u32>,
    hasher: RandomState,
}

impl Tree {
    fn new(entries: usize, rules: NameRules) -> Tree {
        Tree {
            checked: Checked {
                names: String::new(),
                nodes: Vec::with_capacity(entries),
                files: Vec::new(),
                total_size: 0,
            },
            rules,
            index: HashMap::with_capacity(entries),
            same_hash: Vec::with_capacity(entries),
            hasher: RandomState::new(),
        }
    }

    fn is_folder(&self, entry: u32) -> bool {
        self.checked.nodes[entry as usize].file == NONE
    }

    /// The entry in `parent` whose name has `key`, if any, and the hash it has or
    /// would have in the index.
    fn find(&self, parent: u32, key: &str) -> (Option<u32>, u64) {
        let hash = self.hasher.hash_one((parent, key));
        let mut at = self.index.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let node = &self.checked.nodes[at as usize];
            if node.parent == parent && self.rules.key(self.checked.name(at as usize)) == key {
                return (Some(at), hash);
            }
            at = self.same_hash[at as usize];
        }
        (None, hash)
    }

    /// Adds an entry named `name` in `parent`, whose key has `hash`.
    fn push(&mut self, parent: u32, name: &str, kind: Kind, hash: u64) {
        let checked = &mut self.checked;
        // At most MAX_ENTRIES entries, and names no longer than the manifest, whose
        // length fits in a u32: the casts below are exact.
        let entry = checked.nodes.len() as u32;
        checked.names.push_str(name);
        let file = match kind {
            Kind::Folder => NONE,
            Kind::File { size, sha256 } => {
                checked.files.push(FileNode {
                    entry,
                    size,
                    sha256,
                });
                checked.files.len() as u32 - 1
            }
        };
        checked.nodes.push(Node {
            parent,
            name_end: checked.names.len() as u32,
            file,
        });
        self.same_hash
            .push(self.index.insert(hash, entry).unwrap_or(NONE));
    }
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

/// Puts `path`'s components as they will be stored, each through the name rules,
/// into `stored`.
fn stored_components(
    path: &str,
    rules: NameRules,
    stored: &mut Vec<String>,
) -> Result<(), ManifestError> {
    stored.clear();
    let depth = path.split('/').count();
    if depth > MAX_DEPTH {
        return Err(ManifestError::TooDeep {
            path: path.chars().take(64).collect(),
        });
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ManifestError::EmptyComponent {
                path: path.to_owned(),
            });
        }
        let name =
            sanitize_with(component, rules).map_err(|source| ManifestError::BadComponent {
                path: path.to_owned(),
                source,
            })?;
        stored.push(name);
    }
    Ok(())
}

/// A test folder's entries: the folder `sub`, then `files` with their contents'
/// sizes and SHA-256s.
#[cfg(test)]
pub(crate) fn entries_of(files: &[(&str, &[u8])]) -> Vec<Entry> {
    use sha2::{Digest, Sha256};
    let mut entries = vec![Entry {
        path: "sub".into(),
        kind: Kind::Folder,
    }];
    entries.extend(files.iter().map(|(path, data)| Entry {
        path: (*path).into(),
        kind: Kind::File {
            size: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        },
    }));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

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
        assert_eq!(checked.files(), 3);
        let paths: Vec<String> = checked.entries().map(|e| e.path()).collect();
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

    /// Counts the heap bytes each thread allocates, less those it frees, and the
    /// most it held, so a test can weigh what a call keeps and what it needs on the
    /// way. Frees of another thread's bytes make that thread's count meaningless,
    /// which the tests here, checking on their own thread, never do.
    struct CountingAllocator;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn count(delta: isize) {
        let _ = HELD.try_with(|held| {
            held.set(held.get().wrapping_add(delta));
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(held.get())));
        });
    }

    // SAFETY: every call goes straight to the system allocator with the caller's
    // arguments; counting only reads the layout, and touches a const thread-local
    // with no destructor, which never allocates.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is passed on unchanged.
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let moved = unsafe { System.realloc(ptr, layout, new_size) };
            if !moved.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            moved
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    /// What `f` returns, the heap bytes it still holds, and the most it held at once,
    /// both above what this thread held before.
    fn weigh<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
        let before = HELD.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let value = f();
        let held = HELD.with(Cell::get) - before;
        let peak = PEAK.with(Cell::get) - before;
        (value, held.max(0) as usize, peak.max(0) as usize)
    }

    /// A manifest like the review's: a chain of `depth - 1` folders, then files at
    /// its bottom until there are `entries` entries. Its files add up to `entries`
    /// less the folders.
    fn deep(entries: usize, depth: usize) -> Vec<Entry> {
        let mut listed = Vec::with_capacity(entries);
        let mut path = String::from("d");
        for _ in 1..depth {
            listed.push(folder(&path));
            path.push_str("/d");
        }
        path.truncate(path.len() - 2);
        for index in listed.len()..entries {
            listed.push(file(&format!("{path}/f{index:05}"), 1));
        }
        listed
    }

    /// Many entries of few bytes each, where what each entry costs beyond its bytes
    /// shows most.
    fn wide(entries: usize) -> Vec<Entry> {
        (0..entries)
            .map(|index| folder(&format!("{index:x}")))
            .collect()
    }

    #[test]
    fn the_checked_form_stays_within_a_small_multiple_of_the_manifest() {
        // The review's manifest had 100,000 entries 64 levels deep; a fifth of it
        // shows the same ratio in a fifth of the time.
        for (shape, entries) in [("deep", deep(20_000, 64)), ("wide", wide(100_000))] {
            let bytes = encode(&entries);
            let count = entries.len() as u32;
            let total = entries
                .iter()
                .map(|e| match e.kind {
                    Kind::File { size, .. } => size,
                    Kind::Folder => 0,
                })
                .sum();
            let (checked, held, peak) = weigh(|| check(&bytes, count, total, NameRules::UNIX));
            let checked = checked.expect("the manifest passes");
            assert!(
                checked.heap_len() <= held,
                "{shape}: it counts what it holds"
            );
            let bound = memory_bound(count, bytes.len() as u32) as usize;
            assert!(
                bytes.len() + peak <= bound,
                "{shape}: within what is budgeted"
            );
            // What a manifest may cost: its bytes, and a few words for each entry.
            let allowed = bytes.len() + 64 * entries.len();
            assert!(
                held <= allowed,
                "{shape}: the checked form of a {}-byte manifest holds {held} bytes, over {allowed}",
                bytes.len()
            );
            assert!(
                peak <= allowed,
                "{shape}: checking a {}-byte manifest took {peak} bytes at its peak, over {allowed}",
                bytes.len()
            );
            drop(checked);
        }
    }

    #[test]
    fn a_check_stops_when_asked() {
        let bytes = encode(&deep(1_000, 8));
        let asked = Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 10
        };
        let total = 1_000 - 7;
        assert_eq!(
            check_until(&bytes, 1_000, total, NameRules::UNIX, stop),
            Err(ManifestError::Stopped)
        );
        assert_eq!(asked.get(), 11);
        assert!(check_until(&bytes, 1_000, total, NameRules::UNIX, || false).is_ok());
    }

    #[test]
    fn a_tree_finds_each_entry_under_its_own_folder() {
        // The same names under different folders are different entries; by Windows'
        // rules, names that differ only in case are one.
        let entries = [
            folder("a"),
            folder("b"),
            folder("a/x"),
            folder("b/x"),
            file("a/x/f", 1),
            file("b/x/f", 2),
            file("b/x/F", 3),
        ];
        let checked = checked(&entries).unwrap();
        let listed: Vec<(String, Kind)> = checked.entries().map(|e| (e.path(), e.kind())).collect();
        let expected: Vec<(String, Kind)> =
            entries.iter().map(|e| (e.path.clone(), e.kind)).collect();
        assert_eq!(listed, expected);
        let files: Vec<String> = (0..3).map(|i| checked.file(i).unwrap().path()).collect();
        assert_eq!(files, ["a/x/f", "b/x/f", "b/x/F"]);
        assert!(checked.file(3).is_none());
        assert_eq!(
            check(&encode(&entries), 7, 6, NameRules::WINDOWS),
            Err(ManifestError::Duplicate {
                path: "b/x/F".into()
            })
        );
        assert_eq!(
            checked.entries().nth(4).unwrap().path_in(Path::new("/s")),
            Path::new("/s/a/x/f")
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
