//! Connections that drop and peers that restart: nothing typed is lost or shown twice.

mod common;

use common::{Pair, Peer, Stream, World, pseudo_random};

#[test]
fn a_restarted_peer_is_picked_up_and_queued_lines_arrive_once() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp = world.identity_fingerprint("alice");
    for i in 0..50 {
        alice.send(&format!("before {i}"));
    }
    for i in 0..50 {
        bob.expect(Stream::Stdout, &format!("alice: before {i}"));
    }
    let bob_port = bob.port;
    bob.signal("KILL");
    bob.wait();
    alice.expect(Stream::Stderr, "Connection to the peer lost");
    for i in 0..20 {
        alice.send(&format!("while down {i}"));
    }
    let mut bob = world.restart("bob", bob_port, alice.port, &alice_fp);
    alice.expect_seen(Stream::Stderr, "Reconnected to bob at 127.0.0.1:");
    alice.expect_seen(Stream::Stderr, "bob reconnected from 127.0.0.1:");
    for i in 0..20 {
        bob.expect(Stream::Stdout, &format!("alice: while down {i}"));
    }
    bob.send("back");
    alice.expect(Stream::Stdout, "bob: back");
    alice.send("done");
    bob.expect(Stream::Stdout, "alice: done");
    let shown: Vec<_> = bob
        .lines_on(Stream::Stdout)
        .into_iter()
        .filter(|line| line.starts_with("alice: "))
        .collect();
    let expected: Vec<String> = (0..20)
        .map(|i| format!("alice: while down {i}"))
        .chain(["alice: done".to_owned()])
        .collect();
    assert_eq!(shown, expected, "each line exactly once, in order");
}

#[test]
fn sigterm_quits_like_quit() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    bob.signal("TERM");
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
    alice.expect(Stream::Stderr, "The peer closed the connection");
    assert_eq!(alice.wait().code(), Some(0));
}

#[test]
fn a_stranger_on_the_port_of_a_peer_once_reached_is_warned_about_and_outlasted() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp = world.identity_fingerprint("alice");
    world.identity("mallory");
    let bob_port = bob.port;
    bob.signal("KILL");
    bob.wait();
    alice.expect(Stream::Stderr, "Connection to the peer lost");
    // Mallory takes bob's port while bob is down; she dials nowhere, so she stays.
    std::fs::create_dir_all(world.path().join("mallory-home")).unwrap();
    let mut mallory = world.restart("mallory", bob_port, 1, &alice_fp);
    let warning = alice.expect(Stream::Stderr, "Warning: ");
    assert!(warning.contains("is not the one we trust"), "{warning}");
    assert!(warning.contains("still trying"), "{warning}");
    alice.send("typed while mallory held the port");
    mallory.signal("KILL");
    mallory.wait();

    let mut bob = world.restart("bob", bob_port, alice.port, &alice_fp);
    alice.expect_seen(Stream::Stderr, "Reconnected to bob at 127.0.0.1:");
    bob.expect(Stream::Stdout, "alice: typed while mallory held the port");
    alice.close_stdin();
    bob.close_stdin();
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
}

#[test]
fn gives_up_after_retry_for_and_reports_what_was_not_delivered() {
    let world = World::new();
    let bob_fp = world.identity("bob");
    world.identity("alice");
    let mut alice = world.peer(
        "alice",
        &[
            "--connect",
            "1",
            "--peer-fingerprint",
            &bob_fp,
            "--retry-for",
            "1s",
        ],
    );
    alice.send("never delivered");
    alice.expect(Stream::Stderr, "Gave up reaching the peer at 127.0.0.1:1");
    alice.expect(Stream::Stderr, "1 line(s) were not delivered");
    alice.expect(Stream::Stderr, "never delivered");
    assert_eq!(alice.wait().code(), Some(1));
}

#[test]
fn ten_thousand_lines_each_way_arrive_in_order_exactly_once() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    const LINES: usize = 10_000;
    let writer = |peer: &mut Peer, from: &str| {
        let burst: String = (0..LINES).map(|i| format!("{from} {i}\n")).collect();
        peer.send(burst.trim_end());
    };
    writer(&mut alice, "a");
    writer(&mut bob, "b");
    for i in 0..LINES {
        let line = bob.expect_where(Stream::Stdout, "a line from alice", |l| {
            l.starts_with("alice: ")
        });
        assert_eq!(line, format!("alice: a {i}"));
        let line = alice.expect_where(Stream::Stdout, "a line from bob", |l| {
            l.starts_with("bob: ")
        });
        assert_eq!(line, format!("bob: b {i}"));
    }
    alice.close_stdin();
    bob.close_stdin();
    assert!(alice.wait().success());
    assert!(bob.wait().success());
    for (peer, prefix) in [(&alice, "bob: "), (&bob, "alice: ")] {
        let count = peer
            .lines_on(Stream::Stdout)
            .iter()
            .filter(|line| line.starts_with(prefix))
            .count();
        assert_eq!(count, LINES);
    }
}

#[test]
fn a_receiver_killed_mid_transfer_and_restarted_gets_the_rest() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp = world.identity_fingerprint("alice");
    let data = pseudo_random(128 << 20, 11);
    std::fs::write(alice.workdir.join("film.bin"), &data).unwrap();
    alice.send("transfer film.bin");
    bob.expect(Stream::Stderr, "Receiving film.bin");
    common::wait_for_kept_part(&bob.workdir, 4 << 20);
    let bob_port = bob.port;
    bob.signal("KILL");
    bob.wait();
    alice.expect(Stream::Stderr, "Sending film.bin: connection lost");
    alice.send("typed while bob was down");

    let mut bob = world.restart("bob", bob_port, alice.port, &alice_fp);
    let resumed = bob.expect(Stream::Stderr, "Receiving film.bin: resuming at");
    assert!(!resumed.ends_with("at 0 B"), "{resumed}");
    alice.expect(Stream::Stderr, "Sending film.bin: resuming at");
    bob.expect(Stream::Stdout, "alice: typed while bob was down");
    bob.expect_seen(Stream::Stderr, "Saved ./film.bin (verified");
    alice.expect_seen(Stream::Stderr, "film.bin delivered and verified by bob");
    assert_eq!(std::fs::read(bob.workdir.join("film.bin")).unwrap(), data);
    assert_eq!(common::listing(&bob.workdir), ["film.bin"]);
}

/// Starts alice sending a `size`-byte file called `name` to bob, kills alice once bob
/// holds at least `held` bytes of it, and restarts alice on the same port. Returns the
/// restarted alice, bob (who kept the part), the world and the file's bytes.
fn interrupt_sender(name: &str, size: usize, held: u64, seed: u64) -> (World, Peer, Peer, Vec<u8>) {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let bob_fp = world.identity_fingerprint("bob");
    let data = pseudo_random(size, seed);
    std::fs::write(alice.workdir.join(name), &data).unwrap();
    alice.send(&format!("transfer {name}"));
    bob.expect(Stream::Stderr, &format!("Receiving {name}"));
    common::wait_for_kept_part(&bob.workdir, held);
    let alice_port = alice.port;
    alice.signal("KILL");
    alice.wait();
    bob.expect(Stream::Stderr, &format!("Receiving {name} interrupted"));
    let alice = world.restart("alice", alice_port, bob.port, &bob_fp);
    (world, alice, bob, data)
}

#[test]
fn a_restarted_sender_repeating_transfer_resumes_from_the_kept_part() {
    let (_world, mut alice, mut bob, data) = interrupt_sender("disk.img", 128 << 20, 4 << 20, 12);
    alice.send("transfer disk.img");
    alice.expect(Stream::Stderr, "Sending disk.img: resuming at");
    bob.expect(Stream::Stderr, "Receiving disk.img: resuming at");
    bob.expect(Stream::Stderr, "Saved ./disk.img (verified");
    alice.expect(Stream::Stderr, "disk.img delivered and verified by bob");
    assert_eq!(std::fs::read(bob.workdir.join("disk.img")).unwrap(), data);
    assert_eq!(common::listing(&bob.workdir), ["disk.img"]);
}

#[test]
fn a_kept_part_that_does_not_match_ends_in_a_clean_full_restart() {
    let (_world, mut alice, mut bob, data) = interrupt_sender("x.bin", 64 << 20, 1 << 20, 13);
    // Damage the kept prefix, as a disk error or a meddling user might.
    let [part] = &common::kept_parts(&bob.workdir)[..] else {
        panic!("one kept part expected");
    };
    let mut kept = std::fs::read(part).unwrap();
    kept[0] ^= 0xff;
    std::fs::write(part, &kept).unwrap();

    alice.send("transfer x.bin");
    alice.expect(Stream::Stderr, "Sending x.bin: resuming at");
    alice.expect(Stream::Stderr, "sending again from the start");
    alice.expect(Stream::Stderr, "x.bin delivered and verified by bob");
    bob.expect_seen(Stream::Stderr, "SHA-256 mismatch");
    assert_eq!(std::fs::read(bob.workdir.join("x.bin")).unwrap(), data);
    assert_eq!(common::listing(&bob.workdir), ["x.bin"]);
}
