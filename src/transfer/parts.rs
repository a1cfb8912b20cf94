//! Unfinished transfers, kept where no received name can reach: a private folder
//! `.chat-parts` (mode 0700) inside the download folder. Each transfer writes its own
//! part file under a random name, `<32 hex digits>.part`, beside a `.meta` that names
//! the offer (file name, size, SHA-256) it belongs to.
//!
//! Ownership is a lock on the open part file. Whoever holds it is the only one who may
//! write, remove or rename that part, and a lock taken on a part that is no longer at
//! its path (because its owner finished with it first) is worth nothing: [`claim`]
//! checks, after locking, that the path still names the locked file. Together with
//! names that are never reused, that makes it impossible for one transfer to write
//! into, verify or rename another transfer's bytes.
//!
//! Kept parts do not stay for good: [`expire`] removes those that no transfer has
//! written or resumed for [`MAX_KEPT_AGE`], and the oldest beyond [`MAX_KEPT_PARTS`],
//! which also bounds what the lookup for a part to resume reads.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::name;
use crate::identity::fingerprint::Fingerprint;
use crate::platform;

/// The private folder's name. Received names never start with a dot.
pub const PARTS_DIR: &str = ".chat-parts";
const META_HEADER: &str = "chat partial transfer v2";
/// A meta is four short lines; anything larger was not written by us.
const MAX_META_LEN: u64 = 512;
/// A kept part that no transfer has written or resumed for this long is removed:
/// its transfer is taken as given up.
pub const MAX_KEPT_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Kept parts beyond this many are removed, the oldest first.
pub const MAX_KEPT_PARTS: usize = 1000;
/// How many times a free final name is looked for when others take it meanwhile.
const MAX_PLACE_ATTEMPTS: u32 = 8;
/// How often a new part is tried again when its folder vanishes under it.
const MAX_CREATE_ATTEMPTS: u32 = 32;
/// How many numbered alternatives a name has.
const MAX_NAME_NUMBER: u32 = 100_000;

/// What a kept part holds: the offer it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Meta {
    pub name: String,
    pub size: u64,
    /// `None` for an offer whose SHA-256 follows its data (`OfferUnhashed`).
    pub sha256: Option<[u8; 32]>,
    /// The peer whose offer it is (unknown in a part kept by an older `chat`):
    /// the only one that resumes a part whose hash never came, since nothing else
    /// ties such a part to a file.
    pub sender: Option<Fingerprint>,
}

/// What a meta says in place of a SHA-256 that follows the data.
const HASH_FOLLOWS: &str = "follows";

impl Meta {
    fn encode(&self) -> String {
        let sha256 = self.sha256.map_or(HASH_FOLLOWS.to_owned(), hex::encode);
        let sender = self
            .sender
            .map_or(String::new(), |sender| format!("from {sender}\n"));
        format!(
            "{META_HEADER}\nsize {}\nsha256 {sha256}\n{sender}name {}\n",
            self.size, self.name
        )
    }

    /// The same offer as `other`: name, size and SHA-256, whoever sent it.
    pub fn same_offer(&self, other: &Meta) -> bool {
        self.name == other.name && self.size == other.size && self.sha256 == other.sha256
    }

    /// Whether a part kept for `self` may be resumed for `offer`: the same name and
    /// size, and the same SHA-256; or, for a part whose hash never came, an offer of
    /// either kind from the same peer (the final check alone decides, as after every
    /// resume). No other peer learns what such a part holds, nor spoils it.
    pub fn resumes(&self, offer: &Meta) -> bool {
        let same_file = match self.sha256 {
            Some(sha256) => offer.sha256 == Some(sha256),
            None => self.sender.is_some() && self.sender == offer.sender,
        };
        self.name == offer.name && self.size == offer.size && same_file
    }

    /// The exact format [`Meta::encode`] writes, or nothing.
    fn parse(text: &str) -> Option<Meta> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != META_HEADER {
            return None;
        }
        let size = lines.next()?.strip_prefix("size ")?;
        let sha256 = lines.next()?.strip_prefix("sha256 ")?;
        let mut line = lines.next()?;
        let sender = match line.strip_prefix("from ") {
            Some(sender) => {
                line = lines.next()?;
                Some(sender.parse().ok()?)
            }
            None => None,
        };
        let name = line.strip_prefix("name ")?;
        if lines.next().is_some() || size.starts_with('+') {
            return None;
        }
        let sha256 = match sha256 {
            HASH_FOLLOWS => None,
            hex => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex, &mut digest).ok()?;
                Some(digest)
            }
        };
        Some(Meta {
            name: name.to_owned(),
            size: size.parse().ok()?,
            sha256,
            sender,
        })
    }
}

/// A part file this transfer owns: open, locked, and still at `path`.
#[derive(Debug)]
pub struct OwnedPart {
    pub file: File,
    pub path: PathBuf,
    /// Bytes it already holds.
    pub held: u64,
}

/// Removes the part at `path` and its meta.
pub fn discard_at(path: &Path) {
    let _ = std::fs::remove_file(meta_path(path));
    let _ = std::fs::remove_file(path);
    remove_parts_dir_if_empty(path);
}

/// A kept part whose meta matches an offer, open but not yet locked.
#[derive(Debug)]
pub struct Candidate {
    file: File,
    path: PathBuf,
}

/// Starts a new part for `meta` under a name nobody has used.
pub fn create(dir: &Path, meta: &Meta) -> io::Result<OwnedPart> {
    let path = dir.join(PARTS_DIR).join(format!("{}.part", random_hex()));
    let file = create_in_parts(&path)?;
    if file.try_lock().is_err() {
        let _ = std::fs::remove_file(&path);
        return Err(io::Error::other("cannot lock a new part file"));
    }
    let written = platform::create_private_file(&meta_path(&path))
        .and_then(|mut meta_file| meta_file.write_all(meta.encode().as_bytes()));
    if let Err(err) = written {
        let _ = std::fs::remove_file(meta_path(&path));
        let _ = std::fs::remove_file(&path);
        return Err(err);
    }
    Ok(OwnedPart {
        file,
        path,
        held: 0,
    })
}

/// Creates the private file `path` in the parts folder, and the folder if need be.
fn create_in_parts(path: &Path) -> io::Result<File> {
    let parts = path.parent().expect("a path in the parts folder");
    // Another transfer may remove the folder once it is empty, even between our
    // two steps: each time it does, it has made progress, so trying again is safe.
    let mut attempts = 0;
    loop {
        let created =
            platform::ensure_private_dir(parts).and_then(|()| platform::create_private_file(path));
        match created {
            Err(err) if err.kind() == io::ErrorKind::NotFound && attempts < MAX_CREATE_ATTEMPTS => {
                attempts += 1
            }
            result => return result,
        }
    }
}

/// Whether the parts folder in `dir`, where folders are staged, takes names that
/// differ only in case for one (macOS by default, casefold folders on Linux): a
/// probe is made under a name in lower case and looked for in upper case. Folders
/// made in it are alike: ext4 passes casefolding on to each new folder, and macOS
/// decides it for a whole volume.
pub fn ignores_case(dir: &Path) -> io::Result<bool> {
    let hex = random_hex();
    let probe = dir.join(PARTS_DIR).join(format!("{hex}.case"));
    create_in_parts(&probe)?;
    let other_case = probe.with_file_name(format!("{}.CASE", hex.to_uppercase()));
    let found = std::fs::symlink_metadata(other_case);
    let removed = std::fs::remove_file(&probe);
    remove_parts_dir_if_empty(&probe);
    removed?;
    Ok(found.is_ok())
}

/// The name rules for a folder received into `dir`: this system's, ignoring case
/// where the folder it is staged in does, or where that cannot be told.
pub fn name_rules(dir: &Path) -> name::NameRules {
    let rules = name::NameRules::here();
    if rules.case_insensitive || !ignores_case(dir).unwrap_or(true) {
        rules
    } else {
        rules.ignoring_case()
    }
}

/// A kept part of this very offer that no other transfer owns, locked for us.
pub fn find_resumable(dir: &Path, meta: &Meta) -> io::Result<Option<OwnedPart>> {
    for candidate in candidates(dir, meta)? {
        if let Some(owned) = claim(candidate, meta.size)? {
            return Ok(Some(owned));
        }
    }
    Ok(None)
}

/// Kept parts that this offer may resume ([`Meta::resumes`]), those of its very
/// SHA-256 first, opened without following links. A part or meta we did not create (another owner, a link, a
/// FIFO, a second hard link, an oversized meta) is passed over.
pub fn candidates(dir: &Path, meta: &Meta) -> io::Result<Vec<Candidate>> {
    let parts = dir.join(PARTS_DIR);
    let entries = match std::fs::read_dir(&parts) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    match platform::ensure_private_dir(&parts) {
        // Removed by another transfer, once empty, since we listed it.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        checked => checked?,
    }
    // Every entry: [`expire`] keeps their number bounded, and a part passed over
    // here would be lost to its resume.
    let mut found = Vec::new();
    for entry in entries {
        let meta_file = entry?.path();
        if meta_file.extension().is_none_or(|ext| ext != "meta") {
            continue;
        }
        let Some(kept) = read_meta(&meta_file).ok().filter(|kept| kept.resumes(meta)) else {
            continue;
        };
        let path = meta_file.with_extension("part");
        if let Ok(file) = platform::open_private_file(&path, true) {
            // A part of the very same SHA-256 before one whose hash never came.
            match kept.sha256 {
                Some(_) => found.insert(0, Candidate { file, path }),
                None => found.push(Candidate { file, path }),
            }
        }
    }
    Ok(found)
}

/// Locks a candidate. The lock only counts if the part is still where it was found
/// and still has its meta: an owner renames or removes a part only while holding
/// the lock, so after locking, a part that moved is one we must not touch.
pub fn claim(candidate: Candidate, size: u64) -> io::Result<Option<OwnedPart>> {
    let Candidate { file, path } = candidate;
    if file.try_lock().is_err() {
        return Ok(None);
    }
    if !platform::is_same_file(&file, &path)?
        || std::fs::symlink_metadata(meta_path(&path)).is_err()
    {
        return Ok(None);
    }
    let held = file.metadata()?.len();
    if held > size {
        return Ok(None);
    }
    // Resumed: its age (see [`expire`]) counts from now.
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(OwnedPart { file, path, held }))
}

/// The kept parts [`expire`] removed, by the names of the offers they were of (the
/// file name of the part where its meta was unreadable).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Those not written or resumed for [`MAX_KEPT_AGE`].
    pub old: Vec<String>,
    /// The oldest of the rest, beyond [`MAX_KEPT_PARTS`].
    pub surplus: Vec<String>,
}

impl Expired {
    pub fn is_empty(&self) -> bool {
        self.old.is_empty() && self.surplus.is_empty()
    }
}

/// Removes the kept parts in `dir` that no transfer owns and that nothing wrote or
/// resumed for [`MAX_KEPT_AGE`] before `now`, then, while more than
/// [`MAX_KEPT_PARTS`] remain, the oldest of the rest; with each, its meta and a
/// folder's staging tree. Best effort: a part that cannot be removed stays.
pub fn expire(dir: &Path, now: SystemTime) -> Expired {
    expire_beyond(dir, now, MAX_KEPT_AGE, MAX_KEPT_PARTS)
}

fn expire_beyond(dir: &Path, now: SystemTime, max_age: Duration, max_parts: usize) -> Expired {
    let mut expired = Expired::default();
    let parts = dir.join(PARTS_DIR);
    // Listed first, so that a missing folder is not made; then it must be ours
    // alone, not a link to elsewhere.
    let Ok(entries) = std::fs::read_dir(&parts) else {
        return expired;
    };
    if platform::ensure_private_dir(&parts).is_err() {
        return expired;
    }
    let mut kept: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let metadata = std::fs::symlink_metadata(&path).ok()?;
            let is_part = path.extension().is_some_and(|ext| ext == "part");
            (is_part && metadata.is_file()).then_some((metadata.modified().ok()?, path))
        })
        .collect();
    kept.sort();
    let mut remaining = kept.len();
    for (modified, path) in kept {
        let old = now.duration_since(modified).is_ok_and(|age| age > max_age);
        let surplus = remaining > max_parts;
        if !old && !surplus {
            // The rest are younger, and their number within bounds.
            break;
        }
        let meta = read_meta(&meta_path(&path)).ok();
        // A recent part without its meta is still being made, or being placed.
        if !old && meta.is_none() {
            continue;
        }
        if !remove_unowned(&path) {
            continue;
        }
        remaining -= 1;
        let name = meta.map_or_else(
            || {
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            },
            |meta| meta.name,
        );
        if old {
            expired.old.push(name);
        } else {
            expired.surplus.push(name);
        }
    }
    if !expired.is_empty() {
        let _ = std::fs::remove_dir(&parts);
    }
    expired
}

/// Removes the part at `path` with its meta and staging tree, holding its lock, as
/// its owner would; false if a transfer owns it, or it has moved.
fn remove_unowned(path: &Path) -> bool {
    let Ok(file) = platform::open_private_file(path, true) else {
        return false;
    };
    if file.try_lock().is_err() || !platform::is_same_file(&file, path).unwrap_or(false) {
        return false;
    }
    let _ = std::fs::remove_file(meta_path(path));
    let tree = path.with_extension("tree");
    if std::fs::symlink_metadata(&tree).is_ok_and(|tree| tree.is_dir()) {
        let _ = std::fs::remove_dir_all(&tree);
    }
    std::fs::remove_file(path).is_ok()
}

impl OwnedPart {
    /// Removes the part and its meta.
    pub fn discard(self) {
        discard_at(&self.path);
    }

    /// Moves this part, verified by its owner, to the first free variant of `name`
    /// in `dir`, never replacing a file. The meta goes first, so the part can never
    /// again be taken for one to resume. `before_rename` is told each name the part
    /// is about to take, with the part's open file, just before it is renamed.
    pub fn place(
        self,
        dir: &Path,
        name: &str,
        mut before_rename: impl FnMut(&Path, &File),
    ) -> io::Result<PathBuf> {
        if !platform::is_same_file(&self.file, &self.path)? {
            return Err(io::Error::other("the part file was moved by someone else"));
        }
        std::fs::remove_file(meta_path(&self.path))?;
        for _ in 0..MAX_PLACE_ATTEMPTS {
            let target = dir.join(first_free_name(dir, name)?);
            before_rename(&target, &self.file);
            match platform::rename_no_replace(&self.path, &target) {
                Ok(()) => {
                    let _ = platform::sync_dir(dir);
                    remove_parts_dir_if_empty(&self.path);
                    return Ok(target);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    let _ = std::fs::remove_file(&self.path);
                    return Err(err);
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "other files kept taking the free name",
        ))
    }
}

/// Moves the verified folder `staging` to the first free variant of `name` in
/// `dir`, never replacing anything; a folder's name is numbered as a file's is.
pub fn place_folder(staging: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    for _ in 0..MAX_PLACE_ATTEMPTS {
        let target = dir.join(first_free_name(dir, name)?);
        match platform::rename_no_replace(staging, &target) {
            Ok(()) => {
                let _ = platform::sync_dir(dir);
                return Ok(target);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "other files kept taking the free name",
    ))
}

/// `name`, or `name (n).ext` with the smallest `n` not taken, from one listing.
/// A name that differs from a taken one only in case counts as taken on every
/// system: where case does not count, the rename would find it taken on each try.
fn first_free_name(dir: &Path, name: &str) -> io::Result<String> {
    let rules = name::NameRules::UNIX.ignoring_case();
    let taken: HashSet<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| Some(rules.key(entry.ok()?.file_name().to_str()?)))
        .collect();
    (0..MAX_NAME_NUMBER)
        .map(|n| name::numbered(name, n))
        .find(|candidate| !taken.contains(&rules.key(candidate)))
        .ok_or_else(|| io::Error::new(io::ErrorKind::AlreadyExists, "no free file name left"))
}

fn read_meta(path: &Path) -> io::Result<Meta> {
    let file = platform::open_private_file(path, false)?;
    let mut text = String::new();
    file.take(MAX_META_LEN + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_META_LEN {
        return Err(io::Error::other("meta file too large"));
    }
    Meta::parse(&text).ok_or_else(|| io::Error::other("not a meta file"))
}

fn meta_path(part: &Path) -> PathBuf {
    part.with_extension("meta")
}

fn remove_parts_dir_if_empty(part: &Path) {
    if let Some(parts) = part.parent() {
        let _ = std::fs::remove_dir(parts);
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    crate::link::tls::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system random number generator failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64, tag: u8) -> Meta {
        Meta {
            name: name.into(),
            size,
            sha256: Some([tag; 32]),
            sender: None,
        }
    }

    fn fingerprint(tag: u8) -> Fingerprint {
        Fingerprint::of(&[tag])
    }

    fn kept(dir: &Path, meta: &Meta, bytes: &[u8]) -> PathBuf {
        let mut part = create(dir, meta).unwrap();
        part.file.write_all(bytes).unwrap();
        part.path.clone()
    }

    #[test]
    fn meta_round_trips_and_parsing_is_exact() {
        let m = meta("a b.txt", 7, 3);
        assert_eq!(Meta::parse(&m.encode()), Some(m.clone()));
        let text = m.encode();
        assert_eq!(Meta::parse(text.trim_end()), None);
        assert_eq!(Meta::parse(&format!("{text}extra\n")), None);
        assert_eq!(Meta::parse(&text.replace("size 7", "size +7")), None);
        assert_eq!(Meta::parse(&text.replace("v2", "v1")), None);
        let unhashed = Meta {
            sha256: None,
            sender: Some(fingerprint(7)),
            ..m
        };
        let text = unhashed.encode();
        let follows = format!("\nsha256 follows\nfrom {}\nname ", fingerprint(7));
        assert!(text.contains(&follows), "{text}");
        assert_eq!(Meta::parse(&text), Some(unhashed));
        let without_sender = text.replace(&format!("from {}\n", fingerprint(7)), "");
        assert_eq!(
            Meta::parse(&without_sender).map(|meta| meta.sender),
            Some(None)
        );
    }

    #[test]
    fn a_part_finished_by_its_owner_cannot_be_claimed_afterwards() {
        // The race from a flood of same-name offers: B finds A's part while A owns
        // it, A stores it and lets go, C starts a new part of the same name, and only
        // then does B take the lock. B must end up with nothing, not with A's stored
        // file nor with C's bytes.
        let dir = tempfile::tempdir().unwrap();
        let offer = meta("r.bin", 3, 1);
        let mut a = create(dir.path(), &offer).unwrap();
        a.file.write_all(b"abc").unwrap();
        let mut b = candidates(dir.path(), &offer).unwrap();
        assert_eq!(b.len(), 1, "B sees A's part");
        let stored = a.place(dir.path(), "r.bin", |_, _| {}).unwrap();
        let _c = create(dir.path(), &meta("r.bin", 3, 2)).unwrap();
        assert_eq!(claim(b.pop().unwrap(), 3).unwrap().map(|p| p.path), None);
        assert_eq!(std::fs::read(stored).unwrap(), b"abc");
    }

    #[test]
    fn a_part_its_owner_still_holds_is_never_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let offer = meta("r.bin", 10, 1);
        let _owner = create(dir.path(), &offer).unwrap();
        assert!(find_resumable(dir.path(), &offer).unwrap().is_none());
    }

    #[test]
    fn a_kept_part_resumes_for_the_same_offer_only() {
        let dir = tempfile::tempdir().unwrap();
        let offer = meta("r.bin", 10, 1);
        let path = kept(dir.path(), &offer, b"abcd");
        assert!(
            find_resumable(dir.path(), &meta("r.bin", 10, 2))
                .unwrap()
                .is_none()
        );
        assert!(
            find_resumable(dir.path(), &meta("other", 10, 1))
                .unwrap()
                .is_none()
        );
        let resumed = find_resumable(dir.path(), &offer).unwrap().unwrap();
        assert_eq!((resumed.path, resumed.held), (path, 4));
    }

    #[test]
    fn a_part_kept_before_its_hash_was_known_resumes_for_either_kind_of_offer() {
        let dir = tempfile::tempdir().unwrap();
        let unhashed = Meta {
            sha256: None,
            sender: Some(fingerprint(1)),
            ..meta("r.bin", 10, 1)
        };
        let hashed = |sender| Meta {
            sender,
            ..meta("r.bin", 10, 1)
        };
        kept(dir.path(), &unhashed, b"abcd");
        for offer in [unhashed.clone(), hashed(Some(fingerprint(1)))] {
            let resumed = find_resumable(dir.path(), &offer).unwrap().unwrap();
            assert_eq!(resumed.held, 4);
        }
        for other in [
            Meta {
                size: 11,
                ..unhashed.clone()
            },
            Meta {
                sender: Some(fingerprint(2)),
                ..unhashed.clone()
            },
            hashed(Some(fingerprint(2))),
        ] {
            assert!(
                find_resumable(dir.path(), &other).unwrap().is_none(),
                "{other:?} resumed a part whose hash never came from another peer"
            );
        }
        let hashed = hashed(None);

        let dir = tempfile::tempdir().unwrap();
        kept(dir.path(), &hashed, b"abcd");
        assert!(
            find_resumable(dir.path(), &unhashed).unwrap().is_none(),
            "a part of a known SHA-256 is not resumed by an offer that may be another file"
        );
    }

    #[test]
    fn parts_and_metas_we_did_not_make_are_passed_over() {
        use crate::platform::testing::{make_fifo, symlink_file};
        let dir = tempfile::tempdir().unwrap();
        let offer = meta("r.bin", 10, 1);
        let linked = kept(dir.path(), &offer, b"ab");
        std::fs::hard_link(&linked, dir.path().join("outside")).unwrap();
        let planted = dir.path().join(PARTS_DIR).join("planted.part");
        std::fs::write(dir.path().join("target"), b"").unwrap();
        symlink_file(&dir.path().join("target"), &planted);
        std::fs::write(planted.with_extension("meta"), offer.encode()).unwrap();
        let fifo = dir.path().join(PARTS_DIR).join("fifo.meta");
        if make_fifo(&fifo) {
            std::fs::write(fifo.with_extension("part"), b"").unwrap();
        }
        let oversized = dir.path().join(PARTS_DIR).join("big.meta");
        std::fs::write(&oversized, format!("{}{}", offer.encode(), " ".repeat(600))).unwrap();
        std::fs::write(oversized.with_extension("part"), b"").unwrap();
        assert!(find_resumable(dir.path(), &offer).unwrap().is_none());
    }

    #[test]
    fn a_parts_folder_open_to_others_is_refused() {
        use crate::platform::testing::{open_to_others, symlink_dir};
        let dir = tempfile::tempdir().unwrap();
        let parts = dir.path().join(PARTS_DIR);
        std::fs::create_dir(&parts).unwrap();
        open_to_others(&parts);
        let err = create(dir.path(), &meta("x", 1, 1)).unwrap_err();
        assert!(err.to_string().contains("open to other users"), "{err}");
        std::fs::remove_dir(&parts).unwrap();
        symlink_dir(dir.path(), &parts);
        assert!(create(dir.path(), &meta("x", 1, 1)).is_err());
    }

    #[test]
    fn a_name_that_differs_from_a_taken_one_only_in_case_gets_a_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Report.TXT"), b"old").unwrap();
        let part = create(dir.path(), &meta("report.txt", 0, 1)).unwrap();
        let stored = part.place(dir.path(), "report.txt", |_, _| {}).unwrap();
        assert_eq!(stored, dir.path().join("report (1).txt"));
    }

    #[test]
    fn the_case_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // Where the tests run, folders tell case apart unless made not to (see
        // tests/it/folders.rs for one that does not).
        assert!(!ignores_case(dir.path()).unwrap());
        assert!(!dir.path().join(PARTS_DIR).exists());
        let kept = kept(dir.path(), &meta("r.bin", 10, 1), b"ab");
        assert!(!ignores_case(dir.path()).unwrap());
        let left: Vec<_> = std::fs::read_dir(dir.path().join(PARTS_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&kept));
    }

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// Makes the part at `path` look last written `age` ago.
    fn age(path: &Path, age: Duration) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn parts_untouched_for_30_days_expire_unless_a_transfer_owns_them() {
        let dir = tempfile::tempdir().unwrap();
        let old = kept(dir.path(), &meta("old.bin", 10, 1), b"ab");
        age(&old, MAX_KEPT_AGE + DAY);
        let recent = kept(dir.path(), &meta("recent.bin", 10, 2), b"ab");
        age(&recent, MAX_KEPT_AGE - DAY);
        let owned = create(dir.path(), &meta("owned.bin", 10, 3)).unwrap();
        age(&owned.path, MAX_KEPT_AGE + DAY);
        // A folder's part, with its staging tree.
        let folder = kept(dir.path(), &meta("photos/", 10, 4), b"");
        std::fs::create_dir_all(folder.with_extension("tree").join("2026")).unwrap();
        std::fs::write(folder.with_extension("tree").join("2026/a.jpg"), b"x").unwrap();
        age(&folder, MAX_KEPT_AGE + DAY);
        // Left by a crash between the part and its meta.
        let orphan = dir.path().join(PARTS_DIR).join("0123.part");
        std::fs::write(&orphan, b"").unwrap();
        age(&orphan, MAX_KEPT_AGE + DAY);
        let mut expired = expire(dir.path(), SystemTime::now());
        expired.old.sort();
        assert_eq!(expired.old, ["0123.part", "old.bin", "photos/"]);
        assert!(expired.surplus.is_empty());
        let mut left: Vec<PathBuf> = std::fs::read_dir(dir.path().join(PARTS_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        left.sort();
        let mut expected = vec![
            recent.clone(),
            meta_path(&recent),
            owned.path.clone(),
            meta_path(&owned.path),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(expire(dir.path(), SystemTime::now()), Expired::default());
    }

    #[test]
    fn nothing_is_expired_through_a_parts_folder_that_is_a_link() {
        use crate::platform::testing::symlink_dir;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let old = kept(elsewhere.path(), &meta("old.bin", 10, 1), b"ab");
        age(&old, MAX_KEPT_AGE + DAY);
        symlink_dir(
            &elsewhere.path().join(PARTS_DIR),
            &dir.path().join(PARTS_DIR),
        );
        assert!(expire(dir.path(), SystemTime::now()).is_empty());
        assert!(old.exists());
    }

    #[test]
    fn a_resumed_part_counts_its_age_from_the_resume() {
        let dir = tempfile::tempdir().unwrap();
        let offer = meta("r.bin", 10, 1);
        let path = kept(dir.path(), &offer, b"ab");
        age(&path, MAX_KEPT_AGE - DAY);
        drop(find_resumable(dir.path(), &offer).unwrap().unwrap());
        let later = SystemTime::now() + 2 * DAY;
        assert!(expire(dir.path(), later).is_empty());
        assert!(path.exists());
    }

    #[test]
    fn the_oldest_parts_beyond_the_most_kept_expire() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5u8 {
            let path = kept(dir.path(), &meta(&format!("{i}.bin"), 10, i), b"ab");
            age(&path, DAY * (10 - u32::from(i)));
        }
        // Being made: no meta yet.
        let making = dir.path().join(PARTS_DIR).join("4567.part");
        std::fs::write(&making, b"").unwrap();
        age(&making, 20 * DAY);
        let expired = expire_beyond(dir.path(), SystemTime::now(), MAX_KEPT_AGE, 3);
        assert_eq!(expired.surplus, ["0.bin", "1.bin", "2.bin"]);
        assert!(expired.old.is_empty());
        assert_eq!(kept_counts(dir.path()), (3, 2));
    }

    #[test]
    fn every_kept_part_can_be_found_to_resume_however_many_there_are() {
        // Past the 1,000 directory entries that the lookup once read, and in the
        // order the file system lists them, which is not the order they were made.
        let dir = tempfile::tempdir().unwrap();
        let offers: Vec<Meta> = (0..1100u32)
            .map(|i| meta(&format!("{i}.bin"), 10, (i % 251) as u8))
            .collect();
        for offer in &offers {
            kept(dir.path(), offer, b"ab");
        }
        // Each has more than an even chance to lie past those entries: 10 of them.
        for offer in offers.iter().step_by(110) {
            let found = find_resumable(dir.path(), offer).unwrap();
            assert_eq!(found.map(|part| part.held), Some(2), "{}", offer.name);
        }
    }

    /// How many parts and metas the parts folder in `dir` holds.
    fn kept_counts(dir: &Path) -> (usize, usize) {
        let names: Vec<PathBuf> = std::fs::read_dir(dir.join(PARTS_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        let count = |ext: &str| {
            names
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .count()
        };
        (count("part"), count("meta"))
    }

    #[test]
    fn placing_picks_the_first_free_name_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        std::fs::write(dir.path().join("a (1).txt"), b"old").unwrap();
        let part = create(dir.path(), &meta("a.txt", 0, 1)).unwrap();
        let stored = part.place(dir.path(), "a.txt", |_, _| {}).unwrap();
        assert_eq!(stored, dir.path().join("a (2).txt"));
        assert!(!dir.path().join(PARTS_DIR).exists());
    }
}
