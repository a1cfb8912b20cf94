//! Known peers: a first session saves each side's pin, `--peer NAME` uses it with
//! no fingerprint typed, and a changed certificate is refused, loudly.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::home::Home;
use common::{BIN, Peer, Stream, World};

/// alice, asked for the port, and bob, dialling her, meet, exchange a line each,
/// and leave. `alice_trust` and `bob_trust` say how each pins the other.
fn session(alice: &Home, alice_trust: &[&str], bob: &Home, bob_trust: &[&str]) -> (Peer, Peer) {
    let mut a = alice.start(alice_trust);
    let port = a.port.to_string();
    let mut bob_args = vec!["--connect", &port];
    bob_args.extend_from_slice(bob_trust);
    let mut b = bob.start(&bob_args);
    a.send(&b.port.to_string());
    a.expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    b.send("hello alice");
    a.expect(Stream::Stdout, "bob: hello alice");
    a.send("hello bob");
    b.expect(Stream::Stdout, "alice: hello bob");
    (a, b)
}

fn leave(mut peer: Peer) {
    peer.close_stdin();
    assert!(peer.wait().success(), "{}", peer.transcript());
}

/// A first session pinned by fingerprint, which saves each side in the other's file.
fn first_meeting(world: &World) -> (Home, Home, String, String) {
    let alice = Home::new(world, "alice");
    let bob = Home::new(world, "bob");
    let alice_fp = alice.make_identity(false);
    let bob_fp = bob.make_identity(false);
    let (mut a, mut b) = session(
        &alice,
        &["--peer-fingerprint", &bob_fp],
        &bob,
        &["--peer-fingerprint", &alice_fp],
    );
    let saved = |fp: &str| {
        let groups: Vec<&str> = (0..4).map(|i| &fp[i * 4..i * 4 + 4]).collect();
        format!("(sha256 {} …) to known peers", groups.join(" "))
    };
    let line = a.expect_seen(Stream::Stderr, "Saved bob ");
    assert!(line.contains(&saved(&bob_fp)), "{line}");
    assert!(line.ends_with("next time: chat --peer bob"), "{line}");
    let line = b.expect_seen(Stream::Stderr, "Saved alice ");
    assert!(line.contains(&saved(&alice_fp)), "{line}");
    a.close_stdin();
    leave(b);
    assert!(a.wait().success(), "{}", a.transcript());
    (alice, bob, alice_fp, bob_fp)
}

fn entry_line(path: &Path, name: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not in {}", path.display()))
        .to_owned()
}

#[test]
fn a_saved_peer_needs_no_fingerprint() {
    let world = World::new();
    let (alice, bob, alice_fp, bob_fp) = first_meeting(&world);

    let saved = entry_line(&alice.known_peers(), "bob");
    let fields: Vec<&str> = saved.split(' ').collect();
    assert_eq!(fields.len(), 4, "{saved}");
    assert_eq!(fields[1], bob_fp);
    assert_eq!(fields[2], fields[3], "first and last seen start equal");
    assert!(entry_line(&bob.known_peers(), "alice").contains(&alice_fp));
    let (_, exposure) =
        chat::platform::open_secret(&alice.known_peers(), chat::platform::Access::Read).unwrap();
    assert_eq!(exposure, None);

    let (mut a, b) = session(&alice, &["--peer", "bob"], &bob, &["--peer", "alice"]);
    a.expect_seen(Stream::Stderr, "Trusting bob as saved in known peers");
    a.close_stdin();
    leave(b);
    assert!(a.wait().success(), "{}", a.transcript());
    assert!(
        !a.transcript().contains("Saved bob"),
        "saved again: {}",
        a.transcript()
    );

    let listed = alice.tool(&["peers"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("bob  sha256 "), "{listed}");
}

/// The side whose peer made a new identity refuses it with the ssh-style warning.
/// Run once with alice refusing bob and once with bob refusing alice.
fn refuses_a_changed_certificate(changed: &str) {
    let world = World::new();
    let (alice, bob, alice_fp, bob_fp) = first_meeting(&world);
    let (changer, keeper, old) = if changed == "bob" {
        (&bob, &alice, bob_fp.clone())
    } else {
        (&alice, &bob, alice_fp.clone())
    };
    let new = changer.make_identity(true);

    // The changer listens (dialling a port where nothing listens, so that it
    // neither refuses nor is refused), and the keeper dials it.
    let keeper_fp = if changed == "bob" { &alice_fp } else { &bob_fp };
    let changer_peer = changer.start(&["--peer-fingerprint", keeper_fp, "--connect", "9"]);
    let changer_port = changer_peer.port.to_string();
    let mut keeper_peer = keeper.start(&["--peer", changer.name, "--connect", &changer_port]);

    let status = keeper_peer.wait();
    assert_eq!(status.code(), Some(3), "{}", keeper_peer.transcript());
    let stderr = keeper_peer.lines_on(Stream::Stderr).join("\n");
    let expected = format!(
        "WARNING: THE CERTIFICATE OF {} HAS CHANGED!",
        changed.to_uppercase()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    let grouped = |fp: &str| {
        let groups: Vec<&str> = (0..16).map(|i| &fp[i * 4..i * 4 + 4]).collect();
        format!("  sha256 {}", groups.join(" "))
    };
    assert!(stderr.contains(&grouped(&old)), "{stderr}");
    assert!(stderr.contains(&grouped(&new)), "{stderr}");
    assert!(
        stderr.contains(&format!("chat forget {changed}")),
        "{stderr}"
    );
    assert!(!stderr.contains("Connected to"), "{stderr}");
    // Never re-pinned: the file still holds the old fingerprint.
    assert!(entry_line(&keeper.known_peers(), changed).contains(&old));
}

#[test]
fn alice_refuses_bob_with_a_changed_certificate() {
    refuses_a_changed_certificate("bob");
}

#[test]
fn bob_refuses_alice_with_a_changed_certificate() {
    refuses_a_changed_certificate("alice");
}

#[test]
fn a_corrupt_line_is_reported_with_its_number() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    alice.make_identity(false);
    let fp = "ab".repeat(32);
    std::fs::write(
        alice.known_peers(),
        format!("# peers\nbob {fp} 2026-12-02T05:30:00Z\n"),
    )
    .unwrap();
    let stderr = alice.refused_at_start(&["--peer", "bob", "--connect", "9"]);
    assert!(
        stderr.contains("known_peers, line 2: expected 4 or 5 fields"),
        "{stderr}"
    );
}

/// A file saved by an editor that starts UTF-8 with a byte-order mark (Notepad) and
/// ends lines with CR LF is read as written, and rewritten without the mark.
#[test]
fn a_file_saved_with_a_byte_order_mark_is_read() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    alice.make_identity(false);
    let at = "2026-12-02T05:30:00Z";
    let (carol, dave) = ("ab".repeat(32), "cd".repeat(32));
    let header =
        "# Peers met by the identities in this folder: NAME FINGERPRINT FIRST-SEEN LAST-SEEN";
    std::fs::write(
        alice.known_peers(),
        format!("\u{feff}{header}\r\ncarol {carol} {at} {at}\r\ndave {dave} {at} {at}\r\n"),
    )
    .unwrap();
    let listed = alice.tool(&["peers"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("carol  sha256 abab") && listed.contains("dave  sha256 cdcd"),
        "{listed}"
    );

    let forgot = alice.tool(&["forget", "carol"]);
    assert!(forgot.status.success(), "{forgot:?}");
    let left = std::fs::read_to_string(alice.known_peers()).unwrap();
    assert_eq!(left, format!("{header}\ndave {dave} {at} {at}\n"));
}

#[test]
fn a_file_others_may_change_is_refused() {
    let world = World::new();
    let (alice, ..) = first_meeting(&world);
    let chmod = Command::new("chmod")
        .arg("g+w")
        .arg(alice.known_peers())
        .status()
        .unwrap();
    assert!(chmod.success());
    let stderr = alice.refused_at_start(&["--peer", "bob", "--connect", "9"]);
    assert!(
        stderr.contains("let others change whom you trust"),
        "{stderr}"
    );
    assert!(stderr.contains("chmod go-w"), "{stderr}");
}

#[test]
fn an_unknown_name_lists_the_known_ones_and_forget_removes_one() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    alice.make_identity(false);
    let at = "2026-12-02T05:30:00Z";
    std::fs::write(
        alice.known_peers(),
        format!(
            "carol {} {at} {at}\ndave {} {at} {at}\n",
            "ab".repeat(32),
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let stderr = alice.refused_at_start(&["--peer", "bob", "--connect", "9"]);
    assert!(stderr.contains("no peer called \"bob\""), "{stderr}");
    assert!(stderr.contains("it lists carol, dave"), "{stderr}");
    assert!(
        stderr.contains("to meet someone new, run chat --invite and have them run chat --join"),
        "{stderr}"
    );

    let forgot = alice.tool(&["forget", "carol"]);
    assert!(forgot.status.success(), "{forgot:?}");
    let left = std::fs::read_to_string(alice.known_peers()).unwrap();
    assert!(!left.contains("carol") && left.contains("dave "), "{left}");
    let again = alice.tool(&["forget", "carol"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
}

/// `chat forget`, killed with SIGKILL at varying moments while it rewrites a large
/// file, leaves either the old file or the new one, whole, every time.
#[test]
fn a_write_killed_midway_leaves_the_old_file_or_the_new_one() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    alice.make_identity(false);
    let at = "2026-12-02T05:30:00Z";
    let peers: String = (0..30_000u32)
        .map(|n| format!("peer{n} {:064x} {at} {at}\n", n))
        .collect();
    std::fs::write(alice.known_peers(), &peers).unwrap();
    let mut outcomes = [0usize; 2];
    for round in 0..20u64 {
        let before = std::fs::read_to_string(alice.known_peers()).unwrap();
        let victim = format!("peer{round}");
        let mut forget = Command::new(BIN)
            .args(["forget", &victim, "--dir"])
            .arg(&alice.certs)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round * 30));
        let _ = forget.kill();
        let _ = forget.wait();
        let after = std::fs::read_to_string(alice.known_peers()).unwrap();
        let expected = before.replace(&format!("{victim} {:064x} {at} {at}\n", round), "");
        if after == before {
            outcomes[0] += 1;
        } else {
            assert_eq!(
                after, expected,
                "round {round}: neither the old file nor the new"
            );
            outcomes[1] += 1;
        }
    }
    eprintln!(
        "killed before the rename: {}, after: {}",
        outcomes[0], outcomes[1]
    );
}
