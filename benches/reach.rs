//! `make bench` (`cargo bench --bench reach`): what reaching a peer over iroh costs,
//! against TCP on the same topology. Each row sends one file from alice to bob, the
//! rows alternating over several rounds:
//! - TCP on loopback, one connection (`--accept` / `--connect … --no-listen`);
//! - iroh on loopback: the path iroh picks, direct after starting on the relay;
//! - iroh on loopback through the relay only: both peers and the relay in a network
//!   namespace that drops every UDP datagram, so QUIC rides the relay's TCP;
//! - TCP between two homes behind home routers (network namespaces), bob's router
//!   forwarding his port, alice dialing it with `--connect … --no-listen`: the same
//!   routers and NAT as the next row, so the fair comparison for it;
//! - iroh between the same two homes (direct after a hole punched), and behind a
//!   symmetric NAT (relayed all the way).
//!
//! For iroh, alice and bob pair by invite code through a real relay
//! (`examples/relay.rs`, which `make bench` builds) in every run, and the bench
//! prints the time from starting `chat --join` to `Paired`, to the first chat line
//! (alice types it as soon as she is connected; bob shows it) and to the direct
//! path. It also prints the CPU time both peers spent on the transfer. The
//! namespace rows need root, iproute2 and nftables, and are skipped with the
//! reason otherwise.
//!
//! Settings (environment): `BENCH_REACH_MIB` (the file, default 256), `BENCH_ROUNDS`
//! (default 3), `BENCH_DIR` (scratch folder, as in the transfer bench),
//! `BENCH_REACH_ROWS` (only the rows whose label holds this text), `BENCH_CHAT`
//! (another build of `chat` to measure).

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
use support::no_udp::NoUdpLoopback;
use support::{CHAT, Proc, cpu_seconds, env_or, make_random_file, median, scratch_dir};
use two_homes::{Router, TwoHomes};

/// How long the relay has to start (`relay.rs` waits this long).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Bob's TCP port in the two homes, which his router forwards.
const TCP_PORT: u16 = 7001;

/// What alice types once connected, timed to bob's screen.
const FIRST_LINE: &str = "first line after pairing";

/// Where the two peers run.
enum Place<'a> {
    Loopback,
    NoUdp(&'a NoUdpLoopback),
    Homes(&'a TwoHomes),
}

impl Place<'_> {
    fn wrapper(&self, side: usize) -> Vec<&str> {
        match self {
            Place::Loopback => Vec::new(),
            Place::NoUdp(net) => net.prefix().to_vec(),
            Place::Homes(net) => net.in_home(side).to_vec(),
        }
    }
}

/// One row: a transport, and where its peers run.
enum Row<'a> {
    Tcp(Place<'a>),
    Iroh(Place<'a>, &'a Relay),
}

/// One transfer: its seconds and the CPU seconds of both peers meanwhile, and for
/// iroh when pairing, the first line and the direct path came.
struct Run {
    seconds: f64,
    cpu: f64,
    paired: Option<f64>,
    first_line: Option<f64>,
    direct: Option<f64>,
}

fn main() {
    let mib: u64 = env_or("BENCH_REACH_MIB", 256);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let only = std::env::var("BENCH_REACH_ROWS").unwrap_or_default();
    let scratch = scratch_dir();
    println!(
        "reach: a {mib} MiB file, {rounds} rounds, receiver in {}",
        scratch.display()
    );
    let file = scratch.join("reach.bin");
    make_random_file(&file, mib << 20);

    let loopback_relay = Relay::start();
    let no_udp = match NoUdpLoopback::create("nu") {
        Ok(net) => {
            let relay = Relay::start_with(&net.prefix(), relay::fresh_loopback());
            Some((net, relay))
        }
        Err(reason) => {
            println!("iroh, loopback, relay only: skipped ({reason})");
            None
        }
    };
    let homes = [
        ("two homes, home routers", [Router::Home, Router::Home]),
        (
            "two homes, one symmetric NAT",
            [Router::Home, Router::Symmetric],
        ),
    ];
    let mut nets = Vec::new();
    for (label, routers) in homes {
        match TwoHomes::create(&format!("b{}", nets.len()), routers) {
            Ok(net) => {
                let relay = net.start_relay();
                nets.push((label, net, relay));
            }
            Err(reason) => println!("{label}: skipped ({reason})"),
        }
    }

    let mut rows: Vec<(String, Row)> = vec![
        (
            "TCP, loopback, one connection".into(),
            Row::Tcp(Place::Loopback),
        ),
        (
            "iroh, loopback (direct)".into(),
            Row::Iroh(Place::Loopback, &loopback_relay),
        ),
    ];
    if let Some((net, relay)) = &no_udp {
        rows.push((
            "iroh, loopback, relay only (UDP dropped)".into(),
            Row::Iroh(Place::NoUdp(net), relay),
        ));
    }
    for (label, net, relay) in &nets {
        if label.contains("home routers") {
            match net.forward_tcp_port(1, TCP_PORT) {
                Ok(()) => rows.push((
                    format!("TCP, {label}, bob's router forwarding his port"),
                    Row::Tcp(Place::Homes(net)),
                )),
                Err(reason) => println!("TCP, {label}: skipped ({reason})"),
            }
        }
        let path = match label.contains("symmetric") {
            true => "relayed",
            false => "direct",
        };
        rows.push((
            format!("iroh, {label} ({path})"),
            Row::Iroh(Place::Homes(net), relay),
        ));
    }
    rows.retain(|(label, _)| label.contains(&only));

    let mut results: Vec<Vec<Run>> = rows.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        println!("round {round}");
        for ((label, row), runs) in rows.iter().zip(&mut results) {
            let run = match row {
                Row::Tcp(place) => tcp_run(&scratch, &file, place),
                Row::Iroh(place, relay) => iroh_run(&scratch, &file, place, relay),
            };
            println!(
                "  {label}: {:.0} MiB/s, {:.2} CPU s per GiB",
                mib as f64 / run.seconds,
                run.cpu * 1024.0 / mib as f64
            );
            runs.push(run);
        }
    }
    print_table(mib, &rows, &results);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn print_table(mib: u64, rows: &[(String, Row)], results: &[Vec<Run>]) {
    println!();
    println!(
        "| path | MiB/s (median) | runs | CPU s per GiB, both peers | `--join` to `Paired` | to the first line | to the direct path |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((label, _), runs) in rows.iter().zip(results) {
        let rates: Vec<f64> = runs.iter().map(|run| mib as f64 / run.seconds).collect();
        let cpu: Vec<f64> = runs
            .iter()
            .map(|run| run.cpu * 1024.0 / mib as f64)
            .collect();
        let seconds = |pick: fn(&Run) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(pick).collect();
            match values.is_empty() {
                true => "—".to_owned(),
                false => format!("{:.2} s", median(&values)),
            }
        };
        let all: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
        println!(
            "| {label} | {:.0} | {} | {:.1} | {} | {} | {} |",
            median(&rates),
            all.join(", "),
            median(&cpu),
            seconds(|run| run.paired),
            seconds(|run| run.first_line),
            seconds(|run| run.direct)
        );
    }
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

/// Sends `file` from alice to bob: the seconds from the command to bob's `Saved`,
/// and the CPU seconds both spent meanwhile.
fn send(alice: &mut Proc, bob: &mut Proc, file: &Path) -> (f64, f64) {
    let cpu = |alice: &Proc, bob: &Proc| cpu_seconds(&alice.child) + cpu_seconds(&bob.child);
    let (started, cpu_before) = (Instant::now(), cpu(alice, bob));
    alice.send(&format!("transfer {}", file.display()));
    bob.wait_line(|line| line.contains("(verified").then_some(()));
    (
        started.elapsed().as_secs_f64(),
        cpu(alice, bob) - cpu_before,
    )
}

fn tcp_run(scratch: &Path, file: &Path, place: &Place<'_>) -> Run {
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
    let listen = match place {
        Place::Homes(_) => TCP_PORT.to_string(),
        _ => "127.0.0.1:0".to_owned(),
    };
    let mut bob = spawn(
        &place.wrapper(1),
        &args(
            &bob_home,
            "bob",
            &[
                "--accept",
                "--listen",
                &listen,
                "--peer-fingerprint",
                &fingerprints[0],
            ],
        ),
    );
    let port: u16 = bob.wait_line(|line| line.strip_prefix("Listening on port ")?.parse().ok());
    let target = match place {
        Place::Homes(net) => format!("{}:{port}", net.public_address(1)),
        _ => format!("127.0.0.1:{port}"),
    };
    let mut alice = spawn(
        &place.wrapper(0),
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
    let (seconds, cpu) = send(&mut alice, &mut bob, file);
    alice.finish();
    bob.finish();
    Run {
        seconds,
        cpu,
        paired: None,
        first_line: None,
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
    alice.wait_line(|line| line.starts_with("Connected to bob").then_some(()));
    alice.send(FIRST_LINE);
    let (mut first_line, mut direct) = (None, None);
    // Until the first line, and then a direct path if one comes within a few seconds.
    let mut deadline = Instant::now() + support::WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = bob.lines.recv_timeout(left) else {
            break;
        };
        let at = joined.elapsed().as_secs_f64();
        if line.starts_with("Direct path to alice")
            || line.starts_with("Connected to alice") && line.contains(" directly at ")
        {
            direct = Some(at);
        }
        if line.ends_with(&format!("alice: {FIRST_LINE}")) {
            first_line = Some(at);
            deadline = Instant::now() + Duration::from_secs(5);
        }
        if first_line.is_some() && direct.is_some() {
            break;
        }
    }
    assert!(first_line.is_some(), "bob never showed alice's first line");
    let (seconds, cpu) = send(&mut alice, &mut bob, file);
    alice.finish();
    bob.finish();
    Run {
        seconds,
        cpu,
        paired: Some(paired),
        first_line,
        direct,
    }
}
