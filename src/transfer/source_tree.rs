//! The folder being sent, walked and read through handles held from its root down:
//! every name is opened inside the folder that listed it and no link is followed,
//! so that a link swapped in while the folder is read can never lead outside it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::manifest::{self, Entry, Kind, MAX_DEPTH, MAX_ENTRIES, MAX_MANIFEST_LEN, MAX_PATH_LEN};
use super::outgoing::SendError;
use crate::platform::{EntryKind, Folder};

/// What a walk found, in manifest order.
pub(super) struct Walk {
    pub root: Folder,
    pub entries: Vec<Entry>,
    /// What was left out, each with why.
    pub skipped: Vec<String>,
}

/// Lists the folder at `root` depth first, each folder before what it holds and
/// names in byte order, so that the same tree always gives the same manifest. At
/// most one folder per level is held open at a time.
pub(super) fn walk(root: &Path) -> Result<Walk, SendError> {
    let opened = Folder::open(root).map_err(|source| SendError::opening(root, source))?;
    let root_folder = opened.ok_or_else(|| SendError::NotAFile(root.to_owned()))?;
    let mut found = Findings {
        root,
        entries: Vec::new(),
        skipped: Vec::new(),
        manifest_len: 0,
    };
    // Folders still to read: the folder holding each (`None`: the root), and its
    // path inside the sent folder.
    let mut pending: Vec<(Option<Rc<Folder>>, String)> = Vec::new();
    let top = found
        .list(&root_folder, "")
        .map_err(|unlisted| match unlisted {
            Unlisted::Denied(source) => found.io_error("", source),
            Unlisted::Failed(err) => err,
        })?;
    for inside in top {
        pending.push((None, inside));
    }
    while let Some((holder, inside)) = pending.pop() {
        let name = inside.rsplit('/').next().unwrap_or(&inside);
        let holder = holder.as_deref().unwrap_or(&root_folder);
        let folder = match holder.folder(OsStr::new(name)) {
            Ok(Some(folder)) => Rc::new(folder),
            Ok(None) => return Err(SendError::Changed(shown(root, &inside))),
            Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
                found.leave_out_unreadable(&inside, &source);
                continue;
            }
            Err(source) => return Err(found.io_error(&inside, source)),
        };
        match found.list(&folder, &inside) {
            Ok(subfolders) => {
                let held = subfolders
                    .into_iter()
                    .map(|sub| (Some(folder.clone()), sub));
                pending.extend(held);
            }
            Err(Unlisted::Denied(source)) => found.leave_out_unreadable(&inside, &source),
            Err(Unlisted::Failed(err)) => return Err(err),
        }
    }
    // Each folder's entries were listed before its subfolders were read, so the
    // list is in order of discovery; put every folder's content right after it.
    found
        .entries
        .sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    Ok(Walk {
        root: root_folder,
        entries: found.entries,
        skipped: found.skipped,
    })
}

/// Why a folder's content is not in the walk.
enum Unlisted {
    /// It may not be read: left out, and said so.
    Denied(io::Error),
    /// Anything else stops the walk.
    Failed(SendError),
}

/// The walk's findings so far.
struct Findings<'a> {
    root: &'a Path,
    entries: Vec<Entry>,
    skipped: Vec<String>,
    manifest_len: usize,
}

impl Findings<'_> {
    /// Lists `folder`, found at `inside`, and returns its subfolders' paths, last
    /// name first, so that a stack takes them in name order.
    fn list(&mut self, folder: &Folder, inside: &str) -> Result<Vec<String>, Unlisted> {
        let mut children = folder.entries().map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => Unlisted::Denied(source),
            _ => Unlisted::Failed(self.io_error(inside, source)),
        })?;
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let mut subfolders = Vec::new();
        let root = self.root;
        for child in children {
            let display = || shown(root, inside).join(&child.name).display().to_string();
            let Some(name) = child.name.to_str() else {
                self.skipped
                    .push(format!("{}: the name is not UTF-8", display()));
                continue;
            };
            let path = if inside.is_empty() {
                name.to_owned()
            } else {
                format!("{inside}/{name}")
            };
            if path.len() > MAX_PATH_LEN || path.split('/').count() > MAX_DEPTH {
                self.skipped.push(format!(
                    "{}: deeper or longer than a folder may list ({MAX_DEPTH} folders, {MAX_PATH_LEN} bytes)",
                    display()
                ));
                continue;
            }
            let kind = match child.kind {
                EntryKind::Folder => {
                    subfolders.push(path.clone());
                    Kind::Folder
                }
                EntryKind::File { size } => Kind::File {
                    size,
                    sha256: [0; 32],
                },
                EntryKind::Link => {
                    (self.skipped).push(format!("{}: a symbolic link, not followed", display()));
                    continue;
                }
                EntryKind::Other => {
                    (self.skipped).push(format!("{}: not a regular file or folder", display()));
                    continue;
                }
            };
            self.add(Entry { path, kind }).map_err(Unlisted::Failed)?;
        }
        subfolders.reverse();
        Ok(subfolders)
    }

    /// Leaves out the folder at `inside`, which may not be read, as links are left
    /// out: it is not sent, not even empty, and the sender is told.
    fn leave_out_unreadable(&mut self, inside: &str, source: &io::Error) {
        if let Some(at) = self.entries.iter().position(|entry| entry.path == inside) {
            let entry = self.entries.remove(at);
            self.manifest_len -= manifest::encoded_len(&entry);
        }
        self.skipped.push(format!(
            "{}: a folder that cannot be read ({source})",
            shown(self.root, inside).display()
        ));
    }

    fn add(&mut self, entry: Entry) -> Result<(), SendError> {
        if self.entries.len() == MAX_ENTRIES as usize {
            return Err(SendError::TooManyEntries(self.root.to_owned()));
        }
        self.manifest_len += manifest::encoded_len(&entry);
        if self.manifest_len > MAX_MANIFEST_LEN as usize {
            return Err(SendError::ManifestTooLong(self.root.to_owned()));
        }
        self.entries.push(entry);
        Ok(())
    }

    fn io_error(&self, inside: &str, source: io::Error) -> SendError {
        SendError::Io {
            path: shown(self.root, inside),
            source,
        }
    }
}

/// Opens the folder's files by their paths inside it, one level at a time from
/// the root, never through a link. Files come in manifest order, so the folders
/// on the way to the last one are kept, and only the part of the way that differs
/// is opened for the next.
pub(super) struct Opener<'a> {
    root: &'a Folder,
    root_path: &'a Path,
    /// The folders from the root down to the last file's, each with its name.
    held: Vec<(String, Folder)>,
}

impl<'a> Opener<'a> {
    pub fn new(root: &'a Folder, root_path: &'a Path) -> Self {
        Opener {
            root,
            root_path,
            held: Vec::new(),
        }
    }

    /// The full path of `relative`, for messages.
    pub fn shown(&self, relative: &str) -> PathBuf {
        shown(self.root_path, relative)
    }

    /// Opens the regular file at `relative`; an error that says it changed if
    /// anything on its way is no longer what the walk found.
    pub fn open(&mut self, relative: &str) -> Result<File, SendError> {
        let root_path = self.root_path;
        let io_error = |source| SendError::Io {
            path: shown(root_path, relative),
            source,
        };
        let changed = || SendError::Changed(shown(root_path, relative));
        let mut way: Vec<&str> = relative.split('/').collect();
        let name = way.pop().unwrap_or(relative);
        let kept = (self.held.iter().zip(&way))
            .take_while(|((held, _), wanted)| held == *wanted)
            .count();
        self.held.truncate(kept);
        for component in &way[kept..] {
            let above = self.held.last().map_or(self.root, |(_, folder)| folder);
            let below = above.folder(OsStr::new(component)).map_err(io_error)?;
            let below = below.ok_or_else(changed)?;
            self.held.push(((*component).to_owned(), below));
        }
        let folder = self.held.last().map_or(self.root, |(_, folder)| folder);
        folder
            .file(OsStr::new(name))
            .map_err(io_error)?
            .ok_or_else(changed)
    }
}

/// `root` and then each component of `relative`, a path inside it with `/`
/// between components, as the system writes paths.
pub(super) fn shown(root: &Path, relative: &str) -> PathBuf {
    relative
        .split('/')
        .filter(|component| !component.is_empty())
        .fold(root.to_owned(), |path, component| path.join(component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_whose_manifest_would_be_too_long_is_refused_while_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        let long = "n".repeat(250);
        let deep = (0..14).fold(root.clone(), |path, level| {
            path.join(format!("{level:02}{long}"))
        });
        std::fs::create_dir_all(&deep).unwrap();
        // Each entry takes about 3,600 bytes: 4,700 of them are more than 16 MiB.
        for n in 0..4_700 {
            std::fs::create_dir(deep.join(format!("{n:04}{long}"))).unwrap();
        }
        assert!(matches!(
            walk(&root),
            Err(SendError::ManifestTooLong(path)) if path == root
        ));
    }

    #[test]
    fn a_folder_on_the_way_swapped_for_a_link_is_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let (root, secret) = (dir.path().join("tree"), dir.path().join("secret"));
        for folder in [root.join("a/b"), root.join("a/c"), secret.clone()] {
            std::fs::create_dir_all(folder).unwrap();
        }
        std::fs::write(root.join("a/b/one"), b"one").unwrap();
        std::fs::write(root.join("a/c/two"), b"two").unwrap();
        std::fs::write(secret.join("two"), b"key").unwrap();
        let walk = walk(&root).unwrap();
        let mut opener = Opener::new(&walk.root, &root);
        opener.open("a/b/one").unwrap();
        std::fs::rename(root.join("a/c"), root.join("a/c.old")).unwrap();
        crate::platform::testing::symlink_dir(&secret, &root.join("a/c"));
        assert!(matches!(
            opener.open("a/c/two"),
            Err(SendError::Changed(path)) if path == root.join("a").join("c").join("two")
        ));
        // The folders already held stay the ones the walk found.
        std::fs::rename(root.join("a/b/one"), root.join("a/b/one.old")).unwrap();
        assert!(matches!(
            opener.open("a/b/one"),
            Err(SendError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn a_path_is_shown_one_component_at_a_time() {
        let root = Path::new("tree");
        assert_eq!(shown(root, ""), root);
        assert_eq!(shown(root, "a/b"), root.join("a").join("b"));
    }
}
