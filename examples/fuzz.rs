//! A mutation fuzzer for the frame decoder and the receiver, on stable Rust.
//!
//! `cargo fuzz` needs a nightly toolchain; this driver needs none. It is not
//! coverage-guided: it mutates a corpus of valid frame sequences (bit flips, byte
//! overwrites, interesting length values, truncation, insertion, splicing) and checks
//! invariants on every input.
//!
//!   cargo run --release --locked --example fuzz -- decoder SECONDS [SEED]
//!   cargo run --release --locked --example fuzz -- receiver SECONDS [SEED]
//!
//! Any failing input is written to `fuzz-crash-<target>-<n>.bin` and the run exits 1;
//! keep such inputs as regression tests.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat::frame::{Frame, HEADER_LEN, MAX_CHUNK_LEN, VerdictStatus};
use chat::inbound::ReceiveState;
use chat::transfer::incoming::ReceiveLimits;
use chat::transfer::receiving::Receiving;
use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("decoder");
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng(seed | 1);
    let corpus = corpus();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    let mut crashes = 0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    while Instant::now() < deadline {
        let input = mutate(&corpus, &mut rng);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match target {
            "decoder" => check_decoder(&input),
            "receiver" => runtime.block_on(check_receiver(&input, scratch.path(), runs)),
            other => panic!("unknown target {other}; use decoder or receiver"),
        }));
        if let Err(panic) = outcome.map_err(|p| format!("{p:?}")).and_then(|r| r) {
            crashes += 1;
            let path = format!("fuzz-crash-{target}-{crashes}.bin");
            std::fs::write(&path, &input).unwrap();
            eprintln!("failure saved to {path}: {panic}");
        }
        runs += 1;
    }
    println!("fuzz {target}: {runs} inputs in {seconds} s, {crashes} failures (seed {seed})");
    std::process::exit(i32::from(crashes > 0));
}

/// Decoding never panics, never claims more bytes than it was given, and whatever it
/// accepts re-encodes to exactly the bytes it consumed (the encoding is canonical).
fn check_decoder(input: &[u8]) -> Result<(), String> {
    let mut offset = 0;
    while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
        if used > input.len() - offset || used < HEADER_LEN {
            return Err(format!(
                "decode used {used} of {} bytes",
                input.len() - offset
            ));
        }
        let mut again = Vec::new();
        frame.encode(&mut again);
        if again != input[offset..offset + used] {
            return Err(format!(
                "{} frame does not re-encode to its bytes",
                frame.kind()
            ));
        }
        offset += used;
    }
    Ok(())
}

/// Feeds decoded frames to the receiving side as a connection would. Nothing may
/// appear outside the download folder, and every file under a final name must hold
/// exactly the bytes whose SHA-256 an offer of that name declared.
async fn check_receiver(input: &[u8], scratch: &Path, run: u64) -> Result<(), String> {
    let root = scratch.join(run.to_string());
    let downloads = root.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let limits = ReceiveLimits {
        dir: downloads.clone(),
        max_file_size: Some(1 << 20),
    };
    let (replies, mut replies_rx) = tokio::sync::mpsc::unbounded_channel();
    let (events, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut files = Receiving::new(limits, "fuzz".into(), replies, events);
    let state = Arc::new(Mutex::new(ReceiveState::default()));
    let mut declared: Vec<(String, [u8; 32])> = Vec::new();
    let mut offset = 0;
    let mut keep_partial = true;
    while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
        offset += used;
        let result = match frame {
            Frame::Message { seq, .. } => state
                .lock()
                .unwrap()
                .arrive(7, seq)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Frame::Offer {
                id,
                size,
                sha256,
                name,
            } => {
                declared.push((name.clone(), sha256));
                files
                    .offer(id, &name, size, sha256)
                    .map_err(|e| e.to_string())
            }
            Frame::Chunk { id, data } => files.chunk(id, data).await.map_err(|e| e.to_string()),
            Frame::Cancel { id, reason } => {
                files.cancel(id, &reason).await.map_err(|e| e.to_string())
            }
            _ => Err("frame not valid on this direction".into()),
        };
        if result.is_err() {
            keep_partial = false;
            break;
        }
    }
    files.abandon("fuzz input ended", keep_partial).await;
    drop(files);
    // Let verdict tasks finish: they hold clones of the reply sender.
    while replies_rx.recv().await.is_some() {}
    while events_rx.try_recv().is_ok() {}

    let outside: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if outside != ["downloads"] {
        return Err(format!("files outside the download folder: {outside:?}"));
    }
    for entry in std::fs::read_dir(&downloads).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".part") || name.ends_with(".part.meta") {
            continue;
        }
        let hash: [u8; 32] = Sha256::digest(std::fs::read(entry.path()).unwrap()).into();
        if !declared.iter().any(|(_, declared)| *declared == hash) {
            return Err(format!("{name} holds bytes no offer declared"));
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
    Ok(())
}

/// Valid sequences to start from: chat, transfers that verify, fail and cancel.
fn corpus() -> Vec<Vec<u8>> {
    let data = b"hello fuzz".to_vec();
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let sequences = vec![
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
        vec![
            Frame::Offer {
                id: 1,
                size: data.len() as u64,
                sha256: sha,
                name: "a.txt".into(),
            },
            Frame::Chunk {
                id: 1,
                data: data[..4].to_vec(),
            },
            Frame::Chunk {
                id: 1,
                data: data[4..].to_vec(),
            },
        ],
        vec![
            Frame::Offer {
                id: 2,
                size: 3,
                sha256: [0; 32],
                name: ".hidden".into(),
            },
            Frame::Chunk {
                id: 2,
                data: vec![1, 2, 3],
            },
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
        vec![
            Frame::Ack { seq: 1 },
            Frame::Accept { id: 1, offset: 0 },
            Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                detail: "ok".into(),
            },
        ],
    ];
    sequences
        .into_iter()
        .map(|frames| {
            let mut bytes = Vec::new();
            for frame in frames {
                frame.encode(&mut bytes);
            }
            bytes
        })
        .collect()
}

fn mutate(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut input = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        if input.is_empty() {
            input.push(rng.next() as u8);
        }
        let at = rng.below(input.len());
        match rng.below(7) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => {
                let interesting: [u32; 6] = [0, 1, 8, 0x7fff_ffff, 0xffff_ffff, 131_073];
                let value = interesting[rng.below(interesting.len())].to_be_bytes();
                let end = (at + 4).min(input.len());
                input[at..end].copy_from_slice(&value[..end - at]);
            }
            3 => input.truncate(at),
            4 => {
                let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, extra);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let copy = input[at..].to_vec();
                input.extend_from_slice(&copy);
            }
        }
    }
    input
}

/// xorshift64: deterministic for a seed, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
