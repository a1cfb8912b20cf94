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

/// One `chat` transfer: from the `transfer` line to bob's "Saved" line, with a
/// timestamped chat line sent every 20 ms meanwhile.
/// Starts alice and bob on loopback, connected both ways, bob receiving into
/// `chat-downloads`. Also returns bob's listening port.
pub fn start_pair(scratch: &Path) -> (Proc, Proc, u16) {
    let downloads = scratch.join("chat-downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    let certs = scratch.join("certs");
    let fp = |name: &str| {
        let out = run(Command::new(CHAT)
            .arg("fingerprint")
            .arg(certs.join(format!("{name}.crt"))));
        out.trim().to_owned()
    };
    let (alice_fp, bob_fp) = (fp("alice"), fp("bob"));
    let common = |name: &str| {
        let mut command = Command::new(CHAT);
        command
            .args([
                "--name",
                name,
                "--listen",
                "127.0.0.1:0",
                "--no-progress",
                "--certs-dir",
            ])
            .arg(&certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut alice = Proc::spawn(common("alice").args(["--peer-fingerprint", &bob_fp]));
    let alice_port = alice.wait_line(|l| l.strip_prefix("Listening on port ").map(str::to_owned));
    let mut bob = Proc::spawn(
        common("bob")
            .args([
                "--connect",
                &alice_port,
                "--peer-fingerprint",
                &alice_fp,
                "--download-dir",
            ])
            .arg(&downloads),
    );
    let bob_port = bob.wait_line(|l| l.strip_prefix("Listening on port ").map(str::to_owned));
    alice.send(&bob_port);
    alice.wait_line(|l| l.contains("Connected to bob").then_some(()));
    bob.wait_line(|l| l.contains("Connected to alice").then_some(()));

    let bob_port = bob_port.parse().expect("a port number");
    (alice, bob, bob_port)
}

pub fn chat_round(scratch: &Path, file: &Path) -> ChatRun {
    let (mut alice, bob, _) = start_pair(scratch);
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
