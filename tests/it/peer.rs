//! Two real `chat` processes on 127.0.0.1: lines both ways, clean endings, exit codes.

use crate::common;

use common::{Pair, Peer, Stream, World};

#[test]
fn hundreds_of_lines_arrive_in_order_both_ways() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    const LINES: usize = 300;
    for i in 0..LINES {
        alice.send(&format!("from alice {i}"));
        bob.send(&format!("from bob {i} — ünïcödé"));
    }
    for i in 0..LINES {
        let line = bob.expect_where(Stream::Stdout, "a line from alice", |line| {
            line.starts_with("alice: ")
        });
        assert_eq!(line, format!("alice: from alice {i}"), "out of order");
        let line = alice.expect_where(Stream::Stdout, "a line from bob", |line| {
            line.starts_with("bob: ")
        });
        assert_eq!(line, format!("bob: from bob {i} — ünïcödé"), "out of order");
    }
    alice.close_stdin();
    bob.expect(Stream::Stderr, "alice has nothing more to say");
    bob.close_stdin();
    assert!(alice.wait().success(), "{}", alice.transcript());
    assert!(bob.wait().success(), "{}", bob.transcript());
    for peer in [&alice, &bob] {
        let received = peer
            .lines_on(Stream::Stdout)
            .into_iter()
            .filter(|line| line.starts_with("alice: ") || line.starts_with("bob: "))
            .count();
        assert_eq!(received, LINES, "each line shown exactly once");
    }
}

#[test]
fn both_directions_negotiate_the_post_quantum_hybrid() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&["--verbose"]);
    for peer in [&mut alice, &mut bob] {
        for way in ["outbound", "inbound"] {
            let line = peer.expect_seen(Stream::Stderr, &format!("[verbose] {way} TLS:"));
            assert!(line.contains("TLSv1_3"), "{line}");
            assert!(line.ends_with("X25519MLKEM768"), "{line}");
        }
    }
}

#[test]
fn end_of_input_delivers_queued_lines_then_exits_when_peer_is_done() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    alice.send("last words");
    alice.close_stdin();
    bob.expect(Stream::Stdout, "alice: last words");
    bob.expect(Stream::Stderr, "alice has nothing more to say");
    assert!(alice.is_running(), "alice waits for bob to finish too");
    bob.send("reply after alice finished");
    alice.expect(Stream::Stdout, "bob: reply after alice finished");
    bob.close_stdin();
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
}

#[test]
fn quit_closes_both_directions_and_the_peer_exits_too() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    alice.send("bye");
    bob.expect(Stream::Stdout, "alice: bye");
    alice.send("/quit");
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    bob.expect(Stream::Stderr, "The peer closed the connection");
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
}

#[test]
fn interrupt_quits_with_status_130() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    bob.signal("INT");
    assert_eq!(bob.wait().code(), Some(130), "{}", bob.transcript());
    alice.expect(Stream::Stderr, "The peer closed the connection");
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
}

#[test]
fn lines_typed_before_the_peer_is_up_are_queued_and_delivered() {
    let world = World::new();
    let (mut alice, mut bob) = alice_asked_for_the_port_and_bob_dialling(&world);
    for i in 0..5 {
        bob.send(&format!("early {i}"));
    }
    bob.expect(Stream::Stderr, "queued");
    alice.send(&bob.port.to_string());
    for i in 0..5 {
        alice.expect(Stream::Stdout, &format!("bob: early {i}"));
    }
}

#[test]
fn the_connector_waits_for_a_peer_that_is_not_up_yet() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    // Reserve a port nobody listens on yet, then start bob's listener on it later.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bob_port = free.local_addr().unwrap().port().to_string();
    drop(free);
    let mut alice = world.peer(
        "alice",
        &["--connect", &bob_port, "--peer-fingerprint", &bob_fp],
    );
    alice.expect(Stream::Stderr, "Waiting for the peer at 127.0.0.1:");
    alice.send("sent while waiting");
    let alice_port = alice.port.to_string();
    let bob_home = world.path().join("bob-home");
    std::fs::create_dir_all(&bob_home).unwrap();
    let mut bob = common::Peer::start(
        &bob_home,
        &[
            "--name".into(),
            "bob".into(),
            "--certs-dir".into(),
            world.certs().display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{bob_port}"),
            "--connect".into(),
            alice_port,
            "--peer-fingerprint".into(),
            alice_fp,
        ],
    );
    bob.expect(Stream::Stdout, "alice: sent while waiting");
}

#[test]
fn prompts_for_target_and_fingerprint_when_not_given() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &[]);
    let mut bob = world.peer("bob", &[]);
    alice.send(&bob.port.to_string());
    bob.send(&alice.port.to_string());
    alice.send(&bob_fp.to_uppercase());
    bob.send(&format!("sha256:{alice_fp}"));
    for peer in [&mut alice, &mut bob] {
        peer.expect(Stream::Stdout, "Enter the target port number: ");
        peer.expect(Stream::Stdout, "Enter the peer's fingerprint: ");
    }
    alice.send("hi bob");
    bob.expect(Stream::Stdout, "alice: hi bob");
}

#[test]
fn a_malformed_typed_fingerprint_is_a_clear_error() {
    let world = World::new();
    world.identity("alice");
    let mut alice = world.peer("alice", &["--connect", "9"]);
    alice.send("not-a-fingerprint");
    alice.expect(Stream::Stderr, "is not a hex digit");
    assert_eq!(alice.wait().code(), Some(2));
}

#[test]
fn escape_sequences_reach_the_other_screen_neutralised() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    bob.send("\x1b[2J\x1b]0;owned\x07 clear \u{202e}txet");
    let line = alice.expect(Stream::Stdout, "bob: ");
    assert_eq!(line, "bob: \\x1b[2J\\x1b]0;owned\\x07 clear \\u{202e}txet");
    alice.send("/quit");
    alice.wait();
    for (_, line) in &alice.history {
        assert!(
            !line.contains('\x1b'),
            "raw escape reached the screen: {line:?}"
        );
    }
}

#[test]
fn identity_is_created_on_first_run_and_reused() {
    let world = World::new();
    let mut first = world.peer(
        "erin",
        &["--connect", "9", "--peer-fingerprint", &"ab".repeat(32)],
    );
    first.expect(Stream::Stderr, "Created identity erin");
    let created = first.fingerprint.clone();
    drop(first);
    let second = world.peer(
        "erin",
        &["--connect", "9", "--peer-fingerprint", &"ab".repeat(32)],
    );
    assert_eq!(second.fingerprint, created);
    assert!(
        !second
            .history
            .iter()
            .any(|(_, line)| line.contains("Created identity"))
    );
}

#[test]
fn a_peer_still_at_its_prompts_is_waited_for_without_false_alarms() {
    let world = World::new();
    let (mut alice, mut bob) = alice_asked_for_the_port_and_bob_dialling(&world);
    // Alice's listening socket takes the connection, but she is still at her prompt.
    let waiting = bob.expect(Stream::Stderr, "Waiting for the peer at ");
    assert!(
        waiting.contains("the connection was accepted, but the peer has not answered within 10s; it may still be at its prompts"),
        "{waiting}"
    );
    alice.send(&bob.port.to_string());
    alice.expect_seen(Stream::Stderr, "bob connected from 127.0.0.1:");
    bob.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    alice.send("made it");
    bob.expect(Stream::Stdout, "alice: made it");
    alice.close_stdin();
    bob.close_stdin();
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
    alice.drain();
    let alarms: Vec<_> = (alice.lines_on(Stream::Stderr).into_iter())
        .filter(|line| line.starts_with("Rejected connection"))
        .collect();
    assert!(alarms.is_empty(), "{}", alice.transcript());
}

#[test]
fn both_sides_show_the_same_safety_number_and_a_grouped_fingerprint() {
    let Pair {
        mut alice, mut bob, ..
    } = Pair::connect(&[]);
    let alice_number = alice.expect_seen(Stream::Stderr, "Safety number: ");
    let bob_number = bob.expect_seen(Stream::Stderr, "Safety number: ");
    assert_eq!(alice_number, bob_number);
    let grouped = alice.expect_seen(Stream::Stderr, "Your fingerprint, to read out: ");
    let digits: String = grouped["Your fingerprint, to read out: ".len()..]
        .split(' ')
        .collect();
    assert_eq!(digits, alice.fingerprint);
}

/// Starts `chat --name zed` in `folder` with `env`, and returns the fingerprint it
/// prints; the process is stopped after that.
#[cfg(target_os = "linux")]
fn fingerprint_started_in(folder: &std::path::Path, env: &[(&str, &std::path::Path)]) -> String {
    use std::io::BufRead;
    std::fs::create_dir_all(folder).unwrap();
    let mut command = std::process::Command::new(common::BIN);
    command
        .args(["--name", "zed", "--listen", "127.0.0.1:0", "--connect", "9"])
        .args(["--peer-fingerprint", &"ab".repeat(32)])
        .current_dir(folder)
        .env_remove("CHAT_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    first
        .trim()
        .strip_prefix("Fingerprint: ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_owned()
}

#[test]
// The per-user folder checked here is where Linux keeps it.
#[cfg(target_os = "linux")]
fn one_identity_per_user_wherever_chat_is_started() {
    let world = World::new();
    let home = world.path().join("home");
    let here = fingerprint_started_in(&world.path().join("a"), &[("HOME", &home)]);
    let there = fingerprint_started_in(&world.path().join("b/c"), &[("HOME", &home)]);
    assert_eq!(here, there);
    let folder = home.join(".config/chat");
    assert!(folder.join("zed.crt").is_file() && folder.join("zed.key").is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(!world.path().join("a/certs").exists());

    let elsewhere = world.path().join("chat-home");
    let own = fingerprint_started_in(
        &world.path().join("a"),
        &[("HOME", &home), ("CHAT_HOME", &elsewhere)],
    );
    assert_ne!(own, here, "CHAT_HOME holds an identity of its own");
    assert!(elsewhere.join("zed.crt").is_file());
}

/// alice, started first, asks for the port to dial; bob is told alice's port and
/// starts dialling it at once.
fn alice_asked_for_the_port_and_bob_dialling(world: &World) -> (Peer, Peer) {
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let alice = world.peer("alice", &["--peer-fingerprint", &bob_fp]);
    let alice_port = alice.port.to_string();
    let bob = world.peer(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    (alice, bob)
}
