//! Seed inputs for every target: valid frame sequences (chat, transfers that verify,
//! fail, are cancelled, resumed after a reconnect or offered again), tricky file names
//! and tricky terminal text. `examples/seeds.rs` writes them out as a corpus; the
//! frame-aware mutator (`mutator.rs`) also draws names from here.

use chat::frame::{Frame, MAX_CHUNK_LEN, PROTOCOL_VERSION, VerdictStatus};
use sha2::{Digest, Sha256};

/// Offered file names worth starting from: ordinary ones, and ones each name rule
/// is about.
pub const NAMES: &[&str] = &[
    "a.txt",
    "film.mkv",
    "a.tar.gz",
    "README",
    "my notes.txt",
    "日本語.pdf",
    "e\u{301}.txt",
    ".bashrc",
    "...x",
    "-rf",
    "--checkpoint-action=exec=sh x.sh",
    "report.pdf. . ",
    "movie.mkv.part",
    "movie.mkv.part.meta",
    "x.PART",
    "invoice\u{202e}fdp.exe",
    "report\u{200b}.pdf",
    "CON",
    "aux .txt",
    "../etc/passwd",
    "a\\b",
    "..",
    "a (1).txt",
    "q\u{323}\u{307}.txt",
    "\u{1100}\u{1161}\u{11a8}.txt",
];

/// Text worth showing on a terminal: escape sequences, bidirectional and invisible
/// characters, piles of combining marks.
pub const TEXTS: &[&str] = &[
    "hello, world",
    "héllo, wörld! 日本",
    "\x1b[2J\x1b]0;pwned\x07",
    "a\rb\nc\td\x7f",
    "\u{9b}31m",
    "abc\u{202e}fed",
    "\u{2066}x\u{2069}",
    "a\u{2028}b",
    "report\u{200b}.pdf",
    "\u{feff}x\u{e0041}",
    "a\u{3164}b",
    "\u{fffe}\u{10ffff}",
    "a\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}b\u{300}\u{300}",
    "\u{301}\u{302}\u{303}\u{304}\u{305}",
    "e\u{301}\u{302}",
];

/// Frame sequences a receiver may get, each encoded as one input.
pub fn frame_sequences() -> Vec<Vec<u8>> {
    let data = b"hello fuzz".to_vec();
    let sha = sha256(&data);
    let offer = |id, name: &str, data: &[u8]| Frame::Offer {
        id,
        size: data.len() as u64,
        sha256: sha256(data),
        name: name.into(),
    };
    let unhashed = |id, name: &str, data: &[u8]| Frame::OfferUnhashed {
        id,
        size: data.len() as u64,
        name: name.into(),
    };
    let chunk = |id, data: &[u8]| Frame::Chunk {
        id,
        data: data.to_vec(),
    };
    let hello = |session_id| Frame::Hello {
        version: PROTOCOL_VERSION,
        session_id,
        name: "fuzz".into(),
    };
    let sequences = [
        vec![
            Frame::Message {
                seq: 1,
                text: "hi".into(),
            },
            Frame::Message {
                seq: 2,
                text: "there".into(),
            },
        ],
        // A transfer that verifies.
        vec![
            offer(1, "a.txt", &data),
            chunk(1, &data[..4]),
            chunk(1, &data[4..]),
        ],
        // One that fails its hash check, then one too large to finish, cancelled.
        vec![
            Frame::Offer {
                id: 2,
                size: 3,
                sha256: [0; 32],
                name: ".hidden".into(),
            },
            chunk(2, &[1, 2, 3]),
            Frame::Offer {
                id: 3,
                size: MAX_CHUNK_LEN as u64 + 1,
                sha256: sha,
                name: "big".into(),
            },
            Frame::Cancel {
                id: 3,
                reason: "changed".into(),
            },
        ],
        // The same name twice: the second copy is numbered.
        vec![
            offer(1, "a.tar.gz", &data),
            chunk(1, &data),
            offer(2, "a.tar.gz", b"other"),
            chunk(2, b"other"),
        ],
        // An empty file, and two transfers interleaved.
        vec![
            offer(1, "empty", b""),
            offer(2, "x.bin", &data),
            offer(3, "y.bin", b"abc"),
            chunk(2, &data[..5]),
            chunk(3, b"abc"),
            chunk(2, &data[5..]),
        ],
        // Cut off mid-file, then resumed on the next connection.
        vec![
            offer(1, "film.mkv", &data),
            chunk(1, &data[..3]),
            hello(8),
            offer(1, "film.mkv", &data),
            chunk(1, &data[3..]),
        ],
        // Offered again on a new connection after it was stored: "already saved".
        vec![
            offer(1, "a.txt", &data),
            chunk(1, &data),
            hello(8),
            offer(1, "a.txt", &data),
            Frame::Message {
                seq: 1,
                text: "again".into(),
            },
        ],
        // Hashes after the data: one that verifies, one whose digest is wrong, and
        // one cut off before its digest and resumed by a hashed offer.
        vec![
            unhashed(1, "late.txt", &data),
            chunk(1, &data),
            Frame::Digest { id: 1, sha256: sha },
            unhashed(2, "wrong.txt", b"abc"),
            chunk(2, b"abc"),
            Frame::Digest { id: 2, sha256: sha },
            unhashed(3, "cut.bin", &data),
            chunk(3, &data),
            hello(8),
            offer(1, "cut.bin", &data),
        ],
        // A digest too early, and one for a hashed offer.
        vec![
            unhashed(1, "early.txt", &data),
            chunk(1, &data[..2]),
            Frame::Digest { id: 1, sha256: sha },
        ],
        vec![
            offer(1, "a.txt", &data),
            chunk(1, &data),
            Frame::Digest { id: 1, sha256: sha },
        ],
        // Frames a receiver must not get.
        vec![
            Frame::Ack { seq: 1 },
            Frame::Credit { limit: 1 << 24 },
            Frame::Accept { id: 1, offset: 0 },
            Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                detail: "ok".into(),
            },
            Frame::Leave,
        ],
    ];
    sequences.iter().map(|frames| encode(frames)).collect()
}

pub fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        frame.encode(&mut bytes);
    }
    bytes
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Folder manifests worth starting from, each with the entry count and total size its
/// `Folder` frame announces in front (`checks::check_manifest`): a small tree as a
/// sender lists it, and trees each manifest rule refuses.
pub fn manifests() -> Vec<Vec<u8>> {
    use chat::transfer::manifest::{Entry, Kind, encode};
    let folder = |path: &str| Entry {
        path: path.into(),
        kind: Kind::Folder,
    };
    let file = |path: &str, size: u64| Entry {
        path: path.into(),
        kind: Kind::File {
            size,
            sha256: [size as u8; 32],
        },
    };
    let trees = [
        vec![
            file("README", 8),
            folder("empty folder"),
            folder("src"),
            file("src/main.rs", 13),
            folder("src/nested"),
            file("src/nested/café au lait.txt", 7),
            file("src/nested/empty", 0),
        ],
        vec![folder("a"), file("a/../b", 1)],
        vec![file("/etc/passwd", 1)],
        vec![file("same", 1), file("same", 2)],
        vec![file("Case", 1), file("case", 1)],
        vec![folder("x"), file("x", 1)],
        vec![file("orphan/child", 1)],
        vec![file("big", u64::MAX), file("bigger", 2)],
        vec![folder("CON"), file("CON/notes.txt", 3)],
        vec![file(".git", 1), folder("src"), file("src/a:b", 2)],
    ];
    trees
        .iter()
        .map(|entries| {
            let total = entries.iter().fold(0u64, |sum, entry| match entry.kind {
                Kind::File { size, .. } => sum.wrapping_add(size),
                Kind::Folder => sum,
            });
            let mut input = (entries.len() as u32).to_be_bytes().to_vec();
            input.extend_from_slice(&total.to_be_bytes());
            input.extend(encode(entries));
            input
        })
        .collect()
}
