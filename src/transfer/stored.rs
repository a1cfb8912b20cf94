//! Files already in the download folder. An offer of a file that is there already,
//! byte for byte under its name or a numbered variant of it, is answered "already
//! have it" instead of storing a second copy: typically the connection dropped, or
//! the receiver was restarted, after the file was stored and before its verdict
//! reached the sender, who then offers it again. The check reads the bytes on disk,
//! so it holds across restarts and trusts no record.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::name;
use super::parts::Meta;
use crate::platform;

/// How many variants of a name (`a.txt`, `a (1).txt`, …) are looked at.
const MAX_VARIANTS_CHECKED: u32 = 32;

/// Where the download folder `dir` holds exactly the file `meta` describes: a
/// regular file of ours with its name (or a numbered variant), size and SHA-256.
/// Reads and hashes files of the right size: call it off the async runtime.
pub fn find(dir: &Path, meta: &Meta) -> Option<PathBuf> {
    (0..MAX_VARIANTS_CHECKED)
        .map(|n| dir.join(name::numbered(&meta.name, n)))
        .find(|path| holds(path, meta))
}

fn holds(path: &Path, meta: &Meta) -> bool {
    let Ok(file) = platform::open_private_file(path, false) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(meta.size) {
        return false;
    }
    let mut hasher = Sha256::new();
    super::hash_into(&mut hasher, &file, |_| {}).ok() == Some(meta.size)
        && <[u8; 32]>::from(hasher.finalize()) == meta.sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, data: &[u8]) -> Meta {
        Meta {
            name: name.into(),
            size: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        }
    }

    #[test]
    fn finds_the_same_bytes_under_the_name_or_a_numbered_variant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(find(dir.path(), &meta("a.txt", b"abc")), Some(path));
        assert_eq!(find(dir.path(), &meta("a.txt", b"abd")), None, "same size");
        assert_eq!(find(dir.path(), &meta("b.txt", b"abc")), None);
        std::fs::write(dir.path().join("a (7).txt"), b"other").unwrap();
        assert_eq!(
            find(dir.path(), &meta("a.txt", b"other")),
            Some(dir.path().join("a (7).txt"))
        );
    }

    #[test]
    fn links_and_folders_never_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), b"abc").unwrap();
        crate::platform::testing::symlink_file(&dir.path().join("real"), &dir.path().join("a.txt"));
        std::fs::hard_link(dir.path().join("real"), dir.path().join("b.txt")).unwrap();
        std::fs::create_dir(dir.path().join("c.txt")).unwrap();
        for name in ["a.txt", "b.txt", "c.txt"] {
            assert_eq!(find(dir.path(), &meta(name, b"abc")), None, "{name}");
        }
    }
}
