//! A siege of the listener: a thousand hostile connections from a hundred loopback
//! addresses (the real peer's own among them), each reopened as soon as it closes,
//! while the pinned peer restarts and has to come back in through them.

use crate::common;
use crate::common::crowd;

use common::{Pair, Peer, Stream, TIMEOUT};
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
