//! `make bench` (`cargo bench --bench floods`): a pinned but hostile peer floods a real
//! `chat` receiver, and the receiver's peak memory is reported for each flood:
//!
//! - offers it must refuse, while never reading the refusals;
//! - 64 KiB messages while the receiver's standard output is a pipe nobody reads (a
//!   terminal stopped with Ctrl-S, a pager);
//! - offers of empty files, each of which the receiver stores at once.
//!
//! Each flood stops when the receiver stops reading (a write waits longer than
//! `STALL`) or when everything was sent. The receiver's answer to a flood should be
//! backpressure, not memory: its peak RSS stays under 64 MiB.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chat::frame::Frame;
use chat::identity::fingerprint::Fingerprint;
use chat::identity::{self, IdentityFiles};
use chat::link::handshake::{self, Greeting, Link};
use chat::link::tls;
use common::{Peer, World};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A write that waits this long means the receiver has stopped reading.
const STALL: Duration = Duration::from_secs(3);
const LIMIT_MIB: u64 = 64;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let refused = (0..200_000u32).map(u64::from).map(|id| Frame::Offer {
        id,
        size: 1,
        sha256: [0; 32],
        name: "../refused".into(),
    });
    report("refused offers", runtime.block_on(flood(false, refused)));

    let text = "m".repeat(64 * 1024);
    let messages = (1..16_001u32).map(u64::from).map(|seq| Frame::Message {
        seq,
        text: text.clone(),
    });
    report(
        "64 KiB messages to an output nobody reads",
        runtime.block_on(flood(true, messages)),
    );

    let empty = (0..3_000u32).map(u64::from).map(|id| Frame::Offer {
        id,
        size: 0,
        sha256: sha256_of_nothing(),
        name: format!("empty-{id}"),
    });
    report(
        "offers of empty files",
        runtime.block_on(flood(false, empty)),
    );
}

/// What one flood did to the receiver.
struct Outcome {
    sent: usize,
    total: usize,
    stalled: bool,
    seconds: f64,
    peak_rss_kib: u64,
    peak_threads: u64,
    files: usize,
}

fn report(what: &str, outcome: Outcome) {
    let mib = outcome.peak_rss_kib / 1024;
    println!(
        "flood, {what}: {} of {} frames sent in {:.1} s{}; receiver peak RSS {mib} MiB ({}), peak threads {}, files stored {}",
        outcome.sent,
        outcome.total,
        outcome.seconds,
        if outcome.stalled {
            ", then the receiver stopped reading"
        } else {
            ""
        },
        if mib < LIMIT_MIB {
            "under 64 MiB"
        } else {
            "OVER 64 MiB"
        },
        outcome.peak_threads,
        outcome.files,
    );
}

/// Starts a receiver (alice), dials it as the pinned bob, and writes `frames` until
/// they are all sent or alice stops reading.
async fn flood(stall_output: bool, frames: impl ExactSizeIterator<Item = Frame>) -> Outcome {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let home = world.path().join("alice-home");
    std::fs::create_dir_all(home.join("downloads")).unwrap();
    let args: Vec<String> = [
        "--name",
        "alice",
        "--certs-dir",
        &world.certs().display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--connect",
        "1",
        "--peer-fingerprint",
        &bob_fp,
        "--download-dir",
        "downloads",
    ]
    .map(String::from)
    .into();
    let (mut alice, _unread) = if stall_output {
        let (peer, stdout) = Peer::start_with_stalled_stdout(&home, &args);
        (peer, Some(stdout))
    } else {
        (Peer::start(&home, &args), None)
    };
    let link = dial_as_bob(&world, &alice_fp, alice.port).await;
    let (_reader, mut writer) = link.connection.into_split();
    let pid = alice.child.id();
    let total = frames.len();
    let (mut sent, mut stalled, mut peak_threads) = (0, false, 0);
    let started = Instant::now();
    for frame in frames {
        match tokio::time::timeout(STALL, writer.write_frame(&frame)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(err)) => panic!("the receiver closed the connection: {err}"),
            Err(_) => {
                stalled = true;
                break;
            }
        }
        if sent % 256 == 0 {
            peak_threads = peak_threads.max(status_field(pid, "Threads:"));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the receiver work through what it has read: until nothing new lands for 1 s.
    let (mut files, mut unchanged_since) = (count_files(&home.join("downloads")), Instant::now());
    let settle_by = Instant::now() + Duration::from_secs(60);
    while unchanged_since.elapsed() < Duration::from_secs(1) && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak_threads = peak_threads.max(status_field(pid, "Threads:"));
        let now = count_files(&home.join("downloads"));
        if now != files {
            (files, unchanged_since) = (now, Instant::now());
        }
    }
    let peak_rss_kib = status_field(pid, "VmHWM:");
    let _ = alice.child.kill();
    Outcome {
        sent,
        total,
        stalled,
        seconds,
        peak_rss_kib,
        peak_threads,
        files,
    }
}

async fn dial_as_bob(world: &World, alice_fp: &str, port: u16) -> Link {
    let bob = identity::load(&IdentityFiles::named(&world.certs(), "bob")).unwrap();
    let connector = TlsConnector::from(
        tls::client_config(&bob, alice_fp.parse::<Fingerprint>().unwrap(), false).unwrap(),
    );
    let addr = ([127, 0, 0, 1], port).into();
    let tcp = TcpStream::connect(addr).await.unwrap();
    handshake::connect(
        &connector,
        chat::link::Stream::Tcp(tcp),
        chat::link::Route::Tcp(addr),
        &Greeting::new("bob".into()),
        None,
    )
    .await
    .expect("bob is pinned")
}

/// A number from `/proc/PID/status`, 0 once the process is gone.
fn status_field(pid: u32, field: &str) -> u64 {
    common::proc_status(pid, field).unwrap_or(0)
}

/// Stored files: the folder's entries but the hidden parts folder.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

fn sha256_of_nothing() -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b"").into()
}
