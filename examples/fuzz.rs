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
//! keep such inputs in `fuzz/regressions/` (named `decoder-*` or `receiver-*`):
//! `tests/fuzz_regressions.rs` replays every one of them in `make test`.

use std::time::{Duration, Instant};

use chat::frame::{Frame, MAX_CHUNK_LEN, VerdictStatus};
use sha2::{Digest, Sha256};

#[path = "../fuzz/checks.rs"]
mod checks;

use checks::{check_decoder, check_receiver};

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
