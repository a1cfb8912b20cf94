//! `make bench` (`cargo bench --bench reach`): what reaching a peer over iroh costs.
//! For each row, alice and bob pair by invite code (through a real relay,
//! `examples/relay.rs`, which `make bench` builds), then alice sends a file to bob,
//! alternating the rows over several rounds:
//! - TCP on loopback, one connection (`--accept` / `--connect … --no-listen`), for
//!   comparison;
//! - iroh on loopback (the path iroh picks: direct, after starting on the relay);
//! - iroh between two homes behind home routers (network namespaces; direct after
//!   a hole punched), and behind a symmetric NAT (relayed all the way).
//!
//! It prints each row's throughput, and for iroh the time from `--join` to
//! `Paired` and to the direct path. The namespace rows need root, iproute2 and
//! nftables, and are skipped with the reason otherwise.
//!
//! Settings (environment): `BENCH_REACH_MIB` (the file, default 256), `BENCH_ROUNDS`
//! (default 3), `BENCH_DIR` (scratch folder, as in the transfer bench).

mod support;

#[path = "../tests/it/common/relay.rs"]
#[allow(dead_code)]
mod relay;
#[path = "../tests/it/common/two_homes.rs"]
#[allow(dead_code)]
mod two_homes;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay::Relay;
use support::{CHAT, Proc, env_or, make_random_file, median, scratch_dir};
use two_homes::{RELAY_IP, Router, TwoHomes};

/// How long the relay has to start (`relay.rs` waits this long).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the two peers run.
enum Place<'a> {
    Loopback,
    Homes(&'a TwoHomes),
}

impl Place<'_> {
    fn wrapper(&self, side: usize) -> Vec<&str> {
        match self {
            Place::Loopback => Vec::new(),
            Place::Homes(net) => net.in_home(side).to_vec(),
        }
    }
}

/// One transfer: its seconds, and for iroh when pairing and the direct path came.
struct Run {
    seconds: f64,
    paired: Option<f64>,
    direct: Option<f64>,
}

fn main() {
    let mib: u64 = env_or("BENCH_REACH_MIB", 256);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    println!(
        "reach: a {mib} MiB file after pairing by code, {rounds} rounds, receiver in {}",
        scratch.display()
    );
    let file = scratch.join("reach.bin");
    make_random_file(&file, mib << 20);

    let loopback_relay = Relay::start();
    let homes = [
        (
            "iroh, two homes, home routers",
            [Router::Home, Router::Home],
        ),
        (
            "iroh, two homes, one symmetric NAT",
            [Router::Home, Router::Symmetric],
        ),
    ];
    let mut nets = Vec::new();
    for (label, routers) in homes {
        match TwoHomes::create(&format!("b{}", nets.len()), routers) {
            Ok(net) => {
                let relay = Relay::start_with(&net.on_internet(), RELAY_IP.parse().unwrap());
                nets.push((label, net, relay));
            }
            Err(reason) => println!("{label}: skipped ({reason})"),
        }
    }

    let mut results: Vec<(String, Vec<Run>)> = Vec::new();
    let mut record = |label: &str, run: Run| match results.iter_mut().find(|(l, _)| l == label) {
        Some((_, runs)) => runs.push(run),
        None => results.push((label.to_owned(), vec![run])),
    };
    for round in 1..=rounds {
        println!("round {round}");
        record("TCP, loopback, one connection", tcp_run(&scratch, &file));
        record(
            "iroh, loopback",
            iroh_run(&scratch, &file, &Place::Loopback, &loopback_relay),
        );
        for (label, net, relay) in &nets {
            record(label, iroh_run(&scratch, &file, &Place::Homes(net), relay));
        }
    }

    println!();
    println!("| path | MiB/s (median) | runs | join to Paired | join to direct path |");
    println!("|---|---|---|---|---|");
    for (label, runs) in &results {
        let rates: Vec<f64> = runs.iter().map(|run| mib as f64 / run.seconds).collect();
        let seconds = |pick: fn(&Run) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(pick).collect();
            match values.is_empty() {
                true => "—".to_owned(),
                false => format!("{:.2} s", median(&values)),
            }
        };
        let all: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
        println!(
            "| {label} | {:.0} | {} | {} | {} |",
            median(&rates),
            all.join(", "),
            seconds(|run| run.paired),
            seconds(|run| run.direct)
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The arguments for `name` in `home`, with `extra`.
fn args(home: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = ["--name", name, "--no-progress", "--certs-dir"]
        .map(String::from)
        .into();
    all.push(home.join("certs").display().to_string());
    all.extend([
        "--download-dir".into(),
        home.join("in").display().to_string(),
    ]);
    all.extend(extra.iter().map(|arg| arg.to_string()));
    all
}

fn spawn(wrapper: &[&str], args: &[String]) -> Proc {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(&*CHAT);
            command
        }
        None => Command::new(&*CHAT),
    };
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Proc::spawn(&mut command)
}

/// A fresh folder per side and round, so every pairing is a first one.
fn fresh_homes(scratch: &Path) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for home in [&alice, &bob] {
        std::fs::create_dir_all(home.join("in")).unwrap();
    }
    (dir, alice, bob)
}

/// Sends `file` from alice to bob; the seconds from the command to bob's `Saved`.
fn send(alice: &mut Proc, bob: &mut Proc, file: &Path) -> f64 {
    let started = Instant::now();
    alice.send(&format!("transfer {}", file.display()));
    bob.wait_line(|line| line.contains("(verified").then_some(()));
    started.elapsed().as_secs_f64()
}

fn tcp_run(scratch: &Path, file: &Path) -> Run {
    let (_dir, alice_home, bob_home) = fresh_homes(scratch);
    let mut fingerprints = Vec::new();
    for (home, name) in [(&alice_home, "alice"), (&bob_home, "bob")] {
        let output = Command::new(&*CHAT)
            .args(["certs", "--name", name, "--dir"])
            .arg(home.join("certs"))
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        fingerprints.push(text.trim().trim_start_matches("Fingerprint: ").to_owned());
    }
    let mut bob = spawn(
        &[],
        &args(
            &bob_home,
            "bob",
            &[
                "--accept",
                "--listen",
                "127.0.0.1:0",
                "--peer-fingerprint",
                &fingerprints[0],
            ],
        ),
    );
    let port: u16 = bob.wait_line(|line| line.strip_prefix("Listening on port ")?.parse().ok());
    let target = format!("127.0.0.1:{port}");
    let mut alice = spawn(
        &[],
        &args(
            &alice_home,
            "alice",
            &[
                "--connect",
                &target,
                "--no-listen",
                "--peer-fingerprint",
                &fingerprints[1],
            ],
        ),
    );
    alice.wait_line(|line| line.starts_with("Connected to bob").then_some(()));
    let seconds = send(&mut alice, &mut bob, file);
    alice.finish();
    bob.finish();
    Run {
        seconds,
        paired: None,
        direct: None,
    }
}

fn iroh_run(scratch: &Path, file: &Path, place: &Place<'_>, relay: &Relay) -> Run {
    let (_dir, alice_home, bob_home) = fresh_homes(scratch);
    let relay_args = [
        "--relay",
        relay.url.as_str(),
        "--relay-ca",
        relay.ca_file.to_str().unwrap(),
    ];
    let with = |extra: &'static str| {
        let mut all = relay_args.to_vec();
        all.push(extra);
        all
    };
    let mut alice = spawn(
        &place.wrapper(0),
        &args(&alice_home, "alice", &with("--invite")),
    );
    let code: String =
        alice.wait_line(|line| line.strip_prefix("Invite code: ").map(str::to_owned));
    let joined = Instant::now();
    let mut bob = spawn(&place.wrapper(1), &args(&bob_home, "bob", &with("--join")));
    bob.send(&code);
    bob.wait_line(|line| line.starts_with("Paired with alice").then_some(()));
    let paired = joined.elapsed().as_secs_f64();
    let connected = bob.wait_line(|line| {
        line.starts_with("Connected to alice")
            .then(|| line.to_owned())
    });
    // A direct path, if one comes within a few seconds of connecting.
    let direct = if connected.contains(" directly at ") {
        Some(joined.elapsed().as_secs_f64())
    } else {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match bob.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("Direct path to alice") => {
                    found = Some(joined.elapsed().as_secs_f64());
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        found
    };
    let seconds = send(&mut alice, &mut bob, file);
    alice.finish();
    bob.finish();
    Run {
        seconds,
        paired: Some(paired),
        direct,
    }
}
