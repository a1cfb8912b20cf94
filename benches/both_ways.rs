//! `make bench` (`cargo bench --bench both_ways`): two transfers at once, one each
//! way, while both peers chat, on loopback: first over one connection for both
//! directions (`--accept` and `--connect ... --no-listen`), then over the usual two
//! connections, alternating over several rounds. It reports how long a chat line
//! takes to reach the other screen while file data fills the connection (target:
//! under 100 ms), and the throughput of the two transfers together.
//!
//! Settings (environment): `BENCH_BOTH_MIB` (each file, default 256),
//! `BENCH_ROUNDS` (default 3), `BENCH_DIR` (scratch folder, as in the transfer bench).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    CHAT, Proc, WAIT, env_or, make_identities, make_random_file, median, now_micros, run,
    scratch_dir,
};

const PING_EVERY: Duration = Duration::from_millis(20);
const LATENCY_TARGET_MS: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    OneConnection,
    TwoConnections,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::OneConnection => "one connection",
            Mode::TwoConnections => "two connections",
        }
    }
}

struct Round {
    seconds: f64,
    latencies_ms: Vec<f64>,
}

fn main() {
    let mib: u64 = env_or("BENCH_BOTH_MIB", 256);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    println!(
        "both ways: a {mib} MiB file each way at once, chat lines every {} ms both ways, {rounds} rounds, scratch {}",
        PING_EVERY.as_millis(),
        scratch.display()
    );
    make_identities(&scratch);
    for name in ["alice", "bob"] {
        make_random_file(&scratch.join(format!("from-{name}.bin")), mib << 20);
    }
    let modes = [Mode::OneConnection, Mode::TwoConnections];
    let mut results: Vec<(Mode, Round)> = Vec::new();
    for round in 1..=rounds {
        for mode in modes {
            // Every round hashes both files, as a first send does.
            let _ = std::fs::remove_file(scratch.join("certs").join("hash_cache"));
            let measured = both_ways_round(&scratch, mode);
            println!(
                "round {round}: {:<15} {:.2} s ({:.0} MiB/s both ways together), line latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} lines)",
                mode.label(),
                measured.seconds,
                (2 * mib) as f64 / measured.seconds,
                median(&measured.latencies_ms),
                percentile(&measured.latencies_ms, 0.99),
                max(&measured.latencies_ms),
                measured.latencies_ms.len()
            );
            results.push((mode, measured));
        }
    }
    println!("\nmedians over {rounds} rounds, {mib} MiB each way:");
    for mode in modes {
        let runs: Vec<&Round> = results
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, r)| r)
            .collect();
        let seconds = median(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>());
        let latencies: Vec<f64> = runs.iter().flat_map(|r| r.latencies_ms.clone()).collect();
        let p99 = percentile(&latencies, 0.99);
        println!(
            "  {:<15} {:>6.0} MiB/s together ({seconds:.2} s); line latency p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms over {} lines: {}",
            mode.label(),
            (2 * mib) as f64 / seconds,
            median(&latencies),
            max(&latencies),
            latencies.len(),
            if p99 < LATENCY_TARGET_MS {
                format!("p99 under the {LATENCY_TARGET_MS:.0} ms target")
            } else {
                format!("p99 OVER the {LATENCY_TARGET_MS:.0} ms target")
            }
        );
    }
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

/// Starts the pair in `mode`, has each send its file to the other, and pings both
/// ways every [`PING_EVERY`] until both files are saved and verified.
fn both_ways_round(scratch: &Path, mode: Mode) -> Round {
    let [mut alice, mut bob] = start_pair(scratch, mode);
    let started = Instant::now();
    alice.send(&format!(
        "transfer {}",
        scratch.join("from-alice.bin").display()
    ));
    bob.send(&format!(
        "transfer {}",
        scratch.join("from-bob.bin").display()
    ));
    let mut latencies_ms = Vec::new();
    let mut saved = [false, false];
    let mut last_ping = started - PING_EVERY;
    while saved != [true, true] {
        assert!(started.elapsed() < WAIT, "the transfers did not finish");
        if last_ping.elapsed() >= PING_EVERY {
            alice.send(&format!("ping {}", now_micros()));
            bob.send(&format!("ping {}", now_micros()));
            last_ping = Instant::now();
        }
        let mut idle = true;
        for (at, peer, from) in [(0, &alice, "bob"), (1, &bob, "alice")] {
            while let Ok(line) = peer.lines.try_recv() {
                idle = false;
                if let Some(sent) = line.strip_prefix(&format!("{from}: ping ")) {
                    let sent: u128 = sent.parse().expect("a timestamp");
                    latencies_ms.push((now_micros() - sent) as f64 / 1000.0);
                } else if line.starts_with("Saved ") && line.contains("(verified, sha256 ") {
                    saved[at] = true;
                }
                assert!(!line.contains("failed"), "a transfer failed: {line}");
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    alice.send("/quit");
    alice.finish();
    bob.finish();
    Round {
        seconds,
        latencies_ms,
    }
}

/// Alice listens; bob dials her, and in two-connection mode she dials him back.
fn start_pair(scratch: &Path, mode: Mode) -> [Proc; 2] {
    let certs = scratch.join("certs");
    let fingerprint = |name: &str| {
        run(Command::new(&*CHAT)
            .arg("fingerprint")
            .arg(certs.join(format!("{name}.crt"))))
        .trim()
        .to_owned()
    };
    let command = |name: &str, peer: &str| {
        let downloads = scratch.join(format!("downloads-{name}"));
        let _ = std::fs::remove_dir_all(&downloads);
        let mut command = Command::new(&*CHAT);
        command
            .args(["--name", name, "--no-progress", "--certs-dir"])
            .arg(&certs)
            .args(["--peer-fingerprint", &fingerprint(peer), "--download-dir"])
            .arg(downloads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let listening = |line: &str| line.strip_prefix("Listening on port ").map(str::to_owned);
    let mut alice_command = command("alice", "bob");
    alice_command.args(["--listen", "127.0.0.1:0"]);
    if mode == Mode::OneConnection {
        alice_command.arg("--accept");
    }
    let mut alice = Proc::spawn(&mut alice_command);
    let alice_port = alice.wait_line(listening);
    let mut bob_command = command("bob", "alice");
    bob_command.args(["--connect", &alice_port]);
    match mode {
        Mode::OneConnection => bob_command.arg("--no-listen"),
        Mode::TwoConnections => bob_command.args(["--listen", "127.0.0.1:0"]),
    };
    let mut bob = Proc::spawn(&mut bob_command);
    if mode == Mode::TwoConnections {
        let bob_port = bob.wait_line(listening);
        alice.send(&bob_port);
    }
    alice.wait_line(|line| line.contains("bob connected from").then_some(()));
    bob.wait_line(|line| line.contains("Connected to alice").then_some(()));
    [alice, bob]
}

fn percentile(values: &[f64], fraction: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn max(values: &[f64]) -> f64 {
    values.iter().cloned().fold(0.0, f64::max)
}
