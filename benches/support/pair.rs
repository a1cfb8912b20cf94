//! Two `chat` peers connected on loopback, and one timed transfer between them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{CHAT, Proc, WAIT, cpu_seconds, now_micros, peak_rss_kib, run};

pub struct ChatRun {
    pub seconds: f64,
    pub rss_sender_kib: u64,
    pub rss_receiver_kib: u64,
    /// CPU seconds each process spent, from its start to the `Saved` line.
    pub cpu_sender: f64,
    pub cpu_receiver: f64,
    pub latencies_ms: Vec<f64>,
}

/// Where a peer runs: under a command prefix (such as `ip netns exec NS`), listening
/// on an address of `ip`, which the other peer dials.
pub struct Side {
    pub prefix: Vec<String>,
    pub ip: String,
}

/// Where alice and bob run.
pub struct Sides {
    pub alice: Side,
    pub bob: Side,
}

impl Sides {
    pub fn loopback() -> Sides {
        let here = || Side {
            prefix: vec![],
            ip: "127.0.0.1".to_owned(),
        };
        Sides {
            alice: here(),
            bob: here(),
        }
    }
}

/// Starts alice and bob on loopback, connected both ways, bob receiving into
/// `chat-downloads`. Also returns bob's listening port.
pub fn start_pair(scratch: &Path) -> (Proc, Proc, u16) {
    start_pair_on(scratch, &Sides::loopback())
}

/// Starts alice and bob where `sides` says, connected both ways.
pub fn start_pair_on(scratch: &Path, sides: &Sides) -> (Proc, Proc, u16) {
    start_pair_into(scratch, sides, &scratch.join("chat-downloads"))
}

/// Starts alice and bob where `sides` says, connected both ways, bob receiving into
/// `downloads` (emptied first).
pub fn start_pair_into(scratch: &Path, sides: &Sides, downloads: &Path) -> (Proc, Proc, u16) {
    let _ = std::fs::remove_dir_all(downloads);
    let certs = scratch.join("certs");
    let fp = |name: &str| {
        let out = run(Command::new(&*CHAT)
            .arg("fingerprint")
            .arg(certs.join(format!("{name}.crt"))));
        out.trim().to_owned()
    };
    let (alice_fp, bob_fp) = (fp("alice"), fp("bob"));
    let common = |name: &str, Side { prefix, ip }: &Side| {
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&*CHAT);
                command
            }
            None => Command::new(&*CHAT),
        };
        command
            .args(["--name", name, "--listen", &format!("{ip}:0")])
            .args(["--no-progress", "--certs-dir"])
            .arg(&certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut alice =
        Proc::spawn(common("alice", &sides.alice).args(["--peer-fingerprint", &bob_fp]));
    let alice_port = alice.wait_line(|l| l.strip_prefix("Listening on port ").map(str::to_owned));
    let mut bob = Proc::spawn(
        common("bob", &sides.bob)
            .args([
                "--connect",
                &format!("{}:{alice_port}", sides.alice.ip),
                "--peer-fingerprint",
                &alice_fp,
                "--download-dir",
            ])
            .arg(downloads),
    );
    let bob_port = bob.wait_line(|l| l.strip_prefix("Listening on port ").map(str::to_owned));
    alice.send(&format!("{}:{bob_port}", sides.bob.ip));
    alice.wait_line(|l| l.contains("Connected to bob").then_some(()));
    bob.wait_line(|l| l.contains("Connected to alice").then_some(()));

    let bob_port = bob_port.parse().expect("a port number");
    (alice, bob, bob_port)
}

/// One `chat` transfer: from the `transfer` line to bob's "Saved" line, with a
/// timestamped chat line sent every 20 ms meanwhile.
pub fn chat_round(scratch: &Path, file: &Path) -> ChatRun {
    chat_round_on(scratch, file, &Sides::loopback())
}

/// [`chat_round`] with bob receiving into `downloads`.
pub fn chat_round_to(scratch: &Path, file: &Path, downloads: &Path) -> ChatRun {
    chat_round_into(scratch, file, &Sides::loopback(), downloads)
}

/// [`chat_round`] with the peers where `sides` says.
pub fn chat_round_on(scratch: &Path, file: &Path, sides: &Sides) -> ChatRun {
    chat_round_into(scratch, file, sides, &scratch.join("chat-downloads"))
}

/// [`chat_round`] with the peers where `sides` says, bob receiving into `downloads`.
/// What an earlier round left there, or anywhere, is on the disk before it starts.
pub fn chat_round_into(scratch: &Path, file: &Path, sides: &Sides, downloads: &Path) -> ChatRun {
    let (mut alice, bob, _) = start_pair_into(scratch, sides, downloads);
    super::settle_disk();
    let start = Instant::now();
    alice.send(&format!("transfer {}", file.display()));
    let mut latencies = Vec::new();
    let mut rss = (0, 0);
    let mut last_ping = Instant::now() - Duration::from_secs(1);
    loop {
        if last_ping.elapsed() >= Duration::from_millis(20) {
            alice.send(&format!("ping {}", now_micros()));
            last_ping = Instant::now();
        }
        rss = (
            rss.0.max(peak_rss_kib(&alice.child)),
            rss.1.max(peak_rss_kib(&bob.child)),
        );
        let Ok(line) = bob.lines.recv_timeout(Duration::from_millis(5)) else {
            assert!(start.elapsed() < WAIT, "chat transfer did not finish");
            continue;
        };
        if let Some(sent) = line.strip_prefix("alice: ping ") {
            let sent: u128 = sent.parse().unwrap();
            latencies.push((now_micros() - sent) as f64 / 1000.0);
        }
        if line.starts_with("Saved ") && line.contains("(verified, ") {
            break;
        }
        assert!(!line.contains("failed"), "chat transfer failed: {line}");
    }
    let seconds = start.elapsed().as_secs_f64();
    rss = (
        rss.0.max(peak_rss_kib(&alice.child)),
        rss.1.max(peak_rss_kib(&bob.child)),
    );
    let (cpu_sender, cpu_receiver) = (cpu_seconds(&alice.child), cpu_seconds(&bob.child));
    alice.send("/quit");
    alice.finish();
    bob.finish();
    ChatRun {
        seconds,
        rss_sender_kib: rss.0,
        rss_receiver_kib: rss.1,
        cpu_sender,
        cpu_receiver,
        latencies_ms: latencies,
    }
}
