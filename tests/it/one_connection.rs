//! Single-connection mode between real processes on 127.0.0.1: bob dials with
//! `--connect ... --no-listen`, alice takes it with `--accept`, and that one
//! connection carries both directions, through a loss and back.

use crate::common;

use std::time::Duration;

use common::proxy::{ALICE, BOB, Proxy, Way, sha256_hex, wait_both};
use common::{Peer, Stream, World, pseudo_random};

/// The arguments for `name`, with its identity in `world`, and `extra`.
fn args(world: &World, name: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--name".into(),
        name.into(),
        "--certs-dir".into(),
        world.certs().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Bob, in a folder of his own, dialing `target` with `--no-listen`.
fn spawn_single_dialer(world: &World, target: &str, alice_fp: &str, extra: &[&str]) -> Peer {
    let bob_home = world.path().join("bob-home");
    std::fs::create_dir_all(&bob_home).unwrap();
    let mut flags = vec![
        "--connect",
        target,
        "--no-listen",
        "--peer-fingerprint",
        alice_fp,
    ];
    flags.extend(extra);
    Peer::spawn(&bob_home, &args(world, "bob", &flags))
}

/// Alice accepts; bob dials `target` (alice's port, or a proxy in front of it).
struct OnePair {
    world: World,
    peers: [Peer; 2],
}

impl OnePair {
    fn start(through: Option<&Proxy>) -> OnePair {
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let alice = world.peer("alice", &["--accept", "--peer-fingerprint", &bob_fp]);
        let target = match through {
            Some(proxy) => {
                proxy.set_upstream(alice.port);
                proxy.port
            }
            None => alice.port,
        };
        let target = target.to_string();
        let bob = spawn_single_dialer(&world, &target, &alice_fp, &["--retry-for", "60s"]);
        let mut peers = [alice, bob];
        peers[ALICE].expect_seen(Stream::Stderr, "bob connected from 127.0.0.1:");
        peers[ALICE].expect_seen(Stream::Stderr, "(one connection, both directions)");
        peers[BOB].expect_seen(
            Stream::Stderr,
            &format!("Connected to alice at 127.0.0.1:{target} (one connection, both directions)"),
        );
        OnePair { world, peers }
    }
}

/// Sends `data` as `name` each way at once, and checks both stored files.
fn exchange_files(pair: &mut OnePair, size: usize) -> [Vec<u8>; 2] {
    let data = [pseudo_random(size, 1), pseudo_random(size, 2)];
    for (who, name) in [(ALICE, "from-alice.bin"), (BOB, "from-bob.bin")] {
        std::fs::write(pair.peers[who].workdir.join(name), &data[who]).unwrap();
        pair.peers[who].send(&format!("transfer {name}"));
    }
    data
}

fn expect_stored(pair: &mut OnePair, data: &[Vec<u8>; 2]) {
    for (who, name, from) in [
        (ALICE, "from-alice.bin", "alice"),
        (BOB, "from-bob.bin", "bob"),
    ] {
        let receiver = 1 - who;
        let saved = pair.peers[receiver].expect(Stream::Stderr, "(verified, sha256 ");
        assert!(saved.contains(&sha256_hex(&data[who])), "{saved}");
        let stored = std::fs::read(pair.peers[receiver].workdir.join(name)).unwrap();
        assert_eq!(
            sha256_hex(&stored),
            sha256_hex(&data[who]),
            "{name} from {from}"
        );
    }
}

#[test]
fn one_connection_carries_lines_and_files_both_ways_at_once() {
    let mut pair = OnePair::start(None);
    let data = exchange_files(&mut pair, 12 << 20);
    for i in 0..10 {
        pair.peers[ALICE].send(&format!("from alice {i}"));
        pair.peers[BOB].send(&format!("from bob {i}"));
    }
    for i in 0..10 {
        pair.peers[BOB].expect(Stream::Stdout, &format!("alice: from alice {i}"));
        pair.peers[ALICE].expect(Stream::Stdout, &format!("bob: from bob {i}"));
    }
    expect_stored(&mut pair, &data);
    for peer in &mut pair.peers {
        peer.close_stdin();
    }
    let problems = wait_both(&mut pair.peers);
    assert!(problems.is_empty(), "{problems:?}");
    pair.peers[ALICE].expect_seen(Stream::Stderr, "bob has nothing more to say");
    pair.peers[BOB].expect_seen(Stream::Stderr, "alice has nothing more to say");
    let _ = &pair.world;
}

#[test]
fn a_lost_connection_comes_back_and_both_transfers_resume() {
    const SIZE: usize = 48 << 20;
    let proxy = Proxy::new();
    let mut pair = OnePair::start(Some(&proxy));
    pair.peers[ALICE].send("before the cut");
    pair.peers[BOB].expect(Stream::Stdout, "alice: before the cut");
    let conn = proxy.current();
    conn.stall_after(Way::ToDialer, 1 << 20, Duration::from_secs(60));
    let data = exchange_files(&mut pair, SIZE);
    conn.wait_stalled();
    let to_bob = conn.forwarded(Way::ToDialer);
    conn.reset();
    assert!(
        to_bob < SIZE as u64,
        "the cut came after {to_bob} bytes towards bob: not mid-transfer"
    );
    pair.peers[BOB].expect(Stream::Stderr, "Reconnected to alice at 127.0.0.1:");
    pair.peers[ALICE].expect(Stream::Stderr, "bob reconnected from 127.0.0.1:");
    pair.peers[BOB].expect(Stream::Stderr, "Receiving from-alice.bin: resuming at");
    pair.peers[ALICE].send("after the cut");
    pair.peers[BOB].send("bob after the cut");
    pair.peers[BOB].expect(Stream::Stdout, "alice: after the cut");
    pair.peers[ALICE].expect(Stream::Stdout, "bob: bob after the cut");
    expect_stored(&mut pair, &data);
    for peer in &mut pair.peers {
        peer.close_stdin();
    }
    let problems = wait_both(&mut pair.peers);
    assert!(problems.is_empty(), "{problems:?}");
    for (viewer, from, line) in [
        (BOB, "alice", "before the cut"),
        (BOB, "alice", "after the cut"),
        (ALICE, "bob", "bob after the cut"),
    ] {
        let shown = common::proxy::shown_from(&pair.peers[viewer], from);
        assert_eq!(
            shown.iter().filter(|text| *text == line).count(),
            1,
            "{line:?} shown exactly once: {shown:?}"
        );
    }
}

#[test]
fn a_two_connection_dialer_meets_an_accepting_peer_and_both_say_what_to_run() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &["--accept", "--peer-fingerprint", &bob_fp]);
    let target = alice.port.to_string();
    let mut bob = world.peer(
        "bob",
        &["--connect", &target, "--peer-fingerprint", &alice_fp],
    );
    bob.expect_seen(
        Stream::Stderr,
        "if it runs with --accept (one connection for both directions)",
    );
    bob.expect_seen(Stream::Stderr, "--no-listen");
    assert_eq!(bob.wait().code(), Some(3), "{}", bob.transcript());
    alice.expect_seen(
        Stream::Stderr,
        "it dialed for one connection per direction, but this side runs with --accept",
    );
}

/// A two-connection peer takes a single-connection dialer's connection for both
/// directions, and stops dialing a peer that does not listen.
#[test]
fn a_single_connection_dialer_meets_a_two_connection_peer_that_carries_both_ways_on_it() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    // Alice dials a port where nobody listens: bob listens for nothing.
    let mut alice = world.peer("alice", &["--connect", "1", "--peer-fingerprint", &bob_fp]);
    let mut bob = spawn_single_dialer(&world, &alice.port.to_string(), &alice_fp, &[]);
    alice.expect_seen(
        Stream::Stderr,
        "bob carries both directions on its connection to us; no longer dialing 127.0.0.1:1",
    );
    bob.expect_seen(Stream::Stderr, "(one connection, both directions)");
    alice.send("to bob");
    bob.send("to alice");
    bob.expect(Stream::Stdout, "alice: to bob");
    alice.expect(Stream::Stdout, "bob: to alice");
    alice.close_stdin();
    bob.close_stdin();
    assert!(alice.wait().success(), "{}", alice.transcript());
    assert!(bob.wait().success(), "{}", bob.transcript());
}

#[test]
fn single_connection_flags_that_make_no_sense_are_refused_before_anything_starts() {
    let world = World::new();
    for (extra, expected) in [
        (&["--no-listen"][..], "--connect"),
        (
            &["--accept", "--connect", "7001"][..],
            "cannot be used with",
        ),
        (
            &["--no-listen", "--connect", "7001", "--map-port"][..],
            "cannot be used with",
        ),
    ] {
        let output = std::process::Command::new(common::BIN)
            .args(args(&world, "alice", extra))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

/// Bob's input ends, so his direction is finished; then the connection is cut. On
/// the connection bob dials next, his direction is ended again at once: alice's
/// session goes on, and ends cleanly when she is done.
#[test]
fn a_finished_direction_stays_finished_across_a_lost_connection() {
    let proxy = Proxy::new();
    let mut pair = OnePair::start(Some(&proxy));
    pair.peers[BOB].send("bob's only line");
    pair.peers[BOB].close_stdin();
    pair.peers[ALICE].expect(Stream::Stdout, "bob: bob's only line");
    pair.peers[ALICE].expect(Stream::Stderr, "bob has nothing more to say");
    proxy.current().reset();
    pair.peers[ALICE].expect(Stream::Stderr, "bob reconnected from 127.0.0.1:");
    pair.peers[ALICE].send("alice after the cut");
    pair.peers[BOB].expect(Stream::Stdout, "alice: alice after the cut");
    pair.peers[ALICE].close_stdin();
    let problems = wait_both(&mut pair.peers);
    assert!(problems.is_empty(), "{problems:?}");
    let alice = pair.peers[ALICE].lines_on(Stream::Stderr);
    let count = |needle: &str| alice.iter().filter(|line| line.contains(needle)).count();
    assert_eq!(count("reconnected from"), 1, "no reconnect loop: {alice:?}");
    assert_eq!(count("bob has nothing more to say"), 1, "{alice:?}");
    let shown = common::proxy::shown_from(&pair.peers[ALICE], "bob");
    assert_eq!(shown, ["bob's only line"]);
}

/// Ten thousand lines typed at once each way: every acknowledgement still reaches
/// the sender (they are merged when they cannot wait), and no line is lost or doubled.
#[test]
fn ten_thousand_lines_at_once_each_way_arrive_once_each_in_order() {
    const LINES: usize = 10_000;
    let mut pair = OnePair::start(None);
    for (who, name) in [(ALICE, "alice"), (BOB, "bob")] {
        let burst: Vec<String> = (0..LINES).map(|i| format!("{name} {i}")).collect();
        pair.peers[who].send(&burst.join("\n"));
    }
    pair.peers[BOB].expect(Stream::Stdout, &format!("alice: alice {}", LINES - 1));
    pair.peers[ALICE].expect(Stream::Stdout, &format!("bob: bob {}", LINES - 1));
    for peer in &mut pair.peers {
        peer.close_stdin();
    }
    let problems = wait_both(&mut pair.peers);
    assert!(problems.is_empty(), "{problems:?}");
    for (viewer, from) in [(ALICE, "bob"), (BOB, "alice")] {
        let expected: Vec<String> = (0..LINES).map(|i| format!("{from} {i}")).collect();
        assert_eq!(
            common::proxy::shown_from(&pair.peers[viewer], from),
            expected
        );
        let errors: Vec<&str> = pair.peers[viewer]
            .lines_on(Stream::Stderr)
            .into_iter()
            .filter(|line| line.contains("protocol error") || line.contains("lost"))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
