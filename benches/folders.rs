//! `make bench` (`cargo bench --bench folders`): a source-like tree of many small
//! files and a few large ones, sent by `chat` (`transfer DIR`, first with an empty
//! hash cache, then again with the hashes cached) against `scp -r` and `tar | ssh`
//! on loopback, alternating the contenders over several rounds. Reports ratios per
//! round and medians, chat-line latency during the transfer (p99), and peak memory.
//!
//! Settings (environment): `BENCH_FILES` (small files, default 10,000),
//! `BENCH_ROUNDS` (default 3), `BENCH_DIR` (scratch folder, as for `transfer`).

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use support::pair::chat_round;
use support::ssh::Sshd;
use support::{env_or, make_identities, median, percentile, scratch_dir};

/// The few large files of the tree, as in a source tree with some assets.
const LARGE_FILES: u64 = 4;
const LARGE_FILE_LEN: u64 = 30 << 20;
/// Small files go into folders of this many, two levels deep.
const FILES_PER_FOLDER: u64 = 100;

fn main() {
    let files: u64 = env_or("BENCH_FILES", 10_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    let tree = scratch.join("tree");
    let bytes = make_tree(&tree, files);
    let mib = bytes as f64 / f64::from(1 << 20);
    println!(
        "bench: a tree of {} files, {mib:.0} MiB, {rounds} rounds, scratch {}",
        files + LARGE_FILES,
        scratch.display()
    );
    let certs = make_identities(&scratch);
    let sshd = Sshd::start(&scratch);
    if let Err(reason) = &sshd {
        println!("SKIPPED scp -r and tar | ssh contenders: {reason}");
    }
    // A file changed within the last 2 s is hashed but not cached.
    std::thread::sleep(Duration::from_millis(2100));
    let hash_cache = certs.join("hash_cache");
    let (mut chat_secs, mut again_secs, mut scp_secs, mut tar_secs) =
        (vec![], vec![], vec![], vec![]);
    let (mut latencies, mut rss) = (vec![], 0);
    for round in 1..=rounds {
        let _ = std::fs::remove_file(&hash_cache);
        let first = chat_round(&scratch, &tree);
        let again = chat_round(&scratch, &tree);
        println!(
            "round {round}: chat {:.2} s ({:.0} MiB/s), again (hashes cached) {:.2} s, line latency p99 {:.1} ms, peak RSS sender {} MiB receiver {} MiB",
            first.seconds,
            mib / first.seconds,
            again.seconds,
            percentile(&first.latencies_ms, 99.0),
            first.rss_sender_kib / 1024,
            first.rss_receiver_kib / 1024
        );
        rss = rss.max(first.rss_sender_kib).max(first.rss_receiver_kib);
        latencies.extend(first.latencies_ms);
        latencies.extend(again.latencies_ms);
        chat_secs.push(first.seconds);
        again_secs.push(again.seconds);
        if let Ok(sshd) = &sshd {
            let target = scratch.join("scp-tree");
            let _ = std::fs::remove_dir_all(&target);
            let scp = sshd.scp(&tree, &target, None);
            let _ = std::fs::remove_dir_all(&target);
            let tar = sshd.tar_over_ssh(&tree, &target);
            let _ = std::fs::remove_dir_all(&target);
            println!(
                "round {round}: scp -r {scp:.2} s, tar | ssh {tar:.2} s; chat {:.2}x scp -r, {:.2}x tar | ssh",
                scp / first.seconds,
                tar / first.seconds
            );
            scp_secs.push(scp);
            tar_secs.push(tar);
        }
    }
    let (chat, again) = (median(&chat_secs), median(&again_secs));
    println!(
        "\nmedians over {rounds} rounds, {} files, {mib:.0} MiB:",
        files + LARGE_FILES
    );
    println!("  chat            {chat:.2} s ({:.0} MiB/s)", mib / chat);
    println!("  chat, again     {again:.2} s ({:.0} MiB/s)", mib / again);
    if !scp_secs.is_empty() {
        let (scp, tar) = (median(&scp_secs), median(&tar_secs));
        println!("  scp -r          {scp:.2} s ({:.0} MiB/s)", mib / scp);
        println!("  tar | ssh       {tar:.2} s ({:.0} MiB/s)", mib / tar);
        println!("  ratio chat/scp -r: {:.2}x (target 2x)", scp / chat);
        println!("  ratio chat/tar | ssh: {:.2}x", tar / chat);
    }
    println!(
        "  chat line latency during the folder: median {:.1} ms, p99 {:.1} ms (target 50 ms), {} lines",
        median(&latencies),
        percentile(&latencies, 99.0),
        latencies.len()
    );
    println!("  chat peak RSS: {} MiB (target 32 MiB)", rss / 1024);
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

/// Writes `small` files of 1-16 KiB in folders of [`FILES_PER_FOLDER`], two levels
/// deep, and [`LARGE_FILES`] of 30 MiB, all of pseudo-random bytes (kept if
/// present); returns the total size.
fn make_tree(root: &Path, small: u64) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let write = |path: &Path, len: u64, next: &mut dyn FnMut() -> u64| {
        let mut bytes = Vec::with_capacity(len as usize + 8);
        while (bytes.len() as u64) < len {
            bytes.extend_from_slice(&next().to_le_bytes());
        }
        bytes.truncate(len as usize);
        if std::fs::metadata(path).is_ok_and(|m| m.len() == len) {
            return;
        }
        std::fs::File::create(path)
            .and_then(|mut file| file.write_all(&bytes))
            .unwrap();
    };
    let mut total = 0;
    for i in 0..small {
        let folder = root.join(format!(
            "module-{:02}/part-{:02}",
            i / (FILES_PER_FOLDER * 10),
            (i / FILES_PER_FOLDER) % 10
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let len = 1024 + next() % (15 * 1024);
        write(&folder.join(format!("file-{i:05}.rs")), len, &mut next);
        total += len;
    }
    let assets = root.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    for i in 0..LARGE_FILES {
        write(
            &assets.join(format!("asset-{i}.bin")),
            LARGE_FILE_LEN,
            &mut next,
        );
        total += LARGE_FILE_LEN;
    }
    total
}
