//! Strangers on both sides of the connection: wrong pins, garbage, idle sockets,
//! and the identity files' own safety rules.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitStatus};

use common::{BIN, Peer, Stream, TIMEOUT, World};

/// Starts alice listening (dialling a port where nobody answers, so only her listener
/// is exercised) and bob dialling her. Each pins whatever it is given.
fn start_pair(world: &World, alice_pins: &str, bob_pins: &str) -> (Peer, Peer) {
    let mut alice = world.peer("alice", &["--peer-fingerprint", alice_pins]);
    alice.send("1");
    let alice_port = alice.port.to_string();
    let bob = world.peer(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", bob_pins],
    );
    (alice, bob)
}

#[test]
fn connector_rejects_a_listener_with_the_wrong_certificate() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let carol_fp = world.identity("carol");
    // bob expects carol at alice's port.
    let (mut alice, mut bob) = start_pair(&world, &bob_fp, &carol_fp);
    let error = bob.expect(Stream::Stderr, "chat: error:");
    assert!(error.contains("not the one we trust"), "{error}");
    assert!(error.contains(&format!("expected {carol_fp}")), "{error}");
    assert!(error.contains(&format!("presented {alice_fp}")), "{error}");
    assert_eq!(bob.wait().code(), Some(3));
    let rejected = alice.expect(Stream::Stderr, "Rejected connection from 127.0.0.1:");
    assert!(rejected.contains("alert"), "{rejected}");
    assert!(alice.is_running());
}

#[test]
fn listener_rejects_a_client_with_the_wrong_certificate_and_keeps_serving() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let carol_fp = world.identity("carol");
    // alice expects carol, but bob (who pins alice correctly) dials her.
    let (mut alice, mut bob) = start_pair(&world, &carol_fp, &alice_fp);
    let rejected = alice.expect(Stream::Stderr, "Rejected connection from 127.0.0.1:");
    assert!(
        rejected.contains(&format!("expected {carol_fp}")),
        "{rejected}"
    );
    assert!(
        rejected.contains(&format!("presented {bob_fp}")),
        "{rejected}"
    );
    let error = bob.expect(Stream::Stderr, "chat: error:");
    assert!(error.contains("refused our certificate"), "{error}");
    assert_eq!(bob.wait().code(), Some(3));

    // The real carol still gets through afterwards.
    let alice_port = alice.port.to_string();
    let mut carol = world.peer(
        "carol",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    carol.send("carol made it");
    alice.expect(Stream::Stdout, "carol: carol made it");
}

#[test]
fn a_certificate_named_like_the_peer_is_still_a_stranger() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let real_bob_fp = world.identity("bob");
    let impostor = World::new();
    impostor.identity("bob");
    let mut alice = world.peer("alice", &["--peer-fingerprint", &real_bob_fp]);
    // Alice dials a port where nobody answers, so that only her listener is judged
    // (dialling the impostor would end her run with a refusal of her own).
    alice.send("1");
    let alice_port = alice.port.to_string();
    let impostor_home = impostor.path().join("home");
    std::fs::create_dir_all(&impostor_home).unwrap();
    let fake_bob = Peer::start(
        &impostor_home,
        &[
            "--name".into(),
            "bob".into(),
            "--certs-dir".into(),
            impostor.certs().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--connect".into(),
            alice_port,
            "--peer-fingerprint".into(),
            alice_fp,
        ],
    );
    assert_ne!(fake_bob.fingerprint, real_bob_fp);
    let rejected = alice.expect(Stream::Stderr, "Rejected connection");
    assert!(
        rejected.contains(&format!("expected {real_bob_fp}")),
        "{rejected}"
    );
}

#[test]
fn garbage_from_a_plain_tcp_client_is_rejected_and_the_peer_still_connects() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &["--peer-fingerprint", &bob_fp]);
    alice.send("1"); // a target nobody answers on; alice only needs to listen here
    let mut garbage = TcpStream::connect(("127.0.0.1", alice.port)).unwrap();
    garbage.set_read_timeout(Some(TIMEOUT)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage")
        .unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    alice.expect(Stream::Stderr, "Rejected connection from 127.0.0.1:");
    assert!(alice.is_running());

    let alice_port = alice.port.to_string();
    let mut bob = world.peer(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    bob.send("through the noise");
    alice.expect(Stream::Stdout, "bob: through the noise");
}

#[test]
fn idle_connections_do_not_keep_the_real_peer_out() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &["--peer-fingerprint", &bob_fp]);
    alice.send("1");
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", alice.port)).unwrap())
        .collect();
    let alice_port = alice.port.to_string();
    let mut bob = world.peer(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    bob.send("not blocked");
    // Arrives while the idle sockets are still open, long before their 10 s timeout.
    alice.expect(Stream::Stdout, "bob: not blocked");
    assert!(idle.iter().all(|socket| socket.peer_addr().is_ok()));
    drop(idle);
}

#[test]
fn fingerprint_matches_openssl() {
    let world = World::new();
    let fingerprint = world.identity("alice");
    let certificate = world.certs().join("alice.crt");
    let ours = Command::new(BIN)
        .arg("fingerprint")
        .arg(&certificate)
        .output()
        .unwrap();
    assert!(ours.status.success());
    assert_eq!(String::from_utf8(ours.stdout).unwrap().trim(), fingerprint);
    let Ok(openssl) = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&certificate)
        .output()
    else {
        println!("SKIPPED openssl comparison: the openssl command is not installed");
        return;
    };
    let text = String::from_utf8(openssl.stdout).unwrap();
    let hex = text
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(hex, fingerprint);
}

#[test]
fn certs_refuses_to_overwrite_and_protects_the_key() {
    let world = World::new();
    let first = world.identity("alice");
    let key = world.certs().join("alice.key");
    let (_, exposure) = chat::platform::open_secret(&key, chat::platform::Access::Read).unwrap();
    assert_eq!(exposure, None);
    let again = Command::new(BIN)
        .args(["certs", "--name", "alice", "--dir"])
        .arg(world.certs())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(world.identity_fingerprint("alice"), first);
    let forced = Command::new(BIN)
        .args(["certs", "--force", "--name", "alice", "--dir"])
        .arg(world.certs())
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(world.identity_fingerprint("alice"), first);
}

#[test]
#[cfg(unix)]
fn a_key_readable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    world.identity("alice");
    let key = world.certs().join("alice.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut alice = Peer::spawn(
        world.path(),
        &[
            "--name".into(),
            "alice".into(),
            "--certs-dir".into(),
            world.certs().display().to_string(),
            "--connect".into(),
            "9".into(),
            "--peer-fingerprint".into(),
            "ab".repeat(32),
        ],
    );
    let error = alice.expect(Stream::Stderr, "too open");
    assert!(error.contains("chmod 600"), "{error}");
    assert_eq!(alice.wait().code(), Some(1));
}

/// `chat --cert FILE --key FILE`, run until it exits, and how it exited.
fn run_with_files(world: &World, certificate: &Path, key: &Path) -> (Peer, ExitStatus) {
    let mut peer = Peer::spawn(
        world.path(),
        &[
            "--cert".into(),
            certificate.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--connect".into(),
            "9".into(),
            "--peer-fingerprint".into(),
            "ab".repeat(32),
        ],
    );
    let status = peer.wait();
    (peer, status)
}

/// With `--cert` and `--key` in different folders, `known_peers` and the hash cache
/// live beside the certificate: someone who can write that folder could swap the
/// certificate and choose whom `--peer` trusts, so it is checked as the key's is.
#[test]
#[cfg(unix)]
fn a_certificate_in_a_folder_others_can_write_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    world.identity("alice");
    let shared = world.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let certificate = shared.join("alice.crt");
    std::fs::copy(world.certs().join("alice.crt"), &certificate).unwrap();
    let (mut alice, status) =
        run_with_files(&world, &certificate, &world.certs().join("alice.key"));
    assert_eq!(status.code(), Some(1), "{}", alice.transcript());
    let error = alice.expect(Stream::Stderr, "chat: error:");
    assert!(
        error.contains(&format!(
            "for the folder '{}' are too open",
            shared.display()
        )),
        "{error}"
    );
    assert!(error.contains("chmod go-w"), "{error}");
    assert!(
        alice.lines_on(Stream::Stdout).is_empty(),
        "{}",
        alice.transcript()
    );
}

/// A certificate that is not the key's is refused before its fingerprint is shown:
/// it would be read out as ours, and no handshake could ever prove it.
#[test]
fn a_certificate_that_is_not_the_keys_is_refused_naming_both_files() {
    let world = World::new();
    world.identity("alice");
    world.identity("bob");
    let certificate = world.certs().join("bob.crt");
    let key = world.certs().join("alice.key");
    let (mut alice, status) = run_with_files(&world, &certificate, &key);
    assert_eq!(status.code(), Some(1), "{}", alice.transcript());
    let error = alice.expect(Stream::Stderr, "chat: error:");
    assert!(
        error.contains("does not belong to the private key"),
        "{error}"
    );
    assert!(
        error.contains(&certificate.display().to_string()),
        "{error}"
    );
    assert!(error.contains(&key.display().to_string()), "{error}");
    assert!(
        alice.lines_on(Stream::Stdout).is_empty(),
        "{}",
        alice.transcript()
    );
}

#[test]
fn bad_command_line_values_are_usage_errors() {
    for (flag, value, message) in [
        ("--peer-fingerprint", "", "empty"),
        ("--peer-fingerprint", "abcd", "64"),
        ("--connect", "70000", "port"),
        ("--listen", "nowhere", "HOST:PORT"),
    ] {
        let output = Command::new(BIN)
            .args([flag, value, "--name", "x"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(message),
            "{stderr}"
        );
    }
}

#[test]
fn tls_1_2_is_refused() {
    let world = World::new();
    let bob_fp = world.identity("bob");
    let mut alice = world.peer("alice", &["--peer-fingerprint", &bob_fp]);
    alice.send("1");
    let connect = format!("127.0.0.1:{}", alice.port);
    let Ok(output) = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect", &connect])
        .stdin(std::process::Stdio::null())
        .output()
    else {
        println!("SKIPPED TLS 1.2 refusal check: the openssl command is not installed");
        return;
    };
    assert!(
        !output.status.success(),
        "openssl completed a TLS 1.2 handshake"
    );
    let rejected = alice.expect(Stream::Stderr, "Rejected connection");
    assert!(rejected.to_lowercase().contains("version"), "{rejected}");
}

#[test]
fn a_file_without_a_certificate_is_named_as_such() {
    let world = World::new();
    let not_a_certificate = world.path().join("passwd");
    std::fs::write(&not_a_certificate, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let output = Command::new(BIN)
        .arg("fingerprint")
        .arg(&not_a_certificate)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("passwd: holds no certificate (a PEM block that starts with -----BEGIN CERTIFICATE-----)"),
        "{stderr}"
    );
    assert!(!stderr.contains("no items found"), "{stderr}");
}
