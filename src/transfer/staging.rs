//! A folder's staging tree on disk while it arrives: each file written under its
//! own name, and at the top a note of how much of the tree is durable, under a name
//! no received name can have (received names never start with a dot). Files are
//! made durable a batch at a time ([`Durability`]), so a power cut can lose or garble
//! files verified after the last batch; a resume trusts by their size only the
//! files the note covers, checks every other kept file by its SHA-256 again, and
//! keeps of the file that was arriving only what the note says is durable.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::{Checked, Kind};
use crate::platform;

/// The note of what is durable, at the top of the staging folder.
const SYNCED: &str = ".synced";
/// Where a new note is written before it replaces the old one.
const SYNCED_NEW: &str = ".synced-new";
const SYNCED_HEADER: &str = "chat staging synced v1";
/// A note is three short lines; anything larger was not written by us.
const MAX_SYNCED_LEN: u64 = 128;

/// Where a folder's files are made durable: each file as it is complete, and then
/// all of them at once, before a note says they are durable or the folder takes its
/// final name. [`platform::SyncBatch`] is the real one.
pub trait Durability: Send + 'static {
    /// `file`, verified and complete at `path`, joins the batch.
    fn add_file(&mut self, file: &File, path: &Path) -> io::Result<()>;
    /// A folder of the staging tree, in which the batch's names are made.
    fn add_folder(&mut self, path: &Path);
    /// Makes every file added so far, and every name in the batch's folders, reach
    /// the disk before anything written after; the next full sync (a note, or the
    /// folder's final name) is then durable only with them.
    fn sync(&mut self) -> io::Result<()>;
}

impl Durability for platform::SyncBatch {
    fn add_file(&mut self, file: &File, path: &Path) -> io::Result<()> {
        platform::SyncBatch::add_file(self, file, path)
    }

    fn add_folder(&mut self, path: &Path) {
        platform::SyncBatch::add_folder(self, path)
    }

    fn sync(&mut self) -> io::Result<()> {
        platform::SyncBatch::sync(self)
    }
}

/// How much of a staging folder is durable: its first `files` files, verified, and
/// the first `partial` bytes of the next one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub files: usize,
    pub partial: u64,
}

impl Synced {
    fn encode(self) -> String {
        format!(
            "{SYNCED_HEADER}\nfiles {}\npartial {}\n",
            self.files, self.partial
        )
    }

    /// The exact format [`Synced::encode`] writes, or nothing.
    fn parse(text: &str) -> Option<Synced> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != SYNCED_HEADER {
            return None;
        }
        let number = |line: Option<&str>, key: &str| -> Option<u64> {
            let digits = line?.strip_prefix(key)?.strip_prefix(' ')?;
            if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let files = number(lines.next(), "files")?;
        let partial = number(lines.next(), "partial")?;
        if lines.next().is_some() {
            return None;
        }
        Some(Synced {
            files: usize::try_from(files).ok()?,
            partial,
        })
    }

    /// The note in `staging`; nothing durable if there is none, or it is not one
    /// we wrote whole.
    pub fn read(staging: &Path) -> Synced {
        let read = || -> io::Result<Option<Synced>> {
            let file = platform::open_private_file(&staging.join(SYNCED), false)?;
            let mut text = String::new();
            file.take(MAX_SYNCED_LEN + 1).read_to_string(&mut text)?;
            Ok(Synced::parse(&text))
        };
        read().ok().flatten().unwrap_or_default()
    }

    /// Notes durably in `staging` that this much of it is durable. Call it only
    /// once what it says has been synced.
    pub fn write(self, staging: &Path) -> io::Result<()> {
        let new = staging.join(SYNCED_NEW);
        let _ = std::fs::remove_file(&new);
        let mut file = platform::create_private_file(&new)?;
        file.write_all(self.encode().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&new, staging.join(SYNCED))?;
        platform::sync_dir(staging)
    }

    /// Takes the note away, so that the staging folder is the received folder alone.
    pub fn remove(staging: &Path) -> io::Result<()> {
        match std::fs::remove_file(staging.join(SYNCED)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Where a staging folder stands: the first file not yet verified, what is held of
/// it, where that is in the folder's byte sequence, and what of it is durable.
#[derive(Debug, PartialEq, Eq)]
pub struct Start {
    pub next_file: usize,
    pub held: u64,
    pub offset: u64,
    pub synced: Synced,
}

/// Creates every folder of the manifest in `staging` (so empty ones are kept), adds
/// them to `batch`, and finds how far an earlier transfer of the same folder got.
/// Whole files the note does not cover are checked by their SHA-256, and one that
/// matches joins `batch`. The first file that is not verified is kept only as far as
/// the note says it is durable; the files after it arrive again.
pub fn prepare(
    staging: &Path,
    manifest: &Checked,
    batch: &mut impl Durability,
) -> io::Result<Start> {
    platform::ensure_private_dir(staging)?;
    remove_strays(staging)?;
    batch.add_folder(staging);
    for entry in manifest.entries() {
        if entry.kind() == Kind::Folder {
            let folder = entry.path_in(staging);
            match std::fs::create_dir(&folder) {
                Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
                _ => {}
            }
            batch.add_folder(&folder);
        }
    }
    let synced = Synced::read(staging);
    let mut start = Start {
        next_file: manifest.files(),
        held: 0,
        offset: 0,
        synced,
    };
    let files = (0..manifest.files()).map_while(|index| manifest.file(index));
    for (index, entry) in files.enumerate() {
        let Kind::File { size, sha256 } = entry.kind() else {
            unreachable!("a file's entry is a file");
        };
        let path = entry.path_in(staging);
        let kept = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|kept| kept.is_file())
            .map(|kept| kept.len());
        let verified = kept == Some(size)
            && (index < synced.files || check_again(&path, size, sha256, batch)?);
        if !verified {
            let durable = if index == synced.files {
                synced.partial
            } else {
                0
            };
            start.next_file = index;
            start.held = kept.unwrap_or(0).min(size).min(durable);
            break;
        }
        start.offset += size;
    }
    start.offset += start.held;
    // A note that says more is durable than is kept now (a file it covers went
    // missing) would cover what arrives in its place before it is synced.
    let kept = Synced {
        files: start.next_file,
        partial: start.held,
    };
    if (synced.files, synced.partial) > (kept.files, kept.partial) {
        kept.write(staging)?;
        start.synced = kept;
    }
    Ok(start)
}

/// Removes from the top of `staging` every name a received one cannot have but the
/// note: a note half written, or a file an earlier version kept there while it
/// arrived. Left there, they would go with the folder to its final name.
fn remove_strays(staging: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') && name != SYNCED {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Whether the kept file at `path`, of the right size, is still exactly the
/// verified one by its SHA-256; one that is joins `batch`.
fn check_again(
    path: &Path,
    size: u64,
    sha256: [u8; 32],
    batch: &mut impl Durability,
) -> io::Result<bool> {
    let file = platform::open_private_file(path, false)?;
    let mut hasher = Sha256::new();
    let hashed = super::hash_into(&mut hasher, (&file).take(size), |_| {})?;
    let verified = hashed == size && <[u8; 32]>::from(hasher.finalize()) == sha256;
    if verified {
        batch.add_file(&file, path)?;
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::manifest::{self, Entry};
    use crate::transfer::name::NameRules;
    use std::path::PathBuf;

    /// A batch that does nothing: what the note covers is what these tests check.
    struct NoBatch(Vec<PathBuf>);

    impl Durability for NoBatch {
        fn add_file(&mut self, _: &File, path: &Path) -> io::Result<()> {
            self.0.push(path.to_owned());
            Ok(())
        }
        fn add_folder(&mut self, _: &Path) {}
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const FILES: [(&str, &[u8]); 4] = [
        ("a", b"first file"),
        ("sub/b", b"second"),
        ("sub/c", b"third one"),
        ("d", b"the fourth file"),
    ];

    fn manifest() -> Checked {
        let entries = manifest::entries_of(&FILES);
        let bytes = manifest::encode(&entries);
        let total = FILES.iter().map(|(_, data)| data.len() as u64).sum();
        manifest::check(&bytes, entries.len() as u32, total, NameRules::here()).unwrap()
    }

    /// A staging folder as a transfer that stopped in file `arriving` leaves it:
    /// the files before it verified, `held` bytes of it kept, and `synced` noted.
    fn staged(arriving: usize, held: usize, synced: Synced) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("x.tree");
        prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        for (path, data) in &FILES[..arriving] {
            std::fs::write(staging.join(path), data).unwrap();
        }
        let (path, data) = FILES[arriving];
        std::fs::write(staging.join(path), &data[..held]).unwrap();
        synced.write(&staging).unwrap();
        (dir, staging)
    }

    fn offset_of(file: usize) -> u64 {
        FILES[..file]
            .iter()
            .map(|(_, data)| data.len() as u64)
            .sum()
    }

    #[test]
    fn a_note_round_trips_and_parsing_is_exact() {
        let synced = Synced {
            files: 3,
            partial: 17,
        };
        assert_eq!(Synced::parse(&synced.encode()), Some(synced));
        let text = synced.encode();
        assert_eq!(Synced::parse(text.trim_end()), None);
        assert_eq!(Synced::parse(&format!("{text}more\n")), None);
        assert_eq!(Synced::parse(&text.replace("files 3", "files +3")), None);
        assert_eq!(Synced::parse(&text.replace("v1", "v0")), None);
        assert_eq!(Synced::parse(&text[..text.len() / 2]), None);
    }

    #[test]
    fn what_the_note_covers_resumes_as_it_stands() {
        let (_dir, staging) = staged(
            2,
            4,
            Synced {
                files: 2,
                partial: 4,
            },
        );
        let mut batch = NoBatch(vec![]);
        let start = prepare(&staging, &manifest(), &mut batch).unwrap();
        assert_eq!((start.next_file, start.held), (2, 4));
        assert_eq!(start.offset, offset_of(2) + 4);
        assert!(batch.0.is_empty(), "nothing was read again: {:?}", batch.0);
    }

    #[test]
    fn files_past_the_note_are_checked_again_and_garbled_ones_arrive_again() {
        // As a power cut can leave them: the note from an earlier batch, file 1
        // verified since but garbled on disk, file 2 whole, file 3 cut short.
        let (_dir, staging) = staged(3, 4, Synced::default());
        std::fs::write(staging.join("sub/b"), b"SECOND").unwrap();
        let mut batch = NoBatch(vec![]);
        let start = prepare(&staging, &manifest(), &mut batch).unwrap();
        assert_eq!(
            (start.next_file, start.held, start.offset),
            (1, 0, offset_of(1))
        );
        assert_eq!(
            batch.0,
            [staging.join("a")],
            "a re-verified file joins the batch"
        );
    }

    #[test]
    fn a_file_cut_short_past_the_note_arrives_again() {
        let (_dir, staging) = staged(
            3,
            4,
            Synced {
                files: 1,
                partial: 0,
            },
        );
        std::fs::write(staging.join("sub/b"), b"sec").unwrap();
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!(
            (start.next_file, start.held, start.offset),
            (1, 0, offset_of(1))
        );
    }

    #[test]
    fn an_arriving_file_is_kept_only_as_far_as_it_is_durable() {
        // Nine bytes of file 3 arrived, but only five were synced before the stop.
        let (_dir, staging) = staged(
            3,
            9,
            Synced {
                files: 3,
                partial: 5,
            },
        );
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held), (3, 5));
        // Whole but garbled after the note's five bytes: those five are kept.
        let (_dir, staging) = staged(
            3,
            0,
            Synced {
                files: 3,
                partial: 5,
            },
        );
        std::fs::write(staging.join("d"), b"the fXXXXXXXXXX").unwrap();
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held), (3, 5));
        // Bytes of a file the note does not reach are never kept.
        let (_dir, staging) = staged(
            3,
            9,
            Synced {
                files: 2,
                partial: 5,
            },
        );
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held), (3, 0));
    }

    #[test]
    fn a_note_that_says_more_than_is_kept_is_corrected_at_once() {
        let (_dir, staging) = staged(
            3,
            9,
            Synced {
                files: 3,
                partial: 5,
            },
        );
        std::fs::remove_file(staging.join("sub/b")).unwrap();
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held), (1, 0));
        let corrected = Synced {
            files: 1,
            partial: 0,
        };
        assert_eq!(
            (start.synced, Synced::read(&staging)),
            (corrected, corrected)
        );
    }

    #[test]
    fn names_no_received_name_can_have_are_cleared_from_the_top() {
        let (_dir, staging) = staged(
            1,
            2,
            Synced {
                files: 1,
                partial: 2,
            },
        );
        std::fs::write(staging.join(".arriving-1"), b"se").unwrap();
        std::fs::write(staging.join(SYNCED_NEW), b"chat staging").unwrap();
        let start = prepare(&staging, &manifest(), &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held), (1, 2));
        assert_eq!(crate::transfer::names_in(&staging), [SYNCED, "a", "sub"]);
    }

    #[test]
    fn an_empty_file_not_yet_made_is_not_taken_for_a_kept_one() {
        let entries = [Entry {
            path: "empty".into(),
            kind: Kind::File {
                size: 0,
                sha256: Sha256::digest(b"").into(),
            },
        }];
        let bytes = manifest::encode(&entries);
        let manifest = manifest::check(&bytes, 1, 0, NameRules::here()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("x.tree");
        let start = prepare(&staging, &manifest, &mut NoBatch(vec![])).unwrap();
        assert_eq!((start.next_file, start.held, start.offset), (0, 0, 0));
    }

    #[test]
    fn a_garbled_note_covers_nothing() {
        let (_dir, staging) = staged(
            2,
            4,
            Synced {
                files: 2,
                partial: 4,
            },
        );
        std::fs::write(
            staging.join(SYNCED),
            b"chat staging synced v1\nfiles 2\npar",
        )
        .unwrap();
        let mut batch = NoBatch(vec![]);
        let start = prepare(&staging, &manifest(), &mut batch).unwrap();
        assert_eq!((start.next_file, start.held), (2, 0));
        assert_eq!(batch.0.len(), 2, "both kept files were read again");
    }
}
