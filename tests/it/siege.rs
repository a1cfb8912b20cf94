//! A siege of the listener: a thousand hostile connections from a hundred loopback
//! addresses (the real peer's own among them), each reopened as soon as it closes,
//! while the pinned peer restarts and has to come back in through them; and a crowd
//! replaying a ClientHello from 256 addresses while the pinned peer, a 300 ms round
//! trip away, comes in through it.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::crowd;

use common::far::FarProxy;
use common::{Pair, Peer, Stream, TIMEOUT, World};
use crowd::Crowd;

const CROWD: usize = 1000;
/// Times bob is killed and restarted during the siege.
const RESTARTS: usize = 3;
/// What the listener may print one by one over the whole siege; the rest must be
/// summarised.
const MAX_REJECTED_LINES: usize = 50;

#[test]
fn the_real_peer_gets_in_while_a_thousand_hostile_connections_churn() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp = alice.fingerprint.clone();
    let (alice_port, bob_port) = (alice.port, bob.port);
    let strangers = crowd::strangers(
        &world.path().join("strangers"),
        10,
        alice_fp.parse().unwrap(),
    );
    let crowd = Crowd::start(([127, 0, 0, 1], alice_port).into(), CROWD, strangers);
    println!(
        "siege: {} hostile connections from {} addresses",
        crowd.size, crowd.sources
    );
    // Every member has been let in, and the crowd has turned over twice.
    let size = crowd.size as u64;
    crowd.wait_until(TIMEOUT, "churning", |tally| {
        tally.opened() >= 3 * size && tally.ended() >= 2 * size
    });

    for round in 1..=RESTARTS {
        stop(&mut bob);
        bob = world.restart("bob", bob_port, alice_port, &alice_fp);
        // bob dials alice's besieged listener; alice dials bob's quiet one.
        expect_all(
            &mut alice,
            Stream::Stderr,
            &["bob reconnected from 127.0.0.1:", "Reconnected to bob at"],
        );
        expect_all(
            &mut bob,
            Stream::Stderr,
            &["Connected to alice at", "alice connected from"],
        );
        bob.send(&format!("through the siege {round}"));
        alice.expect(Stream::Stdout, &format!("bob: through the siege {round}"));
        alice.send(&format!("heard you {round}"));
        bob.expect(Stream::Stdout, &format!("alice: heard you {round}"));
    }

    // A window full of rejections ends in a summary line.
    let summary = alice.expect_seen(Stream::Stderr, "more rejected connections in the last 10 s");
    assert!(summary.starts_with("… and "), "{summary}");
    let peak_kib =
        common::proc_status(alice.child.id(), "VmHWM:").expect("VmHWM in /proc/PID/status");
    let tally = format!("{:?}", crowd.tally);
    drop(crowd);

    let stderr = alice.lines_on(Stream::Stderr);
    let rejected = stderr
        .iter()
        .filter(|line| line.starts_with("Rejected connection from "))
        .count();
    let summaries = stderr
        .iter()
        .filter(|line| line.contains("more rejected connections in the last"))
        .count();
    println!(
        "siege: {tally}; alice printed {rejected} Rejected lines and {summaries} summaries; peak RSS {peak_kib} KiB"
    );
    assert!(
        rejected <= MAX_REJECTED_LINES,
        "{rejected} Rejected lines:\n{}",
        alice.transcript()
    );
    assert!(
        peak_kib < 64 * 1024,
        "alice's peak RSS grew to {peak_kib} KiB"
    );
    assert!(alice.is_running());
}

/// Connections a second the replaying crowd opens: three times as many as shed a
/// handshake without a knock before a 300 ms round trip is over, and few enough
/// that the listener reads each ClientHello before the next arrives.
const REPLAYS_PER_SECOND: u32 = 1500;
/// Source addresses of the replaying crowd: a /56 of IPv6 holds 256 /64s, each
/// counted as one address, so per-address limits do not stop it.
const REPLAY_SOURCES: usize = 256;
/// Half of the far peer's round trip.
const FAR_ONE_WAY: Duration = Duration::from_millis(150);
/// The listener's handshake slots (`MAX_PENDING_HANDSHAKES`).
const SLOTS: f64 = 128.0;

/// Before knocks, a handshake waiting one round trip for the client's second flight
/// was shed once the crowd had opened 128 newer connections: at 1,500 a second, a
/// peer 100 ms away never got in. Now its ClientHello knocks, and only another
/// knock could take its slot.
#[test]
fn a_peer_300_ms_away_gets_in_through_a_crowd_replaying_a_client_hello() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &["--accept", "--peer-fingerprint", &bob_fp]);
    let strangers = crowd::strangers_in_mode(
        &world.path().join("strangers"),
        1,
        alice_fp.parse().unwrap(),
        true,
    );
    let client_hello = crowd::recorded_client_hello(&strangers[0]);
    let alice_addr = ([127, 0, 0, 1], alice.port).into();
    let crowd = Crowd::replaying(alice_addr, REPLAYS_PER_SECOND, REPLAY_SOURCES, client_hello);
    crowd.wait_until(TIMEOUT, "a full table", |tally| {
        tally.ended() >= SLOTS as u64
    });

    let far = FarProxy::start(alice_addr, FAR_ONE_WAY);
    let bob_home = world.path().join("bob-home");
    std::fs::create_dir_all(&bob_home).unwrap();
    let certs = world.certs().display().to_string();
    let far_port = far.port.to_string();
    let args: Vec<String> = [
        "--name",
        "bob",
        "--certs-dir",
        &certs,
        "--connect",
        &far_port,
        "--no-listen",
        "--peer-fingerprint",
        &alice_fp,
        "--retry-for",
        "60s",
    ]
    .map(String::from)
    .to_vec();
    let opened_before = crowd.tally.opened();
    let started = Instant::now();
    let mut bob = Peer::spawn(&bob_home, &args);
    alice.expect_within(
        Duration::from_secs(15),
        Stream::Stderr,
        "bob connected",
        |line| line.starts_with("bob connected from 127.0.0.1:"),
    );
    let took = started.elapsed();
    let rate = (crowd.tally.opened() - opened_before) as f64 / took.as_secs_f64();
    bob.send("through the crowd");
    alice.expect(Stream::Stdout, "bob: through the crowd");

    let round_trip = 2.0 * FAR_ONE_WAY.as_secs_f64();
    let locked_out_above = SLOTS / round_trip;
    println!(
        "far peer: {:.0} ms round trip, in after {took:.2?} while a crowd from {} addresses \
         opened {rate:.0} connections/s; {:?}",
        round_trip * 1000.0,
        crowd.sources,
        crowd.tally
    );
    if rate < locked_out_above {
        println!(
            "NOTE: the crowd reached {rate:.0}/s, below the {locked_out_above:.0}/s at which \
             a handshake without a knock is shed before its round trip is over: this run \
             did not test what the knock is for"
        );
    }
}

/// Kills `peer` and waits until it is gone, so that its port is free for a restart.
fn stop(peer: &mut Peer) {
    let _ = peer.child.kill();
    peer.child.wait().expect("wait for chat");
}

/// Waits, with the harness's deadline, for a line containing each of `needles`, in
/// any order: two connections come up concurrently.
fn expect_all(peer: &mut Peer, stream: Stream, needles: &[&str]) {
    let mut missing: Vec<&str> = needles.to_vec();
    while !missing.is_empty() {
        let description = missing.join(" and ");
        let line = peer.expect_where(stream, &description, |line| {
            missing.iter().any(|needle| line.contains(needle))
        });
        missing.retain(|needle| !line.contains(needle));
    }
}
