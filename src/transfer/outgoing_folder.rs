//! Sending a folder: walk it without following links, hash every file (the
//! manifest carries each SHA-256), then stream all the files' bytes, one after the
//! other in manifest order, from a thread of its own.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chunk_queue::ChunkSender;
use super::hash_cache::SharedHashCache;
use super::manifest::{self, Kind};
use super::outgoing::{ReadChunks, SendError, read_on_thread};
use super::progress::FileList;
use super::source_tree::{Opener, Walk, walk};
use crate::frame::{MAX_CHUNK_LEN, MAX_FILE_NAME_LEN};
use crate::platform::{self, FileId, FileStamp, Folder};

/// One file of the folder, as it was when hashed.
#[derive(Debug, Clone)]
struct SourceFile {
    /// Its path inside the folder, as the manifest has it.
    relative: String,
    /// Which file it was, its size and when it was last written.
    stamp: FileStamp,
}

impl SourceFile {
    /// Whether `now` is still the very file hashed, unwritten since.
    fn is_as_hashed(&self, now: &FileStamp) -> bool {
        let identity = |stamp: &FileStamp| (stamp.id(), stamp.size, stamp.modified_ns);
        identity(now) == identity(&self.stamp)
    }
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
    /// Which folder was hashed: the one opened again to stream it must be this one.
    /// It is not held open meanwhile, so that queued folders hold no descriptors.
    root: FileId,
    sources: Arc<Vec<SourceFile>>,
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
    /// Walks the folder at `path` without following links: a link at `path` itself
    /// is refused. Blocking.
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
            .map(|entry| match entry.kind {
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
        let Walk {
            root,
            entries,
            mut skipped,
        } = self.walk;
        let mut opener = Opener::new(&root, &self.path);
        let mut sources = Vec::new();
        let mut sent = Vec::with_capacity(entries.len());
        let mut total = self.size;
        let (mut hashed_before, mut cached) = (0u64, 0);
        for mut entry in entries {
            if let Kind::File { size, sha256 } = &mut entry.kind {
                let file = match opener.open(&entry.path) {
                    Ok(file) => file,
                    // Left out and named, as a folder that cannot be read is.
                    Err(SendError::Io { path, source })
                        if source.kind() == io::ErrorKind::PermissionDenied =>
                    {
                        let path = path.display();
                        skipped.push(format!("{path}: a file that cannot be read ({source})"));
                        total -= *size;
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let hashed = hash_file(&file, *size, cache, |done| progress(hashed_before + done))
                    .map_err(|source| SendError::Io {
                        path: opener.shown(&entry.path),
                        source,
                    })?;
                let (digest, stamp, was_cached) =
                    hashed.ok_or_else(|| SendError::Changed(opener.shown(&entry.path)))?;
                *sha256 = digest;
                cached += usize::from(was_cached);
                hashed_before += *size;
                sources.push(SourceFile {
                    relative: entry.path.clone(),
                    stamp,
                });
            }
            sent.push(entry);
        }
        drop(opener);
        let root_id = root.id().map_err(SendError::io_at(&self.path))?;
        progress(total);
        Ok(PreparedFolder {
            path: self.path,
            name: self.name,
            manifest: Arc::new(manifest::encode(&sent)),
            entries: sent.len() as u32,
            files: sources.len(),
            size: total,
            skipped,
            cached,
            root: root_id,
            sources: Arc::new(sources),
        })
    }
}

impl PreparedFolder {
    /// The files in the order they travel.
    pub fn file_list(&self) -> FileList {
        FileList::new((self.sources.iter()).map(|file| (file.relative.clone(), file.stamp.size)))
    }

    /// Streams the files' bytes, as one sequence in manifest order, from `offset`.
    /// The queue ends after the last chunk; an `Err` instead means: cancel.
    pub fn stream(&self, offset: u64) -> ReadChunks {
        let (root_id, path, sources) = (self.root, self.path.clone(), self.sources.clone());
        read_on_thread(&self.path, move |chunks| {
            let root = reopen(&path, root_id)?;
            send_chunks(&mut Opener::new(&root, &path), &sources, offset, chunks)
        })
    }
}

/// Opens the folder at `path` again, if it is still the folder `id`.
fn reopen(path: &Path, id: FileId) -> Result<Folder, SendError> {
    let io_error = SendError::io_at(path);
    let changed = || SendError::Changed(path.to_owned());
    let root = Folder::open(path).map_err(io_error)?.ok_or_else(changed)?;
    if root.id().map_err(io_error)? != id {
        return Err(changed());
    }
    Ok(root)
}

/// The SHA-256 of one file of the folder, from the cache if it knows the file as it
/// is, with the file's stamp then; `None` if it is not `size` bytes long or changed
/// while hashed.
fn hash_file(
    file: &File,
    size: u64,
    cache: Option<&SharedHashCache>,
    progress: impl FnMut(u64),
) -> io::Result<Option<([u8; 32], FileStamp, bool)>> {
    let stamp = platform::file_stamp(file)?;
    if stamp.size != size {
        return Ok(None);
    }
    let hash = super::sha256_of(file, size, cache, super::CacheUse::LookUp, progress)?;
    Ok(hash.map(|hash| (hash.sha256, stamp, hash.cached)))
}

/// Reads the files from `offset` into full chunks, across file boundaries, and
/// refuses to send a file that is no longer as it was hashed.
fn send_chunks(
    opener: &mut Opener,
    sources: &[SourceFile],
    mut offset: u64,
    chunks: &mut ChunkSender<Result<Vec<u8>, SendError>>,
) -> Result<(), SendError> {
    let mut chunk = Vec::with_capacity(MAX_CHUNK_LEN);
    for source in sources {
        let size = source.stamp.size;
        if offset >= size {
            offset -= size;
            continue;
        }
        let mut file = opener.open(&source.relative)?;
        let io_error = |source_err| SendError::Io {
            path: opener.shown(&source.relative),
            source: source_err,
        };
        let changed = || SendError::Changed(opener.shown(&source.relative));
        let unchanged =
            |file: &File| platform::file_stamp(file).is_ok_and(|now| source.is_as_hashed(&now));
        if !unchanged(&file) {
            return Err(changed());
        }
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut remaining = size - offset;
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

    /// Everything a stream sent, in order, its end included.
    async fn everything_sent(mut rx: ReadChunks) -> Vec<Result<Vec<u8>, SendError>> {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.push(chunk);
        }
        all
    }

    /// The bytes of a stream that must succeed, every chunk checked for its size.
    async fn collect(rx: ReadChunks) -> Vec<u8> {
        let mut all = Vec::new();
        for chunk in everything_sent(rx).await {
            let chunk = chunk.unwrap();
            assert!((1..=MAX_CHUNK_LEN).contains(&chunk.len()));
            all.extend(chunk);
        }
        all
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
        let paths: Vec<String> = checked.entries().map(|e| e.path()).collect();
        assert_eq!(paths, ["a", "a/one", "b", "b/empty", "b/two", "z"]);
        let mut expected = vec![1u8; 70_000];
        expected.extend(b"two");
        assert_eq!(collect(folder.stream(0)).await, expected);
        assert_eq!(collect(folder.stream(69_999)).await, expected[69_999..]);
    }

    /// A folder `tree` holding `sub/f`, and beside it a folder holding a file of
    /// the same name, size and modification time that must never be sent.
    fn tree_and_a_secret() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (tree, secret) = (dir.path().join("tree"), dir.path().join("secret"));
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(tree.join("sub/f"), b"shared").unwrap();
        std::fs::write(secret.join("f"), b"secret").unwrap();
        let modified = std::fs::metadata(tree.join("sub/f")).unwrap().modified();
        File::options()
            .write(true)
            .open(secret.join("f"))
            .unwrap()
            .set_modified(modified.unwrap())
            .unwrap();
        (dir, tree, secret)
    }

    #[test]
    fn a_folder_swapped_for_a_link_after_listing_is_not_hashed() {
        let (_dir, tree, secret) = tree_and_a_secret();
        let listing = Listing::of(&tree).unwrap();
        std::fs::rename(tree.join("sub"), tree.join("old")).unwrap();
        platform::testing::symlink_dir(&secret, &tree.join("sub"));
        assert!(matches!(
            listing.hash(None, |_| {}),
            Err(SendError::Changed(path)) if path == tree.join("sub/f")
        ));
    }

    #[tokio::test]
    async fn a_folder_swapped_for_a_link_after_hashing_is_not_sent() {
        let (_dir, tree, secret) = tree_and_a_secret();
        let folder = Listing::of(&tree).unwrap().hash(None, |_| {}).unwrap();
        std::fs::rename(tree.join("sub"), tree.join("old")).unwrap();
        platform::testing::symlink_dir(&secret, &tree.join("sub"));
        // From the start, and as a resume from inside the file would.
        for offset in [0, 3] {
            let sent = everything_sent(folder.stream(offset)).await;
            assert!(
                matches!(&sent[..], [Err(SendError::Changed(path))] if *path == tree.join("sub/f")),
                "{offset}: {sent:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_folder_put_in_the_hashed_folders_place_is_not_sent() {
        let (_dir, tree, _secret) = tree_and_a_secret();
        let folder = Listing::of(&tree).unwrap().hash(None, |_| {}).unwrap();
        // Even one holding the very same files, linked.
        let other = tree.with_file_name("other");
        std::fs::create_dir_all(other.join("sub")).unwrap();
        std::fs::hard_link(tree.join("sub/f"), other.join("sub/f")).unwrap();
        std::fs::rename(&tree, tree.with_file_name("old")).unwrap();
        std::fs::rename(&other, &tree).unwrap();
        let sent = everything_sent(folder.stream(0)).await;
        assert!(
            matches!(&sent[..], [Err(SendError::Changed(path))] if *path == tree),
            "{sent:?}"
        );
        std::fs::rename(&tree, &other).unwrap();
        std::fs::rename(tree.with_file_name("old"), &tree).unwrap();
        let sent = everything_sent(folder.stream(0)).await;
        assert!(
            matches!(&sent[..], [Ok(bytes)] if bytes == b"shared"),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn another_file_put_in_a_hashed_files_place_is_not_sent() {
        let (_dir, tree, secret) = tree_and_a_secret();
        let folder = Listing::of(&tree).unwrap().hash(None, |_| {}).unwrap();
        std::fs::rename(secret.join("f"), tree.join("sub/f")).unwrap();
        let sent = everything_sent(folder.stream(0)).await;
        assert!(
            matches!(&sent[..], [Err(SendError::Changed(_))]),
            "{sent:?}"
        );
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
