//! `make bench` (`cargo bench --bench transfer`): a file sent by `chat` against the same work done by OpenSSL's tools
//! and by scp (with OpenSSH's default cipher, and with `aes128-gcm@openssh.com`, where
//! an sshd is installed), on loopback, alternating the contenders over several rounds
//! and reporting ratios per round and medians.
//!
//! Each round sends the file twice with `chat`: first with an empty hash cache (the
//! sender hashes it), then again (the hash is cached, so only the transfer is timed).
//!
//! Settings (environment): `BENCH_MIB` (file size, default 1024), `BENCH_ROUNDS`
//! (default 3), `BENCH_DIR` (scratch folder, default a new folder in /dev/shm if it
//! exists, so the disk's speed is not what is measured), `BENCH_SIEGE=0` (no siege).
//!
//! Then a siege: a crowd of 1,000 hostile connections (the one in
//! `tests/it/common/crowd.rs`) churns against one peer's listener while the other peer
//! chats; the bench reports chat-line latency, the time the real peer takes to
//! complete its handshake (TLS and greeting) through the crowd, and the
//! listener's peak RSS.

#[path = "../tests/it/common/crowd.rs"]
mod crowd;
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pair::{chat_round, start_pair};
use support::ssh::{AES128_GCM, Sshd};
use support::{
    CHAT, WAIT, env_or, free_port, make_identities, make_random_file, median, now_micros,
    peak_rss_kib, percentile, run, scratch_dir,
};

/// Hostile connections in the siege.
const SIEGE_CROWD: usize = 1000;
/// Times the real peer dials the besieged listener, each timed.
const SIEGE_HANDSHAKES: usize = 20;

fn main() {
    let mib: u64 = env_or("BENCH_MIB", 1024);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    println!(
        "bench: {mib} MiB file, {rounds} rounds, scratch {}",
        scratch.display()
    );
    let file = scratch.join("payload.bin");
    make_random_file(&file, mib << 20);
    let certs = make_identities(&scratch);
    let openssl_present = Command::new("openssl").arg("version").output().is_ok();
    let sshd = Sshd::start(&scratch);
    if !openssl_present {
        println!("SKIPPED openssl contender: the openssl command is not installed");
    }
    if let Err(reason) = &sshd {
        println!("SKIPPED scp contenders: {reason}");
    }
    let scp_target = scratch.join("scp-received.bin");

    // A file changed within the last 2 s is hashed but not cached.
    std::thread::sleep(Duration::from_millis(2100));
    let hash_cache = certs.join("hash_cache");
    let (mut chat_secs, mut openssl_secs, mut scp_secs) = (vec![], vec![], vec![]);
    let mut scp_gcm_secs = vec![];
    let mut repeat_secs = vec![];
    let mut repeat_cpu = vec![];
    let (mut latencies, mut rss_sender, mut rss_receiver) = (vec![], vec![], vec![]);
    for round in 1..=rounds {
        let _ = std::fs::remove_file(&hash_cache);
        let run = chat_round(&scratch, &file);
        println!(
            "round {round}: chat {:.2} s ({:.0} MiB/s), peak RSS sender {} MiB receiver {} MiB, chat latency median {:.1} ms max {:.1} ms",
            run.seconds,
            mib as f64 / run.seconds,
            run.rss_sender_kib / 1024,
            run.rss_receiver_kib / 1024,
            median(&run.latencies_ms),
            run.latencies_ms.iter().cloned().fold(0.0, f64::max)
        );
        chat_secs.push(run.seconds);
        latencies.extend(run.latencies_ms);
        rss_sender.push(run.rss_sender_kib);
        rss_receiver.push(run.rss_receiver_kib);
        let repeat = chat_round(&scratch, &file);
        println!(
            "round {round}: chat, the same file again (hash cached) {:.2} s ({:.0} MiB/s), CPU sender {:.2} s receiver {:.2} s",
            repeat.seconds,
            mib as f64 / repeat.seconds,
            repeat.cpu_sender,
            repeat.cpu_receiver
        );
        repeat_secs.push(repeat.seconds);
        repeat_cpu.push((repeat.cpu_sender, repeat.cpu_receiver));
        if openssl_present {
            let seconds = openssl_round(&scratch, &file);
            println!(
                "round {round}: openssl {seconds:.2} s ({:.0} MiB/s)",
                mib as f64 / seconds
            );
            openssl_secs.push(seconds);
        }
        if let Ok(sshd) = &sshd {
            for (cipher, times) in [(None, &mut scp_secs), (Some(AES128_GCM), &mut scp_gcm_secs)] {
                let seconds = sshd.scp(&file, &scp_target, cipher);
                let _ = std::fs::remove_file(&scp_target);
                println!(
                    "round {round}: scp ({}) {seconds:.2} s ({:.0} MiB/s); chat {:.2}x, chat again {:.2}x",
                    cipher.unwrap_or("default cipher"),
                    mib as f64 / seconds,
                    seconds / run.seconds,
                    seconds / repeat.seconds
                );
                times.push(seconds);
            }
        }
    }

    if env_or("BENCH_SIEGE", 1) != 0 {
        report_siege(&scratch);
    }

    println!("\nmedians over {rounds} rounds, {mib} MiB:");
    let chat = median(&chat_secs);
    println!("  chat     {:>7.0} MiB/s  ({chat:.2} s)", mib as f64 / chat);
    let repeat = median(&repeat_secs);
    println!(
        "  chat, the same file again {:>7.0} MiB/s  ({repeat:.2} s)",
        mib as f64 / repeat
    );
    if !openssl_secs.is_empty() {
        let openssl = median(&openssl_secs);
        println!(
            "  openssl  {:>7.0} MiB/s  ({openssl:.2} s)",
            mib as f64 / openssl
        );
        println!("  ratio chat/openssl: {:.2}x", openssl / chat);
    }
    if !scp_secs.is_empty() {
        let scp = median(&scp_secs);
        let gcm = median(&scp_gcm_secs);
        println!("  scp      {:>7.0} MiB/s  ({scp:.2} s)", mib as f64 / scp);
        println!(
            "  scp {AES128_GCM} {:>7.0} MiB/s  ({gcm:.2} s)",
            mib as f64 / gcm
        );
        println!("  ratio chat/scp: {:.2}x (target 1.5x)", scp / chat);
        println!(
            "  ratio chat/scp {AES128_GCM}: {:.2}x (target 1.2x)",
            gcm / chat
        );
        println!("  ratio chat again/scp: {:.2}x (target 2x)", scp / repeat);
    }
    let (cpu_sender, cpu_receiver): (Vec<f64>, Vec<f64>) = repeat_cpu.into_iter().unzip();
    let (cpu_sender, cpu_receiver) = (median(&cpu_sender), median(&cpu_receiver));
    println!("  chat again, CPU seconds: sender {cpu_sender:.2} s, receiver {cpu_receiver:.2} s");
    report_first_send_floor(chat, repeat, cpu_sender + cpu_receiver, &scp_gcm_secs);
    println!(
        "  chat peak RSS: sender {} MiB, receiver {} MiB",
        rss_sender.iter().max().unwrap_or(&0) / 1024,
        rss_receiver.iter().max().unwrap_or(&0) / 1024
    );
    println!(
        "  chat line latency during transfer: median {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} lines)",
        median(&latencies),
        percentile(&latencies, 99.0),
        latencies.iter().cloned().fold(0.0, f64::max),
        latencies.len()
    );
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

fn report_siege(scratch: &Path) {
    let siege = siege_round(scratch);
    println!(
        "siege: {} hostile connections from {} addresses, {} opened in {:.1} s ({:.0}/s), at most {} open at once",
        siege.crowd,
        siege.sources,
        siege.opened,
        siege.seconds,
        siege.opened as f64 / siege.seconds,
        siege.peak_open
    );
    println!(
        "siege: real peer's handshake (TCP connect to greeting done): median {:.1} ms, max {:.1} ms over {} ({} failed)",
        median(&siege.handshakes_ms),
        siege.handshakes_ms.iter().cloned().fold(0.0, f64::max),
        siege.handshakes_ms.len(),
        siege.failed_handshakes
    );
    println!(
        "siege: chat line latency: median {:.1} ms, max {:.1} ms ({} lines); listener peak RSS {} MiB",
        median(&siege.latencies_ms),
        siege.latencies_ms.iter().cloned().fold(0.0, f64::max),
        siege.latencies_ms.len(),
        siege.rss_kib / 1024
    );
}

/// What the siege measured.
struct Siege {
    crowd: usize,
    sources: usize,
    /// Hostile connections opened while the siege ran, and for how long it ran.
    opened: u64,
    seconds: f64,
    peak_open: u64,
    latencies_ms: Vec<f64>,
    handshakes_ms: Vec<f64>,
    failed_handshakes: usize,
    rss_kib: u64,
}

/// Bob's listener under a churning crowd of [`SIEGE_CROWD`] hostile connections:
/// the latency of chat lines from alice to bob, then [`SIEGE_HANDSHAKES`] times
/// the real peer (alice's identity, dialling from this process) completing TLS
/// and the greeting through the crowd, then bob's peak RSS.
fn siege_round(scratch: &Path) -> Siege {
    let (mut alice, mut bob, bob_port) = start_pair(scratch);
    let bob_fp: chat::identity::fingerprint::Fingerprint = run(Command::new(CHAT)
        .arg("fingerprint")
        .arg(scratch.join("certs/bob.crt")))
    .trim()
    .parse()
    .unwrap();
    let strangers = crowd::strangers(&scratch.join("strangers"), 10, bob_fp);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], bob_port));
    let started = Instant::now();
    let crowd = crowd::Crowd::start(target, SIEGE_CROWD, strangers);
    let size = crowd.size as u64;
    crowd.wait_until(WAIT, "churning", |tally| {
        tally.opened() >= 3 * size && tally.ended() >= 2 * size
    });

    let mut latencies_ms = Vec::new();
    for _ in 0..100 {
        alice.send(&format!("ping {}", now_micros()));
        let line = bob.wait_line(|line| line.strip_prefix("alice: ping ").map(str::to_owned));
        latencies_ms.push((now_micros() - line.parse::<u128>().unwrap()) as f64 / 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (handshakes_ms, failed_handshakes) = real_peer_handshakes(scratch, target, bob_fp);
    let rss_kib = peak_rss_kib(&bob.child);
    let seconds = started.elapsed().as_secs_f64();
    let siege = Siege {
        crowd: crowd.size,
        sources: crowd.sources,
        opened: crowd.tally.opened(),
        seconds,
        peak_open: crowd.tally.peak_open(),
        latencies_ms,
        handshakes_ms,
        failed_handshakes,
        rss_kib,
    };
    drop(crowd);
    alice.send("/quit");
    alice.finish();
    bob.finish();
    siege
}

/// Dials `target` as alice, the peer bob pins, [`SIEGE_HANDSHAKES`] times, timing
/// each from the TCP connect to the end of the greeting. Each link replaces alice's
/// own inbound connection at bob, and is dropped at once; alice's process then
/// dials back in by itself. Returns the times in milliseconds and the failures.
fn real_peer_handshakes(
    scratch: &Path,
    target: std::net::SocketAddr,
    bob_fp: chat::identity::fingerprint::Fingerprint,
) -> (Vec<f64>, usize) {
    let files = chat::identity::IdentityFiles::named(&scratch.join("certs"), "alice");
    let alice = chat::identity::load(&files).unwrap();
    let connector = tokio_rustls::TlsConnector::from(
        chat::link::tls::client_config(&alice, bob_fp, false).unwrap(),
    );
    let greeting = chat::link::handshake::Greeting::new("alice".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut times, mut failed) = (Vec::new(), 0);
    for _ in 0..SIEGE_HANDSHAKES {
        let started = Instant::now();
        let result = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(target)
                .await
                .map_err(|err| err.to_string())?;
            chat::link::handshake::connect(
                &connector,
                chat::link::Stream::Tcp(tcp),
                chat::link::Route::Tcp(target),
                &greeting,
                None,
            )
            .await
            .map_err(|err| err.to_string())
        });
        match result {
            Ok(link) => {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                drop(link);
            }
            Err(err) => {
                failed += 1;
                println!("siege: a handshake of the real peer failed: {err}");
            }
        }
        // Let alice's process dial back in between two measurements.
        std::thread::sleep(Duration::from_millis(300));
    }
    (times, failed)
}

/// OpenSSL's tools doing the same work: hash, then mutual TLS 1.3 through
/// s_server/s_client, the receiver teeing to a file and into `openssl dgst`.
/// A first send is the sender's hash pass, which must end before the offer and so
/// before any byte goes, then the transfer. With both peers on this machine, the
/// transfer cannot take less than its CPU time spread over every core.
fn report_first_send_floor(first: f64, again: f64, transfer_cpu: f64, scp_gcm_secs: &[f64]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash_pass = (first - again).max(0.0);
    let floor = hash_pass + transfer_cpu / cores as f64;
    print!(
        "  first send: hash pass {hash_pass:.2} s (first - again) + transfer; at this CPU cost, \
         on {cores} cores shared by both peers, at least {floor:.2} s"
    );
    if scp_gcm_secs.is_empty() {
        println!();
    } else {
        println!(
            ", {:.2}x scp {AES128_GCM} at best",
            median(scp_gcm_secs) / floor
        );
    }
}

fn openssl_round(scratch: &Path, file: &Path) -> f64 {
    let certs = scratch.join("certs");
    let out = scratch.join("openssl-received.bin");
    let port = free_port();
    let (a_crt, a_key) = (certs.join("alice.crt"), certs.join("alice.key"));
    let (b_crt, b_key) = (certs.join("bob.crt"), certs.join("bob.key"));
    let start = Instant::now();
    run(Command::new("openssl").args(["dgst", "-sha256"]).arg(file));
    let server = format!(
        "openssl s_server -quiet -naccept 1 -tls1_3 -accept 127.0.0.1:{port} -cert {} -key {} -Verify 1 -CAfile {} \
         | tee {} | openssl dgst -sha256",
        b_crt.display(),
        b_key.display(),
        a_crt.display(),
        out.display()
    );
    let mut receiver = Command::new("sh")
        .args(["-c", &server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = format!(
        "openssl s_client -nocommands -tls1_3 -connect 127.0.0.1:{port} -cert {} -key {} -CAfile {} -verify_return_error < {}",
        a_crt.display(),
        a_key.display(),
        b_crt.display(),
        file.display()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = Command::new("sh")
            .args(["-c", &client])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() || Instant::now() > deadline {
            break;
        }
    }
    let mut digest = String::new();
    receiver
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut digest)
        .unwrap();
    receiver.wait().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        std::fs::metadata(file).unwrap().len()
    );
    let _ = std::fs::remove_file(&out);
    seconds
}
