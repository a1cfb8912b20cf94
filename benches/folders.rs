//! `make bench` (`cargo bench --bench folders`): source-like trees of many small
//! files and a few large ones, sent by `chat` (`transfer DIR`, first with an empty
//! hash cache, then again with the hashes cached) against `scp -r`, `tar | ssh` and
//! `rsync -a` over ssh on loopback, alternating the contenders over several rounds.
//! Two trees: 2,000 files of 1-64 KiB in 20 folders and four of 5 MiB (2,004 files,
//! 85 MB), then `BENCH_FILES` files of 1-16 KiB in folders of 100, two levels deep,
//! and four of 30 MiB (10,004 files, 203 MiB).
//!
//! The receivers write to the repository's own disk, then to tmpfs, each row in the
//! same rounds; every run starts with the disk settled (`sync`). `chat` reports a
//! folder saved only once it is durable; the contenders sync nothing, so each row also
//! says what a `sync -f` right after them took. What a run received on the disk is
//! moved aside, not deleted, until the end: ext4 without a journal looks at every
//! recently deleted inode each time it makes a file, which would have each run pay for
//! the deletions of the one before. Reports ratios per round and medians, chat-line
//! latency during the transfer (p99), and peak memory.
//!
//! Settings (environment): `BENCH_FILES` (small files of the second tree, default
//! 10,000), `BENCH_ROUNDS` (default 3), `BENCH_DIR` (where the disk row writes, and
//! the sender's files; default a folder under `target/`, and tmpfs for the sender),
//! `BENCH_CHAT` (another build of `chat` to measure).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::pair::chat_round_to;
use support::ssh::Sshd;
use support::{
    Place, env_or, make_identities, median, percentile, receiving_places, scratch_dir,
    seconds_to_sync, settle_disk,
};

/// Small files go into folders of this many.
const FILES_PER_FOLDER: u64 = 100;

/// A tree to send: `small` files of 1 KiB to `small_max` bytes in folders of
/// [`FILES_PER_FOLDER`] (two levels deep if `nested`), and `large` files of
/// `large_len` bytes, all of pseudo-random bytes.
struct Shape {
    small: u64,
    small_max: u64,
    nested: bool,
    large: u64,
    large_len: u64,
}

/// What one receiving place measured over the rounds.
#[derive(Default)]
struct Row {
    chat: Vec<f64>,
    again: Vec<f64>,
    /// Per contender: its times, and what a `sync -f` right after it took.
    contenders: Vec<(&'static str, Vec<f64>, Vec<f64>)>,
    latencies: Vec<f64>,
    rss_kib: u64,
}

/// What every tree's runs share.
struct Bench {
    scratch: std::path::PathBuf,
    places: Vec<Place>,
    sshd: Result<Sshd, String>,
    rsync: bool,
    rounds: usize,
}

fn main() {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    let places = receiving_places();
    println!("bench: {rounds} rounds, sent from {}", scratch.display());
    for place in &places {
        println!("  received on {}", place.label);
    }
    make_identities(&scratch);
    let sshd = Sshd::start(&scratch);
    if let Err(reason) = &sshd {
        println!("SKIPPED scp -r, tar | ssh and rsync -a contenders: {reason}");
    }
    let rsync = Command::new("rsync").arg("--version").output().is_ok();
    if sshd.is_ok() && !rsync {
        println!("SKIPPED rsync -a contender: the rsync command is not installed");
    }
    let bench = Bench {
        scratch,
        places,
        sshd,
        rsync,
        rounds,
    };
    let two_thousand = Shape {
        small: 2_000,
        small_max: 64 << 10,
        nested: false,
        large: 4,
        large_len: 5 << 20,
    };
    let ten_thousand = Shape {
        small: env_or("BENCH_FILES", 10_000),
        small_max: 16 << 10,
        nested: true,
        large: 4,
        large_len: 30 << 20,
    };
    for (name, shape) in [("tree-2k", two_thousand), ("tree-10k", ten_thousand)] {
        bench_tree(&bench, name, &shape);
    }
    for place in &bench.places {
        place.clean_up();
    }
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&bench.scratch);
    }
}

/// Sends the tree `shape` describes over every round, to every place, alternating
/// `chat` with the contenders, and reports each place's medians.
fn bench_tree(bench: &Bench, name: &str, shape: &Shape) {
    let Bench {
        scratch,
        places,
        sshd,
        rsync,
        rounds,
    } = bench;
    let tree = scratch.join(name);
    let bytes = make_tree(&tree, shape);
    let files = shape.small + shape.large;
    let mib = bytes as f64 / f64::from(1 << 20);
    println!("\n{name}: {files} files, {mib:.0} MiB");
    // A file changed within the last 2 s is hashed but not cached.
    std::thread::sleep(Duration::from_millis(2100));
    let hash_cache = scratch.join("certs/hash_cache");
    let contenders = (sshd.as_ref().ok()).map_or_else(Vec::new, |sshd| contenders(sshd, *rsync));
    let mut rows: Vec<Row> = places
        .iter()
        .map(|_| Row {
            contenders: contenders
                .iter()
                .map(|(name, _)| (*name, vec![], vec![]))
                .collect(),
            ..Row::default()
        })
        .collect();
    for round in 1..=*rounds {
        for (place, row) in places.iter().zip(&mut rows) {
            let downloads = place.dir.join("chat-downloads");
            let _ = std::fs::remove_file(&hash_cache);
            let first = chat_round_to(scratch, &tree, &downloads);
            place.discard(&downloads);
            let again = chat_round_to(scratch, &tree, &downloads);
            place.discard(&downloads);
            print!(
                "round {round}, {}: chat {:.2} s ({:.0} MiB/s), again {:.2} s, line latency p99 {:.1} ms, peak RSS sender {} MiB receiver {} MiB",
                place.kind,
                first.seconds,
                mib / first.seconds,
                again.seconds,
                percentile(&first.latencies_ms, 99.0),
                first.rss_sender_kib / 1024,
                first.rss_receiver_kib / 1024
            );
            row.rss_kib = row
                .rss_kib
                .max(first.rss_sender_kib)
                .max(first.rss_receiver_kib);
            row.latencies.extend(first.latencies_ms);
            row.latencies.extend(again.latencies_ms);
            row.chat.push(first.seconds);
            row.again.push(again.seconds);
            for ((name, copy), (_, times, syncs)) in contenders.iter().zip(&mut row.contenders) {
                let target = place.dir.join("contender");
                settle_disk();
                let seconds = copy(&tree, &target);
                let sync = seconds_to_sync(&place.dir);
                place.discard(&target);
                print!(
                    "; {name} {seconds:.2} s (then sync -f {sync:.2} s), chat {:.2}x",
                    seconds / first.seconds
                );
                times.push(seconds);
                syncs.push(sync);
            }
            println!();
        }
    }
    println!(
        "\n{name}: medians over {rounds} rounds, {files} files, {mib:.0} MiB; chat's Saved line \
         comes once the folder is durable, the contenders sync nothing:"
    );
    for (place, row) in places.iter().zip(&rows) {
        report(place, row, mib);
    }
}

type Copy<'a> = Box<dyn Fn(&Path, &Path) -> f64 + 'a>;

/// The contenders, each a copy of a folder to a target it creates, in seconds.
fn contenders(sshd: &Sshd, rsync: bool) -> Vec<(&'static str, Copy<'_>)> {
    let mut contenders: Vec<(&'static str, Copy<'_>)> = vec![
        ("scp -r", Box::new(|from, to| sshd.scp(from, to, None))),
        (
            "tar | ssh",
            Box::new(|from, to| sshd.tar_over_ssh(from, to)),
        ),
    ];
    if rsync {
        contenders.push(("rsync -a", Box::new(|from, to| sshd.rsync(from, to))));
    }
    contenders
}

fn report(place: &Place, row: &Row, mib: f64) {
    let (chat, again) = (median(&row.chat), median(&row.again));
    println!("  received on {}:", place.label);
    println!(
        "    chat, first send  {chat:.2} s ({:.0} MiB/s), durable",
        mib / chat
    );
    println!(
        "    chat, again       {again:.2} s ({:.0} MiB/s), durable",
        mib / again
    );
    for (name, times, syncs) in &row.contenders {
        let (seconds, sync) = (median(times), median(syncs));
        println!(
            "    {name:<17} {seconds:.2} s ({:.0} MiB/s), not synced (sync -f after it: {sync:.2} s); chat {:.2}x{}",
            mib / seconds,
            seconds / chat,
            match *name {
                "scp -r" => " (target 2x)",
                "tar | ssh" => " (target 1x)",
                _ => "",
            }
        );
    }
    println!(
        "    chat line latency during the folder: median {:.1} ms, p99 {:.1} ms (target 50 ms), {} lines; peak RSS {} MiB (target 32 MiB)",
        median(&row.latencies),
        percentile(&row.latencies, 99.0),
        row.latencies.len(),
        row.rss_kib / 1024
    );
}

/// Writes the tree `shape` describes at `root` (files already there at their size
/// are kept), and returns its total size.
fn make_tree(root: &Path, shape: &Shape) -> u64 {
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
    for i in 0..shape.small {
        let folder = if shape.nested {
            format!(
                "module-{:02}/part-{:02}",
                i / (FILES_PER_FOLDER * 10),
                (i / FILES_PER_FOLDER) % 10
            )
        } else {
            format!("module-{:02}", i / FILES_PER_FOLDER)
        };
        let folder = root.join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        let len = 1024 + next() % (shape.small_max - 1024);
        write(&folder.join(format!("file-{i:05}.rs")), len, &mut next);
        total += len;
    }
    let assets = root.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    for i in 0..shape.large {
        write(
            &assets.join(format!("asset-{i}.bin")),
            shape.large_len,
            &mut next,
        );
        total += shape.large_len;
    }
    total
}
