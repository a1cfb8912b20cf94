//! Sending a folder: walk it without following links, hash every file (the
//! manifest carries each SHA-256), then stream all the files' bytes, one after the
//! other in manifest order, from a thread of its own.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::chunk_queue::{ChunkReceiver, ChunkSender};
use super::hash_cache::SharedHashCache;
use super::manifest::{self, Entry, Kind, MAX_DEPTH, MAX_ENTRIES, MAX_MANIFEST_LEN, MAX_PATH_LEN};
use super::outgoing::{SendError, read_on_thread};
use super::progress::FileList;
use crate::frame::{MAX_CHUNK_LEN, MAX_FILE_NAME_LEN};
use crate::platform;

/// One file of the folder, as it was when hashed.
#[derive(Debug, Clone)]
struct SourceFile {
    path: PathBuf,
    /// Its path inside the folder, as the manifest has it.
    relative: String,
    size: u64,
    modified: Option<SystemTime>,
}

/// A folder walked and hashed, ready to offer.
#[derive(Debug, Clone)]
pub struct PreparedFolder {
    pub path: PathBuf,
    /// The folder's own name, which goes on the wire.
    pub name: String,
    pub manifest: Arc<Vec<u8>>,
    pub entries: u32,
    pub files: usize,
    /// All the files' bytes together.
    pub size: u64,
    /// What was left out, each with why: links, special files, unusable names.
    pub skipped: Vec<String>,
    /// Files whose SHA-256 came from the hash cache.
    pub cached: usize,
    sources: Arc<Vec<SourceFile>>,
}

/// What a walk found, in manifest order.
struct Walk {
    entries: Vec<(Entry, Option<PathBuf>)>,
    skipped: Vec<String>,
}

/// A folder walked but not yet hashed: enough to say how large it is.
pub struct Listing {
    path: PathBuf,
    name: String,
    walk: Walk,
    /// All the files' bytes together.
    pub size: u64,
}

impl Listing {
    /// Walks the folder at `path` without following links. Blocking.
    pub fn of(path: &Path) -> Result<Listing, SendError> {
        let named = |path: &Path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .filter(|name| !name.is_empty() && name.len() <= MAX_FILE_NAME_LEN)
                .map(str::to_owned)
        };
        // `transfer .` sends the folder by its own name.
        let name = named(path)
            .or_else(|| named(&path.canonicalize().ok()?))
            .ok_or_else(|| SendError::BadName(path.to_owned()))?;
        let walk = walk(path)?;
        let size = walk
            .entries
            .iter()
            .map(|(entry, _)| match entry.kind {
                Kind::File { size, .. } => size,
                Kind::Folder => 0,
            })
            .sum();
        Ok(Listing {
            path: path.to_owned(),
            name,
            walk,
            size,
        })
    }

    /// Hashes every file, unless `cache` knows it as it is, calling `progress`
    /// with the bytes hashed so far. Blocking.
    pub fn hash(
        self,
        cache: Option<&SharedHashCache>,
        mut progress: impl FnMut(u64),
    ) -> Result<PreparedFolder, SendError> {
        let mut entries = Vec::with_capacity(self.walk.entries.len());
        let mut sources = Vec::new();
        let (mut hashed_before, mut cached) = (0u64, 0);
        for (mut entry, source) in self.walk.entries {
            if let (Kind::File { size, sha256 }, Some(source)) = (&mut entry.kind, source) {
                let (digest, modified, was_cached) =
                    hash_file(&source, *size, cache, |done| progress(hashed_before + done))?;
                *sha256 = digest;
                cached += usize::from(was_cached);
                hashed_before += *size;
                sources.push(SourceFile {
                    path: source,
                    relative: entry.path.clone(),
                    size: *size,
                    modified,
                });
            }
            entries.push(entry);
        }
        progress(self.size);
        Ok(PreparedFolder {
            path: self.path,
            name: self.name,
            manifest: Arc::new(manifest::encode(&entries)),
            entries: entries.len() as u32,
            files: sources.len(),
            size: self.size,
            skipped: self.walk.skipped,
            cached,
            sources: Arc::new(sources),
        })
    }
}

impl PreparedFolder {
    /// The files in the order they travel.
    pub fn file_list(&self) -> FileList {
        FileList::new((self.sources.iter()).map(|file| (file.relative.clone(), file.size)))
    }

    /// Streams the files' bytes, as one sequence in manifest order, from `offset`.
    /// The queue ends after the last chunk; an `Err` instead means: cancel.
    pub fn stream(&self, offset: u64) -> ChunkReceiver<Result<Vec<u8>, SendError>> {
        let sources = self.sources.clone();
        read_on_thread(&self.path, move |chunks| {
            send_chunks(&sources, offset, chunks)
        })
    }
}

/// Lists the folder at `root` depth first, each folder before what it holds and
/// names in byte order, so that the same tree always gives the same manifest.
fn walk(root: &Path) -> Result<Walk, SendError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SendError::Io { path, source }
    };
    let metadata = std::fs::symlink_metadata(root).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SendError::Missing {
            path: root.to_owned(),
            source,
        },
        _ => SendError::Io {
            path: root.to_owned(),
            source,
        },
    })?;
    if !metadata.is_dir() {
        return Err(SendError::NotAFile(root.to_owned()));
    }
    let mut found = Walk {
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    let mut manifest_len = 0;
    // Folders still to read, with their path inside the sent folder.
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, inside)) = pending.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io_error(&dir))?;
        children.sort_by_key(|child| child.file_name());
        let mut subfolders = Vec::new();
        for child in children {
            let path = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_owned) else {
                found
                    .skipped
                    .push(format!("{}: the name is not UTF-8", path.display()));
                continue;
            };
            let relative = if inside.is_empty() {
                name
            } else {
                format!("{inside}/{name}")
            };
            if relative.len() > MAX_PATH_LEN || relative.split('/').count() > MAX_DEPTH {
                found.skipped.push(format!(
                    "{}: deeper or longer than a folder may list ({MAX_DEPTH} folders, {MAX_PATH_LEN} bytes)",
                    path.display()
                ));
                continue;
            }
            let kind = child.file_type().map_err(io_error(&path))?;
            let entry = if kind.is_dir() {
                subfolders.push((path.clone(), relative.clone()));
                (
                    Entry {
                        path: relative,
                        kind: Kind::Folder,
                    },
                    None,
                )
            } else if kind.is_file() {
                let size = child.metadata().map_err(io_error(&path))?.len();
                (
                    Entry {
                        path: relative,
                        kind: Kind::File {
                            size,
                            sha256: [0; 32],
                        },
                    },
                    Some(path),
                )
            } else if kind.is_symlink() {
                found
                    .skipped
                    .push(format!("{}: a symbolic link, not followed", path.display()));
                continue;
            } else {
                found
                    .skipped
                    .push(format!("{}: not a regular file or folder", path.display()));
                continue;
            };
            if found.entries.len() == MAX_ENTRIES as usize {
                return Err(SendError::TooManyEntries(root.to_owned()));
            }
            manifest_len += manifest::encoded_len(&entry.0);
            if manifest_len > MAX_MANIFEST_LEN as usize {
                return Err(SendError::ManifestTooLong(root.to_owned()));
            }
            found.entries.push(entry);
        }
        // Depth first, in name order: the stack takes the last pushed first.
        pending.extend(subfolders.into_iter().rev());
    }
    // Each folder's entries were listed before its subfolders were read, so the
    // list is in order of discovery; put every folder's content right after it.
    found.entries = depth_first(found.entries);
    Ok(found)
}

/// Orders entries so that each folder is followed by everything inside it, siblings
/// by name: the order a manifest lists and the receiver stores them in.
fn depth_first(mut entries: Vec<(Entry, Option<PathBuf>)>) -> Vec<(Entry, Option<PathBuf>)> {
    entries.sort_by(|(a, _), (b, _)| a.path.split('/').cmp(b.path.split('/')));
    entries
}

/// The SHA-256 of one file of the folder, from the cache if it knows the file as it
/// is, with its modification time then.
fn hash_file(
    path: &Path,
    size: u64,
    cache: Option<&SharedHashCache>,
    progress: impl FnMut(u64),
) -> Result<([u8; 32], Option<SystemTime>, bool), SendError> {
    let io_error = |source| SendError::Io {
        path: path.to_owned(),
        source,
    };
    let file = platform::open_to_send(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() || metadata.len() != size {
        return Err(SendError::Changed(path.to_owned()));
    }
    let hash = super::sha256_of(&file, size, cache, progress)
        .map_err(io_error)?
        .ok_or_else(|| SendError::Changed(path.to_owned()))?;
    Ok((hash.sha256, metadata.modified().ok(), hash.cached))
}

/// Reads the files from `offset` into full chunks, across file boundaries, and
/// refuses to send a file that is no longer as it was hashed.
fn send_chunks(
    sources: &[SourceFile],
    mut offset: u64,
    chunks: &mut ChunkSender<Result<Vec<u8>, SendError>>,
) -> Result<(), SendError> {
    let mut chunk = Vec::with_capacity(MAX_CHUNK_LEN);
    for source in sources {
        if offset >= source.size {
            offset -= source.size;
            continue;
        }
        let io_error = |source_err| SendError::Io {
            path: source.path.clone(),
            source: source_err,
        };
        let changed = || SendError::Changed(source.path.clone());
        let mut file = platform::open_to_send(&source.path).map_err(io_error)?;
        let unchanged = |file: &File| {
            file.metadata()
                .is_ok_and(|now| now.len() == source.size && now.modified().ok() == source.modified)
        };
        if !unchanged(&file) {
            return Err(changed());
        }
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut remaining = source.size - offset;
        offset = 0;
        while remaining > 0 {
            let room = (MAX_CHUNK_LEN - chunk.len()) as u64;
            let want = room.min(remaining) as usize;
            let start = chunk.len();
            chunk.resize(start + want, 0);
            if let Err(err) = file.read_exact(&mut chunk[start..]) {
                return Err(match err.kind() {
                    io::ErrorKind::UnexpectedEof => changed(),
                    _ => io_error(err),
                });
            }
            remaining -= want as u64;
            if chunk.len() == MAX_CHUNK_LEN {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(MAX_CHUNK_LEN));
                if chunks.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        if !unchanged(&file) {
            return Err(changed());
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(Ok(chunk));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::manifest::check;
    use crate::transfer::name::NameRules;

    async fn collect(mut rx: ChunkReceiver<Result<Vec<u8>, SendError>>) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.unwrap();
            assert!((1..=MAX_CHUNK_LEN).contains(&chunk.len()));
            all.extend(chunk);
        }
        all
    }

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

    #[tokio::test]
    async fn a_tree_is_listed_parents_first_and_streamed_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("b/empty")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/one"), vec![1u8; 70_000]).unwrap();
        std::fs::write(root.join("b/two"), b"two").unwrap();
        std::fs::write(root.join("z"), b"").unwrap();
        platform::testing::symlink_file(&root.join("z"), &root.join("link"));
        let folder = Listing::of(&root).unwrap().hash(None, |_| {}).unwrap();
        assert_eq!(
            (folder.name.as_str(), folder.files, folder.size),
            ("tree", 3, 70_003)
        );
        assert_eq!(folder.skipped.len(), 1, "{:?}", folder.skipped);
        assert!(folder.skipped[0].contains("symbolic link"));
        let checked = check(
            &folder.manifest,
            folder.entries,
            folder.size,
            NameRules::UNIX,
        )
        .unwrap();
        let paths: Vec<String> = checked
            .entries
            .iter()
            .map(|e| e.components.join("/"))
            .collect();
        assert_eq!(paths, ["a", "a/one", "b", "b/empty", "b/two", "z"]);
        let mut expected = vec![1u8; 70_000];
        expected.extend(b"two");
        assert_eq!(collect(folder.stream(0)).await, expected);
        assert_eq!(collect(folder.stream(69_999)).await, expected[69_999..]);
    }

    #[tokio::test]
    async fn a_file_changed_after_hashing_stops_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"before").unwrap();
        let folder = Listing::of(dir.path()).unwrap().hash(None, |_| {}).unwrap();
        std::fs::write(dir.path().join("f"), b"after, longer").unwrap();
        let mut rx = folder.stream(0);
        let mut ended = None;
        while let Some(chunk) = rx.recv().await {
            ended = Some(chunk);
        }
        assert!(matches!(ended, Some(Err(SendError::Changed(_)))));
    }
}
