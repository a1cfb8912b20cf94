//! Connections that drop and peers that restart: nothing typed is lost or shown twice.

use crate::common;

use common::{Pair, Peer, Stream, World, pseudo_random};

#[test]
fn a_restarted_peer_is_picked_up_and_queued_lines_arrive_once_in_order() {
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
    // A line is acknowledged only after it is written, so the lines the killed bob
    // had written but not yet acknowledged are sent again, and the new bob, who
    // cannot know the old one wrote them, shows them: at most a tail of "before"
    // lines, then everything typed meanwhile, once each and in order.
    let repeated = shown
        .iter()
        .take_while(|line| line.starts_with("alice: before "))
        .count();
    let expected: Vec<String> = (50 - repeated..50)
        .map(|i| format!("alice: before {i}"))
        .chain((0..20).map(|i| format!("alice: while down {i}")))
        .chain(["alice: done".to_owned()])
        .collect();
    assert_eq!(
        shown, expected,
        "a tail of unacknowledged lines, then each line once, in order"
    );
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
    let (world, mut alice, mut bob, data) = sending_until_kept("film.bin", 128 << 20, 4 << 20, 11);
    let alice_fp = world.identity_fingerprint("alice");
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

/// The seed's flow with a receiver that comes back on another port: the sender
/// still dials the old one, so only the receiver's connection can be made. It comes
/// to carry both directions, and the transfer and the line typed meanwhile arrive.
#[test]
fn a_receiver_restarted_on_a_new_port_carries_both_directions_on_its_connection() {
    let (world, mut alice, mut bob, data) = sending_until_kept("film.bin", 64 << 20, 4 << 20, 13);
    let alice_fp = world.identity_fingerprint("alice");
    bob.signal("KILL");
    bob.wait();
    alice.expect(Stream::Stderr, "Sending film.bin: connection lost");
    alice.send("typed while bob was down");

    let mut bob = world.restart("bob", 0, alice.port, &alice_fp);
    expect_one_connection_for_both((&mut bob, "bob"), (&mut alice, "alice"));
    let resumed = bob.expect(Stream::Stderr, "Receiving film.bin: resuming at");
    assert!(!resumed.ends_with("at 0 B"), "{resumed}");
    bob.expect(Stream::Stdout, "alice: typed while bob was down");
    bob.expect_seen(Stream::Stderr, "Saved ./film.bin (verified");
    assert_eq!(std::fs::read(bob.workdir.join("film.bin")).unwrap(), data);
    bob.send("back, on another port");
    alice.expect(Stream::Stdout, "bob: back, on another port");
    end_without_a_nat_hint(&mut alice, &mut bob);
    let shown = bob.lines_on(Stream::Stdout);
    assert_eq!(
        shown
            .iter()
            .filter(|line| **line == "alice: typed while bob was down")
            .count(),
        1,
        "{shown:?}"
    );
}

/// `restarted`, which reached `other` but was not reached back, asks to carry both
/// directions on its connection, and `other` takes it.
fn expect_one_connection_for_both(restarted: (&mut Peer, &str), other: (&mut Peer, &str)) {
    let ((restarted, restarted_name), (other, other_name)) = (restarted, other);
    restarted.expect(
        Stream::Stderr,
        &format!(
            "{other_name} has not connected back within 3s: carrying both directions on our connection to it"
        ),
    );
    other.expect(
        Stream::Stderr,
        &format!(
            "{restarted_name} carries both directions on its connection to us; no longer dialing"
        ),
    );
}

/// Both sides end cleanly, neither having been told to start in another mode.
fn end_without_a_nat_hint(alice: &mut Peer, bob: &mut Peer) {
    alice.close_stdin();
    bob.close_stdin();
    for peer in [alice, bob] {
        assert!(peer.wait().success(), "{}", peer.transcript());
        assert!(
            !peer.transcript().contains("behind a NAT"),
            "{}",
            peer.transcript()
        );
    }
}

/// The same with the sender back on another port: the receiver's direction moves
/// onto the sender's connection, and repeating `transfer` resumes the file.
#[test]
fn a_sender_restarted_on_a_new_port_carries_both_directions_on_its_connection() {
    let (world, mut alice, mut bob, data) = sending_until_kept("disk.img", 64 << 20, 4 << 20, 14);
    let bob_fp = world.identity_fingerprint("bob");
    alice.signal("KILL");
    alice.wait();
    bob.expect(Stream::Stderr, "Receiving disk.img interrupted");
    bob.send("typed while alice was down");

    let mut alice = world.restart("alice", 0, bob.port, &bob_fp);
    expect_one_connection_for_both((&mut alice, "alice"), (&mut bob, "bob"));
    alice.expect(Stream::Stdout, "bob: typed while alice was down");
    alice.send("transfer disk.img");
    alice.expect(Stream::Stderr, "Sending disk.img: resuming at");
    bob.expect(Stream::Stderr, "Saved ./disk.img (verified");
    assert_eq!(std::fs::read(bob.workdir.join("disk.img")).unwrap(), data);
    end_without_a_nat_hint(&mut alice, &mut bob);
}

/// Alice and bob connected, alice sending them a `size`-byte file called `name`,
/// and bob holding at least `held` bytes of it. Returns the world, alice, bob and
/// the file's bytes.
fn sending_until_kept(
    name: &str,
    size: usize,
    held: u64,
    seed: u64,
) -> (World, Peer, Peer, Vec<u8>) {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let data = pseudo_random(size, seed);
    std::fs::write(alice.workdir.join(name), &data).unwrap();
    alice.send(&format!("transfer {name}"));
    bob.expect(Stream::Stderr, &format!("Receiving {name}"));
    common::wait_for_kept_part(&bob.workdir, held);
    (world, alice, bob, data)
}

/// Starts alice sending a `size`-byte file called `name` to bob, kills alice once bob
/// holds at least `held` bytes of it, and restarts alice on the same port. Returns the
/// restarted alice, bob (who kept the part), the world and the file's bytes.
fn interrupt_sender(name: &str, size: usize, held: u64, seed: u64) -> (World, Peer, Peer, Vec<u8>) {
    let (world, mut alice, mut bob, data) = sending_until_kept(name, size, held, seed);
    let bob_fp = world.identity_fingerprint("bob");
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

/// A script whose input is empty and ends before it has reached the peer: its
/// (empty) direction still has to be closed on a connection, or the peer, which
/// reached it, waits for that direction for ever.
#[test]
fn an_input_that_ends_before_the_peer_is_up_still_ends_cleanly_on_both_sides() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    for home in ["alice-home", "bob-home"] {
        std::fs::create_dir_all(world.path().join(home)).unwrap();
    }
    let alice_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut bob = world.restart("bob", 0, alice_port, &alice_fp);
    bob.close_stdin();
    bob.expect(Stream::Stderr, "Waiting for the peer at ");
    let mut alice = world.restart("alice", alice_port, bob.port, &bob_fp);
    alice.send("hello");
    bob.expect(Stream::Stdout, "alice: hello");
    alice.expect_seen(Stream::Stderr, "bob has nothing more to say");
    alice.close_stdin();
    assert!(bob.wait().success(), "{}", bob.transcript());
    assert!(alice.wait().success(), "{}", alice.transcript());
    bob.expect_seen(Stream::Stderr, "alice has nothing more to say");
}

/// Receivers whose standard output stops being read: how full a pipe is can be
/// asked only the Unix way.
#[cfg(unix)]
mod stalled_output {
    use super::*;

    /// Waits, with a deadline, until bob's output pipe is full: he has stopped writing.
    fn wait_until_full(pipe: &std::process::ChildStdout) {
        let deadline = std::time::Instant::now() + common::TIMEOUT;
        while unread_bytes(pipe) < 60_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "bob's output never filled"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn sigterm_ends_a_receiver_whose_output_stalled() {
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let (mut alice, mut bob, stalled) = start_with_bob_stalled(&world, &alice_fp, &bob_fp);
        let burst: Vec<String> = (0..2000)
            .map(|i| format!("{i} {}", "y".repeat(200)))
            .collect();
        alice.send(&burst.join("\n"));
        wait_until_full(&stalled);
        bob.signal("TERM");
        let status = bob.wait();
        assert!(status.code().is_some(), "ended by its own exit: {status:?}");
        alice.expect_seen(Stream::Stderr, "The peer closed the connection");
        drop(stalled);
    }

    /// Bytes waiting unread in a pipe.
    fn unread_bytes(pipe: &std::process::ChildStdout) -> usize {
        rustix::io::ioctl_fionread(pipe).map_or(0, |n| n as usize)
    }

    /// Alice, and bob with his standard output handed back unread, connected both ways.
    fn start_with_bob_stalled(
        world: &World,
        alice_fp: &str,
        bob_fp: &str,
    ) -> (Peer, Peer, std::process::ChildStdout) {
        let mut alice = world.peer("alice", &["--peer-fingerprint", bob_fp]);
        let bob_home = world.path().join("bob-home");
        std::fs::create_dir_all(&bob_home).unwrap();
        let args: Vec<String> = [
            "--name",
            "bob",
            "--certs-dir",
            &world.certs().display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &alice.port.to_string(),
            "--peer-fingerprint",
            alice_fp,
        ]
        .map(String::from)
        .into();
        let (mut bob, stalled) = Peer::start_with_stalled_stdout(&bob_home, &args);
        alice.send(&bob.port.to_string());
        alice.expect_seen(Stream::Stderr, "bob connected from");
        bob.expect_seen(Stream::Stderr, "alice connected from");
        (alice, bob, stalled)
    }

    #[test]
    fn a_receiver_whose_output_is_closed_quits_and_acknowledges_nothing_unwritten() {
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let (mut alice, mut bob, stalled) = start_with_bob_stalled(&world, &alice_fp, &bob_fp);
        drop(stalled);
        alice.send("into the void");
        let said = bob.expect(Stream::Stderr, "cannot write to standard output");
        assert!(said.contains("quitting"), "{said}");
        assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
        alice.expect_seen(Stream::Stderr, "The peer closed the connection");
        alice.expect(Stream::Stderr, "1 line(s) were not delivered");
        alice.expect(Stream::Stderr, "  into the void");
        assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    }

    #[test]
    fn a_receiver_whose_output_stalls_acknowledges_only_what_it_wrote() {
        const LINES: usize = 3000;
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let (mut alice, mut bob, mut stalled) = start_with_bob_stalled(&world, &alice_fp, &bob_fp);
        let line = |i: usize| format!("line {i:04} {}", "x".repeat(200));
        let burst: Vec<String> = (0..LINES).map(line).collect();
        alice.send(&burst.join("\n"));

        wait_until_full(&stalled);
        let bob_port = bob.port;
        bob.signal("KILL");
        bob.wait();
        let mut written = String::new();
        std::io::Read::read_to_string(&mut stalled, &mut written).unwrap();
        let written: Vec<&str> = written.lines().collect();
        let expected: Vec<String> = burst.iter().map(|text| format!("alice: {text}")).collect();
        assert!(
            written.len() < LINES / 2,
            "the stall came too late to test anything"
        );
        assert_eq!(written, expected[..written.len()], "in order, none skipped");

        let mut bob = world.restart("bob", bob_port, alice.port, &alice_fp);
        bob.expect(Stream::Stdout, &format!("alice: {}", line(LINES - 1)));
        let shown: Vec<&str> = bob
            .lines_on(Stream::Stdout)
            .into_iter()
            .filter(|l| l.starts_with("alice: "))
            .collect();
        // The restarted bob picks up no later than where the dead one stopped writing:
        // a line acknowledged but never written would leave a gap here.
        let first = expected
            .iter()
            .position(|l| l == shown[0])
            .expect("a line alice sent");
        assert!(
            first <= written.len(),
            "lines {}..{first} were acknowledged but never shown",
            written.len()
        );
        assert_eq!(shown, expected[first..], "the rest, in order, once each");
        alice.close_stdin();
        bob.close_stdin();
        assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
        assert!(
            !alice
                .lines_on(Stream::Stderr)
                .iter()
                .any(|l| l.contains("not delivered")),
            "{}",
            alice.transcript()
        );
    }
}
