//! `make bench` (`cargo bench --bench transfer`): a file sent by `chat` against the
//! same work done by OpenSSL's tools and by scp (with OpenSSH's default cipher, and
//! with `aes128-gcm@openssh.com`, where an sshd is installed), on loopback,
//! alternating the contenders over several rounds and reporting ratios per round and
//! medians. The receivers write to the repository's own disk, then to tmpfs, each row
//! in the same rounds; every run starts with the disk settled (`sync`). `chat`
//! reports a file saved only once it is durable; the contenders sync nothing, so each
//! row also says what a `sync -f` right after them took. On the disk, `dd
//! oflag=direct` writing the same file gives the disk's own speed.
//!
//! Each round sends the file twice with `chat`: first with an empty hash cache (the
//! sender hashes it), then again (the hash is cached, so only the transfer is timed).
//!
//! Settings (environment): `BENCH_MIB` (file size, default 1024), `BENCH_ROUNDS`
//! (default 3), `BENCH_DIR` (where the disk row writes, and the sender's files;
//! default a folder under `target/`, and tmpfs for the sender), `BENCH_SIEGE=0` (no
//! siege), `BENCH_CHAT` (another build of `chat` to measure).
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

use support::pair::{chat_round_to, start_pair};
use support::ssh::{AES128_GCM, Sshd};
use support::{
    CHAT, Place, WAIT, env_or, free_port, make_identities, make_random_file, median, now_micros,
    peak_rss_kib, percentile, receiving_places, run, scratch_dir, seconds_to_sync, settle_disk,
};

/// Hostile connections in the siege.
const SIEGE_CROWD: usize = 1000;
/// Times the real peer dials the besieged listener, each timed.
const SIEGE_HANDSHAKES: usize = 20;

/// What one receiving place measured over the rounds.
#[derive(Default)]
struct Row {
    chat: Vec<f64>,
    /// CPU seconds of the sender and the receiver, first send and again.
    first_cpu: Vec<(f64, f64)>,
    repeat: Vec<f64>,
    repeat_cpu: Vec<(f64, f64)>,
    /// Per contender: its times, and what a `sync -f` right after it took.
    contenders: Vec<(String, Vec<f64>, Vec<f64>)>,
    /// `dd oflag=direct`, on a disk.
    dd: Vec<f64>,
    latencies: Vec<f64>,
    rss_sender: u64,
    rss_receiver: u64,
}

impl Row {
    fn contender(&mut self, name: &str, seconds: f64, sync: f64) {
        match self.contenders.iter_mut().find(|(known, ..)| known == name) {
            Some((_, times, syncs)) => {
                times.push(seconds);
                syncs.push(sync);
            }
            None => self
                .contenders
                .push((name.to_owned(), vec![seconds], vec![sync])),
        }
    }
}

fn main() {
    let mib: u64 = env_or("BENCH_MIB", 1024);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let scratch = scratch_dir();
    let places = receiving_places();
    println!(
        "bench: {mib} MiB file, {rounds} rounds, sent from {}",
        scratch.display()
    );
    for place in &places {
        println!("  received on {}", place.label);
    }
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

    // A file changed within the last 2 s is hashed but not cached.
    std::thread::sleep(Duration::from_millis(2100));
    let hash_cache = certs.join("hash_cache");
    let mut rows: Vec<Row> = places.iter().map(|_| Row::default()).collect();
    for round in 1..=rounds {
        for (place, row) in places.iter().zip(&mut rows) {
            let downloads = place.dir.join("chat-downloads");
            let _ = std::fs::remove_file(&hash_cache);
            let run = chat_round_to(&scratch, &file, &downloads);
            let _ = std::fs::remove_dir_all(&downloads);
            println!(
                "round {round}, {}: chat {:.2} s ({:.0} MiB/s), peak RSS sender {} MiB receiver {} MiB, chat latency median {:.1} ms max {:.1} ms",
                place.kind,
                run.seconds,
                mib as f64 / run.seconds,
                run.rss_sender_kib / 1024,
                run.rss_receiver_kib / 1024,
                median(&run.latencies_ms),
                run.latencies_ms.iter().cloned().fold(0.0, f64::max)
            );
            row.chat.push(run.seconds);
            row.first_cpu.push((run.cpu_sender, run.cpu_receiver));
            row.latencies.extend(run.latencies_ms);
            row.rss_sender = row.rss_sender.max(run.rss_sender_kib);
            row.rss_receiver = row.rss_receiver.max(run.rss_receiver_kib);
            let repeat = chat_round_to(&scratch, &file, &downloads);
            let _ = std::fs::remove_dir_all(&downloads);
            println!(
                "round {round}, {}: chat, the same file again (hash cached) {:.2} s ({:.0} MiB/s), CPU sender {:.2} s receiver {:.2} s",
                place.kind,
                repeat.seconds,
                mib as f64 / repeat.seconds,
                repeat.cpu_sender,
                repeat.cpu_receiver
            );
            row.repeat.push(repeat.seconds);
            row.repeat_cpu
                .push((repeat.cpu_sender, repeat.cpu_receiver));
            if openssl_present {
                settle_disk();
                let seconds = openssl_round(&scratch, &file, &place.dir);
                let sync = seconds_to_sync(&place.dir);
                let _ = std::fs::remove_file(place.dir.join("openssl-received.bin"));
                println!(
                    "round {round}, {}: openssl {seconds:.2} s ({:.0} MiB/s), then sync -f {sync:.2} s",
                    place.kind,
                    mib as f64 / seconds
                );
                row.contender("openssl", seconds, sync);
            }
            if let Ok(sshd) = &sshd {
                let target = place.dir.join("scp-received.bin");
                for cipher in [None, Some(AES128_GCM)] {
                    settle_disk();
                    let seconds = sshd.scp(&file, &target, cipher);
                    let sync = seconds_to_sync(&place.dir);
                    let _ = std::fs::remove_file(&target);
                    let name = format!("scp {}", cipher.unwrap_or("(default cipher)"));
                    println!(
                        "round {round}, {}: {name} {seconds:.2} s ({:.0} MiB/s), then sync -f {sync:.2} s; chat {:.2}x, chat again {:.2}x",
                        place.kind,
                        mib as f64 / seconds,
                        seconds / run.seconds,
                        seconds / repeat.seconds
                    );
                    row.contender(&name, seconds, sync);
                }
            }
            if place.kind == "disk"
                && let Some(seconds) = dd_direct(&file, &place.dir.join("dd.bin"))
            {
                println!(
                    "round {round}, {}: dd oflag=direct {seconds:.2} s ({:.0} MiB/s)",
                    place.kind,
                    mib as f64 / seconds
                );
                row.dd.push(seconds);
            }
        }
    }

    if env_or("BENCH_SIEGE", 1) != 0 {
        report_siege(&scratch);
    }

    println!(
        "\nmedians over {rounds} rounds, {mib} MiB; chat's Saved line comes once the file \
         is durable, the contenders sync nothing:"
    );
    for (place, row) in places.iter().zip(&rows) {
        report(place, row, mib as f64);
    }
    for place in &places {
        place.clean_up();
    }
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

fn report(place: &Place, row: &Row, mib: f64) {
    println!("  received on {}:", place.label);
    let chat = median(&row.chat);
    println!(
        "    chat, first send  {:>5.0} MiB/s ({chat:.2} s), durable",
        mib / chat
    );
    let repeat = median(&row.repeat);
    println!(
        "    chat, again       {:>5.0} MiB/s ({repeat:.2} s), durable",
        mib / repeat
    );
    for (name, times, syncs) in &row.contenders {
        let (seconds, sync) = (median(times), median(syncs));
        let target = match name.as_str() {
            "scp (default cipher)" => " (target 1.5x)",
            "scp aes128-gcm@openssh.com" => " (target 1.2x)",
            _ => "",
        };
        println!(
            "    {name:<27} {:>5.0} MiB/s ({seconds:.2} s), not synced (sync -f after it: {sync:.2} s); chat {:.2}x{target}, chat again {:.2}x",
            mib / seconds,
            seconds / chat,
            seconds / repeat
        );
    }
    if !row.dd.is_empty() {
        let dd = median(&row.dd);
        println!(
            "    dd oflag=direct   {:>5.0} MiB/s ({dd:.2} s), the disk's own write speed; chat first {:.0}% of it, again {:.0}%",
            mib / dd,
            100.0 * dd / chat,
            100.0 * dd / repeat
        );
    }
    let gcm = row
        .contenders
        .iter()
        .find(|(name, ..)| name.contains(AES128_GCM))
        .map(|(_, times, _)| median(times));
    for (label, cpu) in [("first", &row.first_cpu), ("again", &row.repeat_cpu)] {
        let (sender, receiver): (Vec<f64>, Vec<f64>) = cpu.iter().copied().unzip();
        report_cpu_floor(label, median(&sender), median(&receiver), gcm);
    }
    println!(
        "    chat peak RSS: sender {} MiB, receiver {} MiB",
        row.rss_sender / 1024,
        row.rss_receiver / 1024
    );
    println!(
        "    chat line latency during transfer: median {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} lines)",
        median(&row.latencies),
        percentile(&row.latencies, 99.0),
        row.latencies.iter().cloned().fold(0.0, f64::max),
        row.latencies.len()
    );
}

/// Seconds `dd` takes to write `file` to `target` past the page cache
/// (`oflag=direct`, 4 MiB blocks): the disk's own write speed. Nothing where the
/// file system refuses direct writes.
fn dd_direct(file: &Path, target: &Path) -> Option<f64> {
    settle_disk();
    let start = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .arg(format!("of={}", target.display()))
        .args(["bs=4M", "oflag=direct"])
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let seconds = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(target);
    status.success().then_some(seconds)
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
    let bob_fp: chat::identity::fingerprint::Fingerprint = run(Command::new(&*CHAT)
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

/// What one send cost in CPU, and the least time that cost allows with both peers
/// sharing this machine's cores: a first send hashes the file as it goes (protocol
/// version 8), so its floor is its CPU time spread over every core, as a repeat's is.
fn report_cpu_floor(label: &str, sender: f64, receiver: f64, scp_gcm: Option<f64>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = (sender + receiver) / cores as f64;
    print!(
        "    chat {label}, CPU seconds: sender {sender:.2} s, receiver {receiver:.2} s; \
         on {cores} cores shared by both peers, at least {floor:.2} s"
    );
    match scp_gcm {
        Some(gcm) => println!(", {:.2}x scp {AES128_GCM} at best", gcm / floor),
        None => println!(),
    }
}

/// OpenSSL's tools doing the same work: hash, then mutual TLS 1.3 through
/// s_server/s_client, the receiver teeing to a file and into `openssl dgst`.
fn openssl_round(scratch: &Path, file: &Path, into: &Path) -> f64 {
    let certs = scratch.join("certs");
    let out = into.join("openssl-received.bin");
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
    seconds
}
