//! Reaching a peer over iroh through a real relay (`examples/relay.rs`): the pinned
//! TLS link runs inside one QUIC stream, and an endpoint that is not the expected one
//! is turned away before any TLS.

use std::time::Duration;

use chat::frame::Frame;
use chat::identity::{self, Identity, IdentityFiles};
use chat::link::handshake::{self, Greeting, Link};
use chat::link::iroh::{self as transport, Admit, Node, Relays, Settings};
use chat::link::rendezvous::rendezvous_key;
use chat::link::route::{Path, Route};
use chat::link::stream::Lingering;
use chat::link::tls;
use chat::link::wake::{self, WakeUps};
use chat::pairing::exchange::Whereabouts;
use iroh::SecretKey;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::common::home::Home;
use crate::common::relay::Relay;
use crate::common::two_homes::{RELAY_IP, Router, TwoHomes};
use crate::common::{Peer, Stream, TIMEOUT, World, pseudo_random};

fn settings(relay: &Relay) -> Settings {
    let ca = CertificateDer::from_pem_file(&relay.ca_file).expect("the relay's certificate");
    Settings {
        relays: Relays::Own(vec![relay.url.parse().expect("a relay URL")]),
        relay_roots: vec![ca],
        mdns: false,
    }
}

fn identity(dir: &std::path::Path, name: &str) -> Identity {
    identity::create(&IdentityFiles::named(dir, name), name, false).unwrap()
}

fn iroh_route(peer: iroh::EndpointId) -> Route {
    Route::Iroh {
        peer,
        path: Path::Unknown,
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// One line each way over `link`, as the session's first frames would go.
async fn say(link: &mut Link, text: &str) {
    let frame = Frame::Message {
        seq: 1,
        text: text.into(),
    };
    link.connection.write_frame(&frame).await.unwrap();
}

async fn heard(link: &mut Link) -> String {
    match link.connection.read_frame().await.unwrap() {
        Some(Frame::Message { text, .. }) => text,
        other => panic!("expected a line, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_link_runs_in_a_stream_that_met_through_the_relay() {
    let relay = Relay::start();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (identity(dir.path(), "alice"), identity(dir.path(), "bob"));
    let settings = settings(&relay);
    let alice_end = within(
        "alice's endpoint",
        transport::bind(SecretKey::generate(), &settings, true),
    )
    .await
    .unwrap();
    let bob_end = within(
        "bob's endpoint",
        transport::bind(SecretKey::generate(), &settings, false),
    )
    .await
    .unwrap();
    let (alice_id, bob_id) = (alice_end.id(), bob_end.id());

    // Bob knows only alice's endpoint ID and the relay: no address of hers.
    let relays = settings.relay_urls();
    let lingering = Lingering::default();
    let acceptor = TlsAcceptor::from(tls::server_config(&alice, bob.fingerprint, true).unwrap());
    let connector = TlsConnector::from(tls::client_config(&bob, alice.fingerprint, true).unwrap());
    let accepting = async {
        let (stream, from) = transport::accept(&alice_end, &Admit::Only(bob_id), &lingering)
            .await
            .unwrap()
            .expect("bob's endpoint is admitted");
        assert_eq!(from, bob_id);
        handshake::accept(
            &acceptor,
            stream,
            iroh_route(bob_id),
            &Greeting::new("alice".into()),
            None,
            |_| true,
        )
        .await
        .unwrap()
    };
    let dialing = async {
        let stream = transport::dial(&bob_end, alice_id, &relays, &lingering)
            .await
            .unwrap();
        handshake::connect(
            &connector,
            stream,
            iroh_route(alice_id),
            &Greeting::new("bob".into()),
            None,
        )
        .await
        .unwrap()
    };
    let (mut at_alice, mut at_bob) =
        within("the link", async { tokio::join!(accepting, dialing) }).await;
    assert_eq!(at_alice.peer_fingerprint, bob.fingerprint);
    assert_eq!(at_bob.peer_fingerprint, alice.fingerprint);
    assert_eq!(at_bob.peer_name, "alice");

    say(&mut at_bob, "hello through the relay").await;
    say(&mut at_alice, "and back").await;
    assert_eq!(
        within("bob's line", heard(&mut at_alice)).await,
        "hello through the relay"
    );
    assert_eq!(within("alice's line", heard(&mut at_bob)).await, "and back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_the_peers_is_turned_away_before_tls() {
    let relay = Relay::start();
    let settings = settings(&relay);
    let alice_end = within(
        "alice's endpoint",
        transport::bind(SecretKey::generate(), &settings, true),
    )
    .await
    .unwrap();
    let stranger_end = within(
        "a stranger's endpoint",
        transport::bind(SecretKey::generate(), &settings, false),
    )
    .await
    .unwrap();
    let expected = SecretKey::generate().public();
    let relays = settings.relay_urls();
    let lingering = Lingering::default();
    let alice_id = alice_end.id();
    let accepting =
        async { transport::accept(&alice_end, &Admit::Only(expected), &lingering).await };
    let dialing = async {
        let mut stream = transport::dial(&stranger_end, alice_id, &relays, &lingering).await?;
        // A ClientHello's worth of bytes, then the answer: the connection is closed.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
            .await;
        let mut answer = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
        Ok::<_, chat::link::iroh::IrohError>(read)
    };
    let (accepted, dialed) =
        within("the refusal", async { tokio::join!(accepting, dialing) }).await;
    assert!(
        matches!(accepted, Ok(None)),
        "a stranger's connection was let through: {accepted:?}"
    );
    match dialed {
        Err(_) | Ok(Ok(Err(_))) | Ok(Ok(Ok(0))) => {}
        other => panic!("the stranger's stream should have been closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_peers_endpoint_can_wake_a_dialer() {
    let relay = Relay::start();
    let settings = settings(&relay);
    let node = |secret| async {
        let endpoint = within("an endpoint", transport::bind(secret, &settings, false))
            .await
            .unwrap();
        Node {
            endpoint,
            relays: settings.relay_urls(),
            lingering: Lingering::default(),
            opened: tokio::time::Instant::now(),
        }
    };
    let (dialer, peer, stranger) = (
        node(SecretKey::generate()).await,
        node(SecretKey::generate()).await,
        node(SecretKey::generate()).await,
    );
    dialer.endpoint.set_alpns(vec![wake::WAKE_ALPN.to_vec()]);
    let mut wake_ups = WakeUps::answer(dialer.endpoint.clone(), peer.endpoint.id());

    // A stranger's call is refused, and so counts for nothing.
    let refused = within(
        "the stranger's call",
        wake::call(&stranger, dialer.endpoint.id()),
    )
    .await;
    let refusal = refused
        .expect_err("a stranger's call is not taken")
        .to_string();
    assert!(refusal.contains("not expected"), "{refusal}");

    within("the peer's call", wake::call(&peer, dialer.endpoint.id()))
        .await
        .expect("the peer's call is taken");
    within("the wake-up", wake_ups.next()).await;
}

/// `chat` for `home` with the test relay and `extra`, and nothing that would make it TCP.
fn over_relay(home: &Home, relay: &Relay, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--name", home.name, "--certs-dir"]
        .map(String::from)
        .into();
    args.push(home.certs.display().to_string());
    args.extend(["--relay".into(), relay.url.clone()]);
    args.extend(["--relay-ca".into(), relay.ca_file.display().to_string()]);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// alice invites and bob joins with no address; both are then connected and paired.
fn pair_over_relay(relay: &Relay, alice: &Home, bob: &Home) -> (Peer, Peer) {
    let mut inviter = Peer::spawn(&alice.workdir, &over_relay(alice, relay, &["--invite"]));
    let code = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let command = inviter.expect(Stream::Stderr, "  chat --join");
    assert_eq!(
        command.trim().trim_end_matches('/'),
        format!("chat --join --relay {}", relay.url),
        "the joiner is told the relay, and no address"
    );
    inviter.expect(Stream::Stderr, "(then type the code at its prompt)");

    let mut joiner = Peer::spawn(&bob.workdir, &over_relay(bob, relay, &["--join"]));
    joiner.send(&code);
    for (peer, other) in [(&mut inviter, "bob"), (&mut joiner, "alice")] {
        let paired = peer.expect(Stream::Stderr, "Paired with ");
        assert!(
            paired.starts_with(&format!("Paired with {other} (sha256 ")),
            "{paired}"
        );
        expect_connected_over_iroh(peer, other);
    }
    (inviter, joiner)
}

/// Waits for the connection to `other`, which says its path. (Whether a direct
/// path follows depends on this machine's interfaces; the namespace tests, with
/// routers of their own, check hole punching.)
fn expect_connected_over_iroh(peer: &mut Peer, other: &str) {
    let connected = peer.expect(Stream::Stderr, &format!("Connected to {other} "));
    let path_said =
        connected.contains(" through relay 127.77.") || connected.contains(" directly at ");
    assert!(
        path_said && connected.ends_with("(one connection, both directions)"),
        "{connected}"
    );
}

/// Both type end of input and exit cleanly; their whole output, for checks.
fn finish(mut first: Peer, mut second: Peer) -> (Peer, Peer) {
    first.close_stdin();
    second.expect(Stream::Stderr, "has nothing more to say");
    second.close_stdin();
    assert!(first.wait().success(), "{}", first.transcript());
    assert!(second.wait().success(), "{}", second.transcript());
    (first, second)
}

#[test]
fn an_invite_and_a_join_with_no_address_meet_through_the_relay() {
    let relay = Relay::start();
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));
    let (mut inviter, mut joiner) = pair_over_relay(&relay, &alice, &bob);

    joiner.send("hello over iroh");
    inviter.expect(Stream::Stdout, "bob: hello over iroh");
    joiner.send("/status");
    joiner.expect(Stream::Stderr, "Status:");
    let status = joiner.expect(Stream::Stderr, "  alice: connected over iroh, ");
    assert!(status.contains(" ms"), "the round trip: {status}");
    inviter.send("and back");
    joiner.expect(Stream::Stdout, "alice: and back");

    let data = pseudo_random(3 << 20, 33);
    std::fs::write(alice.workdir.join("notes.bin"), &data).unwrap();
    inviter.send("transfer notes.bin");
    joiner.expect(Stream::Stderr, "Saved ./notes.bin (verified");
    inviter.expect(Stream::Stderr, "notes.bin delivered and verified by bob");
    assert_eq!(std::fs::read(bob.workdir.join("notes.bin")).unwrap(), data);
    finish(joiner, inviter);
}

#[test]
fn after_pairing_the_peers_name_is_all_either_side_types() {
    let relay = Relay::start();
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));
    let (inviter, joiner) = pair_over_relay(&relay, &alice, &bob);
    finish(joiner, inviter);
    for (home, other) in [(&alice, "bob"), (&bob, "alice")] {
        let saved = std::fs::read_to_string(home.known_peers()).unwrap();
        let line = saved
            .lines()
            .find(|line| line.starts_with(&format!("{other} ")))
            .unwrap_or_else(|| panic!("{other} is not saved: {saved}"));
        assert!(line.contains(" iroh:"), "{line}");
    }

    // Either may start first; the first one waits for the other.
    for (first, second) in [(&alice, &bob), (&bob, &alice)] {
        let mut first_peer = Peer::spawn(
            &first.workdir,
            &over_relay(first, &relay, &["--peer", second.name]),
        );
        first_peer.expect(
            Stream::Stderr,
            &format!(
                "Waiting for {} over iroh; it connects as soon as both sides run",
                second.name
            ),
        );
        let mut second_peer = Peer::spawn(
            &second.workdir,
            &over_relay(second, &relay, &["--peer", first.name]),
        );
        expect_connected_over_iroh(&mut first_peer, second.name);
        expect_connected_over_iroh(&mut second_peer, first.name);
        first_peer.send("again, by name");
        second_peer.expect(Stream::Stdout, &format!("{}: again, by name", first.name));
        finish(first_peer, second_peer);
    }
}

/// The two homes, or the reason to skip (printed).
fn two_homes(label: &str, routers: [Router; 2]) -> Option<TwoHomes> {
    let have = |tool: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if let Some(tool) = ["ip", "nft"].into_iter().find(|tool| !have(tool)) {
        println!("SKIPPED two-home test: `{tool}` is not installed");
        return None;
    }
    match TwoHomes::create(label, routers) {
        Ok(net) => Some(net),
        Err(reason) => {
            println!("SKIPPED two-home test: {reason}");
            None
        }
    }
}

/// alice in home 0 invites, bob in home 1 joins; both connected. The relay runs on
/// the bridge between the two routers.
fn pair_across(net: &TwoHomes, relay: &Relay, world: &World) -> (Peer, Peer, Home, Home) {
    let (alice, bob) = (Home::new(world, "alice"), Home::new(world, "bob"));
    let mut inviter = Peer::spawn_in(
        &net.in_home(0),
        &alice.workdir,
        &over_relay(&alice, relay, &["--invite"]),
    );
    let code = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let mut joiner = Peer::spawn_in(
        &net.in_home(1),
        &bob.workdir,
        &over_relay(&bob, relay, &["--join"]),
    );
    joiner.send(&code);
    for (peer, other) in [(&mut inviter, "bob"), (&mut joiner, "alice")] {
        peer.expect(Stream::Stderr, &format!("Paired with {other} (sha256 "));
    }
    (inviter, joiner, alice, bob)
}

/// What the two-home tests send each way, at once.
const EACH_WAY: usize = 64 << 20;

/// Lines both ways, shown once each, and `size` bytes each way, verified on disk.
fn exchange(alice: &mut Peer, bob: &mut Peer, homes: (&Home, &Home), size: usize) {
    for i in 0..5 {
        alice.send(&format!("from alice {i}"));
        bob.send(&format!("from bob {i}"));
    }
    for i in 0..5 {
        bob.expect(Stream::Stdout, &format!("alice: from alice {i}"));
        alice.expect(Stream::Stdout, &format!("bob: from bob {i}"));
    }
    let (to_bob, to_alice) = (pseudo_random(size, 41), pseudo_random(size, 42));
    std::fs::write(homes.0.workdir.join("to-bob.bin"), &to_bob).unwrap();
    std::fs::write(homes.1.workdir.join("to-alice.bin"), &to_alice).unwrap();
    alice.send("transfer to-bob.bin");
    bob.send("transfer to-alice.bin");
    bob.expect(Stream::Stderr, "Saved ./to-bob.bin (verified");
    alice.expect(Stream::Stderr, "Saved ./to-alice.bin (verified");
    assert_eq!(
        std::fs::read(homes.1.workdir.join("to-bob.bin")).unwrap(),
        to_bob
    );
    assert_eq!(
        std::fs::read(homes.0.workdir.join("to-alice.bin")).unwrap(),
        to_alice
    );
    for (peer, from) in [(&*alice, "bob"), (&*bob, "alice")] {
        let shown = peer.lines_on(Stream::Stdout);
        for i in 0..5 {
            let line = format!("{from}: from {from} {i}");
            assert_eq!(
                shown.iter().filter(|seen| **seen == line).count(),
                1,
                "{line}"
            );
        }
    }
}

#[test]
fn two_homes_behind_home_routers_meet_by_code_and_punch_a_direct_path() {
    let Some(net) = two_homes("d", [Router::Home, Router::Home]) else {
        return;
    };
    let relay = net.start_relay();
    let world = World::new();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let connected = peer.expect(Stream::Stderr, &format!("Connected to {other} "));
        if !connected.contains(" directly at 198.51.100.") {
            assert!(
                connected.contains(" through relay 198.51.100.1:"),
                "{connected}"
            );
            let direct = peer.expect_within(
                Duration::from_secs(5),
                Stream::Stderr,
                "a direct path within 5 s",
                |line| line.starts_with(&format!("Direct path to {other} at 198.51.100.")),
            );
            assert!(direct.contains("(hole punched after "), "{direct}");
        }
    }
    exchange(&mut alice, &mut bob, (&alice_home, &bob_home), EACH_WAY);
    finish(alice, bob);
}

/// A symmetric NAT on either side, or on both, defeats hole punching: the session
/// stays on the relay and carries everything there.
#[test]
fn behind_a_symmetric_nat_the_session_stays_on_the_relay() {
    for (label, routers) in [
        ("s", [Router::Home, Router::Symmetric]),
        ("y", [Router::Symmetric, Router::Symmetric]),
    ] {
        let Some(net) = two_homes(label, routers) else {
            return;
        };
        let relay = net.start_relay();
        let world = World::new();
        let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
        for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
            let connected = peer.expect(Stream::Stderr, &format!("Connected to {other} "));
            assert!(
                connected.contains(" through relay 198.51.100.1:"),
                "{connected}"
            );
        }
        exchange(&mut alice, &mut bob, (&alice_home, &bob_home), EACH_WAY);
        for peer in [&alice, &bob] {
            let direct = (peer.lines_on(Stream::Stderr).into_iter())
                .find(|line| line.starts_with("Direct path to "));
            assert_eq!(
                direct, None,
                "{routers:?}: a symmetric NAT was punched through"
            );
        }
        finish(alice, bob);
    }
}

#[test]
fn a_joiner_that_knows_more_relays_finds_the_inviter_on_any_of_them() {
    let (first, second) = (Relay::start(), Relay::start());
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));
    // alice uses only the second relay; bob knows both and is not told which.
    let mut inviter = Peer::spawn(&alice.workdir, &over_relay(&alice, &second, &["--invite"]));
    let code = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let mut joiner_args = over_relay(&bob, &first, &["--join"]);
    joiner_args.extend(["--relay".into(), second.url.clone()]);
    joiner_args.extend(["--relay-ca".into(), second.ca_file.display().to_string()]);
    let mut joiner = Peer::spawn(&bob.workdir, &joiner_args);
    joiner.send(&code);
    joiner.expect(Stream::Stderr, "Paired with alice (sha256 ");
    inviter.expect(Stream::Stderr, "Paired with bob (sha256 ");
    expect_connected_over_iroh(&mut joiner, "alice");
    joiner.send("found you");
    inviter.expect(Stream::Stdout, "bob: found you");
    finish(joiner, inviter);
}

/// What whoever sees the rendezvous endpoint ID at a relay can do without the code:
/// dial it and run the pairing with a guess. Returns how the inviter answered.
async fn guess_at(
    relay: &Relay,
    rendezvous: iroh::EndpointId,
    as_whom: &Identity,
    guess: &str,
) -> Result<Option<[u8; 32]>, chat::pairing::PairError> {
    let settings = settings(relay);
    let ours = transport::bind(SecretKey::generate(), &settings, false)
        .await
        .unwrap();
    let lingering = Lingering::default();
    let stream = transport::dial(&ours, rendezvous, &settings.relay_urls(), &lingering)
        .await
        .unwrap();
    let connector = TlsConnector::from(tls::pairing_client_config(as_whom).unwrap());
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut tls = connector.connect(name, stream).await.unwrap();
    let binding =
        chat::pairing::link::binding_of(tls.get_ref().1, as_whom.fingerprint, true).unwrap();
    let guess: chat::pairing::InviteCode = guess.parse().unwrap();
    let ours = Whereabouts::Endpoint(*ours.id().as_bytes());
    chat::pairing::exchange::join(&mut tls, &guess, &binding, ours).await
}

#[test]
fn three_wrong_guesses_through_the_relay_kill_the_code_and_nothing_is_saved() {
    let relay = Relay::start();
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let mut inviter = Peer::spawn(&alice.workdir, &over_relay(&alice, &relay, &["--invite"]));
    let code = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let rendezvous = rendezvous_key(&code.parse().unwrap()).public();
    let mallory = identity(&world.path().join("mallory"), "mallory");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for left in ["2 tries left", "1 try left", "no tries left"] {
        let answer = runtime.block_on(within(
            "a guess",
            guess_at(&relay, rendezvous, &mallory, "1-acid-acorn-acre"),
        ));
        assert!(
            matches!(answer, Err(chat::pairing::PairError::WrongCode)),
            "{answer:?}"
        );
        let told = inviter.expect(Stream::Stderr, "tried a wrong invite code");
        assert!(told.ends_with(left), "{told}");
    }
    // The dead code's endpoint is gone: the inviter offers a fresh code instead.
    inviter.expect(Stream::Stderr, "Nobody paired: ");
    let fresh = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    assert_ne!(fresh, code);
    inviter.close_stdin();
    inviter.signal("TERM");
    let _ = inviter.wait();
    let saved = std::fs::read_to_string(alice.known_peers()).unwrap_or_default();
    assert!(!saved.contains("mallory"), "{saved}");
}

#[test]
fn a_direct_path_cut_mid_transfer_goes_on_over_the_relay() {
    let Some(net) = two_homes("c", [Router::Home, Router::Home]) else {
        return;
    };
    let relay = net.start_relay();
    let world = World::new();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let connected = peer.expect(Stream::Stderr, &format!("Connected to {other} "));
        if !connected.contains(" directly at ") {
            peer.expect(Stream::Stderr, &format!("Direct path to {other} at "));
        }
    }
    let data = pseudo_random(48 << 20, 51);
    std::fs::write(alice_home.workdir.join("big.bin"), &data).unwrap();
    alice.send("transfer big.bin");
    // Bob is held still while the path is cut, so that most of the file is yet to
    // come: it can only come over the relay.
    crate::common::wait_for_kept_part(&bob_home.workdir, 4 << 20);
    bob.signal("STOP");
    net.cut_direct_path(0).unwrap();
    bob.signal("CONT");
    alice.send("said while the path was cut");
    let lost = alice.expect(Stream::Stderr, "Direct path to bob lost; relaying through ");
    let relay_port = relay.url.rsplit(':').next().unwrap();
    assert!(
        lost.ends_with(&format!("{RELAY_IP}:{relay_port}")),
        "{lost}"
    );
    bob.expect(Stream::Stderr, "Saved ./big.bin (verified");
    alice.expect(Stream::Stderr, "big.bin delivered and verified by bob");
    assert_eq!(
        std::fs::read(bob_home.workdir.join("big.bin")).unwrap(),
        data
    );
    bob.expect(Stream::Stdout, "alice: said while the path was cut");
    for peer in [&alice, &bob] {
        let dropped = (peer.lines_on(Stream::Stderr).into_iter())
            .find(|line| line.contains("lost") && !line.starts_with("Direct path"));
        assert_eq!(dropped, None, "the session itself was not lost");
    }
    let said = (bob.lines_on(Stream::Stdout).into_iter())
        .filter(|line| *line == "alice: said while the path was cut")
        .count();
    assert_eq!(said, 1, "the line is shown exactly once");
    finish(alice, bob);
}

#[test]
fn the_bridge_between_the_homes_carries_only_ciphertext() {
    let Some(net) = two_homes("x", [Router::Home, Router::Symmetric]) else {
        return;
    };
    if std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED ciphertext capture: `tcpdump` is not installed");
        return;
    }
    let world = World::new();
    let capture = world.path().join("bridge.pcap");
    let mut tcpdump = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.internet,
            "tcpdump",
            "-q",
            "-U",
            "-s",
            "0",
        ])
        .args(["-i", "br0", "-w"])
        .arg(&capture)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    // tcpdump says it listens once the capture is open.
    let mut told = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut told, &mut line).unwrap();
    assert!(line.contains("listening on br0"), "{line}");

    let relay = net.start_relay();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    bob.expect(Stream::Stderr, "Connected to alice ");
    let marker = b"plaintext-marker-4c1d-who-reads-this";
    let data: Vec<u8> = marker.iter().copied().cycle().take(2 << 20).collect();
    std::fs::write(alice_home.workdir.join("marked.bin"), &data).unwrap();
    alice.send("transfer marked.bin");
    alice.send("a secret line: plaintext-line-9e7a");
    bob.expect(Stream::Stderr, "Saved ./marked.bin (verified");
    bob.expect(Stream::Stdout, "alice: a secret line: plaintext-line-9e7a");
    assert_eq!(
        std::fs::read(bob_home.workdir.join("marked.bin")).unwrap(),
        data
    );
    finish(alice, bob);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();

    let captured = std::fs::read(&capture).unwrap();
    assert!(
        captured.len() > data.len(),
        "the capture holds {} bytes, less than the file: it missed the traffic",
        captured.len()
    );
    for needle in [&marker[..], b"plaintext-line-9e7a", b"marked.bin"] {
        let found = captured
            .windows(needle.len())
            .any(|window| window == needle);
        assert!(
            !found,
            "{:?} crossed the bridge in the clear",
            String::from_utf8_lossy(needle)
        );
    }
}

/// How soon a restarted peer is back in the session, from its first line: it has
/// bound its endpoint by then, and either role must come back without waiting for
/// the other side to find its old connection dead.
const BACK_WITHIN: Duration = Duration::from_secs(10);

/// Starts `home`'s peer again by name, through `wrapper` (a network namespace, or
/// nothing), and waits for its connection to `other`.
fn restarted_and_reconnected(wrapper: &[&str], home: &Home, relay: &Relay, other: &str) -> Peer {
    let args = over_relay(home, relay, &["--peer", other]);
    let mut peer = Peer::spawn_in(wrapper, &home.workdir, &args);
    peer.expect_where(Stream::Stderr, "the first line", |_| true);
    let started = std::time::Instant::now();
    let connected = peer.expect_within(
        BACK_WITHIN,
        Stream::Stderr,
        "the connection after a restart",
        |line| line.starts_with(&format!("Connected to {other} ")),
    );
    assert!(
        connected.ends_with("(one connection, both directions)"),
        "{connected}"
    );
    println!(
        "{} back in the session {:.1} s after its first line",
        home.name,
        started.elapsed().as_secs_f64()
    );
    peer
}

#[test]
fn either_side_restarted_by_name_resumes_the_session_and_its_transfer() {
    let relay = Relay::start();
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));
    let (mut inviter, joiner) = pair_over_relay(&relay, &alice, &bob);
    let data = pseudo_random(64 << 20, 61);
    std::fs::write(alice.workdir.join("film.bin"), &data).unwrap();
    inviter.send("transfer film.bin");
    // Bob is killed mid-transfer, and a line is typed while he is away.
    crate::common::wait_for_kept_part(&bob.workdir, 8 << 20);
    drop(joiner);
    inviter.send("while you were away");
    // One of the two restarts below is of the side that dials (the smaller endpoint
    // ID does), the other of the side that accepts: each must be back at once.
    let mut bob_again = restarted_and_reconnected(&[], &bob, &relay, "alice");
    bob_again.expect(Stream::Stderr, "Receiving film.bin: resuming at");
    bob_again.expect(Stream::Stderr, "Saved ./film.bin (verified");
    assert_eq!(std::fs::read(bob.workdir.join("film.bin")).unwrap(), data);
    bob_again.expect(Stream::Stdout, "alice: while you were away");

    // Now alice goes and comes back, by name too.
    bob_again.send("still here");
    inviter.expect(Stream::Stdout, "bob: still here");
    lost_only_before_reconnected(&inviter, "bob");
    drop(inviter);
    bob_again.send("typed while alice restarts");
    let mut alice_again = restarted_and_reconnected(&[], &alice, &relay, "bob");
    alice_again.expect(Stream::Stdout, "bob: typed while alice restarts");
    finish(alice_again, bob_again);
}

/// `peer` said that its connection to `other` was lost, if it did, before it said
/// that `other` was back: never "waiting for it to reconnect" after the reconnect.
fn lost_only_before_reconnected(peer: &Peer, other: &str) {
    let said = peer.lines_on(Stream::Stderr);
    let back = (said.iter())
        .position(|line| line.starts_with(&format!("Reconnected to {other} ")))
        .unwrap_or_else(|| panic!("never reconnected: {said:#?}"));
    let late = (said[back..].iter()).find(|line| line.starts_with("Connection to the peer lost"));
    assert_eq!(late, None, "{said:#?}");
}

/// How many times `peer` showed `line` on standard output.
fn times_shown(peer: &Peer, line: &str) -> usize {
    (peer.lines_on(Stream::Stdout).into_iter())
        .filter(|shown| *shown == line)
        .count()
}

/// `away` is killed while `stayed` sends it `name`, and comes back by name from the
/// home `wrapper` runs in: it goes direct, resumes the file, and shows the line typed
/// while it was away.
fn away_and_back(
    wrapper: &[&str],
    relay: &Relay,
    stayed: (&mut Peer, &Home),
    away: (Peer, &Home),
    name: &str,
) -> Peer {
    let (stayed, stayed_home) = stayed;
    let away_home = away.1;
    let line = format!("typed while {} was away", away_home.name);
    let data = killed_mid_transfer((&mut *stayed, stayed_home), away, name, &line);
    let mut back = restarted_and_reconnected(wrapper, away_home, relay, stayed_home.name);
    goes_direct(&mut back, stayed_home.name);
    resumed(&mut back, away_home, stayed, name, &data);
    back.expect(Stream::Stdout, &format!("{}: {line}", stayed_home.name));
    back
}

/// `sender` sends `size` bytes as `name` to `receiver`, which is killed once it has
/// kept part of the file, while `sender` types `line`. Returns the file.
fn killed_mid_transfer(
    sender: (&mut Peer, &Home),
    receiver: (Peer, &Home),
    name: &str,
    line: &str,
) -> Vec<u8> {
    let data = pseudo_random(64 << 20, name.len() as u64);
    std::fs::write(sender.1.workdir.join(name), &data).unwrap();
    sender.0.send(&format!("transfer {name}"));
    crate::common::wait_for_kept_part(&receiver.1.workdir, 8 << 20);
    drop(receiver.0);
    sender.0.send(line);
    data
}

/// Waits for `peer`'s session with `other` to go direct, through both routers, as
/// `two_homes_behind_home_routers_meet_by_code_and_punch_a_direct_path` expects;
/// leaves the cursors alone.
fn goes_direct(peer: &mut Peer, other: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let direct = peer.wait_for(0, deadline, Stream::Stderr, |line| {
        line.starts_with(&format!("Connected to {other} directly at 198.51.100."))
            || line.starts_with(&format!("Direct path to {other} at 198.51.100."))
    });
    assert!(direct, "no direct path within 5 s:\n{}", peer.transcript());
}

/// `receiver`, back, resumes `name` from its kept part and saves all of `data`.
fn resumed(receiver: &mut Peer, home: &Home, sender: &mut Peer, name: &str, data: &[u8]) {
    receiver.expect(Stream::Stderr, &format!("Receiving {name}: resuming at"));
    receiver.expect(Stream::Stderr, &format!("Saved ./{name} (verified"));
    sender.expect(
        Stream::Stderr,
        &format!("{name} delivered and verified by {}", home.name),
    );
    assert!(std::fs::read(home.workdir.join(name)).unwrap() == data);
}

#[test]
fn either_side_back_from_another_network_resumes_the_session_and_its_transfer() {
    let Some(mut net) = two_homes("r", [Router::Home, Router::Home]) else {
        return;
    };
    // Each side comes back from a home of its own, behind another router: a new
    // address, a new NAT mapping, and the old path leads nowhere.
    let (cafe, office) = match (net.add_home(Router::Home), net.add_home(Router::Home)) {
        (Ok(cafe), Ok(office)) => (cafe, office),
        (Err(reason), _) | (_, Err(reason)) => {
            println!("SKIPPED two-home test: {reason}");
            return;
        }
    };
    let relay = net.start_relay();
    let world = World::new();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        peer.expect(Stream::Stderr, &format!("Connected to {other} "));
        peer.expect_seen(Stream::Stderr, "to known peers; next time: chat --peer ");
    }
    let alice_dials = endpoint_of(&bob_home, "alice") < endpoint_of(&alice_home, "bob");
    println!(
        "{} dials, {} accepts",
        ["bob", "alice"][usize::from(alice_dials)],
        ["alice", "bob"][usize::from(alice_dials)]
    );

    // One of the two comes back to the side that dials (the smaller endpoint ID
    // does), the other to the side that accepts: each must be back at once.
    let mut bob = away_and_back(
        &net.in_home(cafe),
        &relay,
        (&mut alice, &alice_home),
        (bob, &bob_home),
        "film.bin",
    );
    let alice = away_and_back(
        &net.in_home(office),
        &relay,
        (&mut bob, &bob_home),
        (alice, &alice_home),
        "notes.bin",
    );

    let (alice, bob) = finish(alice, bob);
    assert_eq!(times_shown(&bob, "alice: typed while bob was away"), 1);
    assert_eq!(times_shown(&alice, "bob: typed while alice was away"), 1);
}

/// The endpoint ID (hex) that `seen_by` has saved for `name`.
fn endpoint_of(seen_by: &Home, name: &str) -> String {
    let saved = std::fs::read_to_string(seen_by.known_peers()).unwrap();
    let line = (saved.lines())
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not saved: {saved}"));
    let id = (line.split_whitespace()).find_map(|field| field.strip_prefix("iroh:"));
    id.unwrap_or_else(|| panic!("no endpoint ID: {line}"))
        .to_owned()
}

/// How long the dialer stays out of reach after the accepting side started again:
/// longer than the first call may take (it comes 1 s after the start and waits up to
/// 10 s for an answer), so that it is lost for certain.
const DIALER_AWAY: Duration = Duration::from_secs(12);

/// How soon after the dialer is back the session must be: well before the dialer's
/// own idle timeout (30 s from the last packet of the accepting side's previous
/// run) would find its old connection dead.
const BACK_AFTER_THE_DIALER: Duration = Duration::from_secs(8);

#[test]
fn a_wake_up_call_lost_while_the_dialer_is_away_is_made_again() {
    let relay = Relay::start();
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));
    let (mut inviter, mut joiner) = pair_over_relay(&relay, &alice, &bob);
    for peer in [&mut inviter, &mut joiner] {
        peer.expect_seen(Stream::Stderr, "to known peers; next time: chat --peer ");
    }
    // The smaller endpoint ID dials; the other accepts, and calls when it restarts.
    let alice_dials = endpoint_of(&bob, "alice") < endpoint_of(&alice, "bob");
    let ((dialer, dialing_home), (accepting, accepting_home)) = match alice_dials {
        true => ((inviter, &alice), (joiner, &bob)),
        false => ((joiner, &bob), (inviter, &alice)),
    };

    // The accepting side starts again while the dialer is out of reach (stopped, as
    // a machine put to sleep): its first call is lost.
    drop(accepting);
    dialer.signal("STOP");
    let args = over_relay(accepting_home, &relay, &["--peer", dialing_home.name]);
    let mut accepting = Peer::spawn(&accepting_home.workdir, &args);
    // Its endpoint is up and its session started once it says it waits.
    accepting.expect(
        Stream::Stderr,
        &format!("Waiting for {} over iroh", dialing_home.name),
    );
    let started = std::time::Instant::now();
    std::thread::sleep(DIALER_AWAY);
    dialer.signal("CONT");
    let back = std::time::Instant::now();
    let mut dialer = dialer;
    accepting.expect_within(
        BACK_AFTER_THE_DIALER,
        Stream::Stderr,
        "the connection once the dialer is back",
        |line| line.starts_with(&format!("Connected to {} ", dialing_home.name)),
    );
    println!(
        "{} (accepting) back in the session {:.1} s after the dialer was back, {:.1} s after it started",
        accepting_home.name,
        back.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    accepting.send("after the lost call");
    dialer.expect(
        Stream::Stdout,
        &format!("{}: after the lost call", accepting_home.name),
    );
    finish(accepting, dialer);
}

#[test]
fn the_relay_lost_while_direct_changes_nothing_and_when_it_is_back_a_relayed_session_returns() {
    // Direct through two home routers: the relay going away changes nothing.
    let Some(net) = two_homes("k", [Router::Home, Router::Home]) else {
        return;
    };
    let mut relay = net.start_relay();
    let world = World::new();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let connected = peer.expect(Stream::Stderr, &format!("Connected to {other} "));
        if !connected.contains(" directly at ") {
            peer.expect(Stream::Stderr, &format!("Direct path to {other} at "));
        }
    }
    relay.kill();
    exchange(&mut alice, &mut bob, (&alice_home, &bob_home), 4 << 20);
    finish(alice, bob);
    drop(net);

    // Relayed through a symmetric NAT: nothing moves while the relay is down, and
    // the session goes on when it is back, on the same connection if iroh kept it
    // (its idle timeout is longer than the outage) or on a new one.
    let Some(net) = two_homes("l", [Router::Home, Router::Symmetric]) else {
        return;
    };
    let mut relay = net.start_relay();
    let world = World::new();
    let (mut alice, mut bob, alice_home, bob_home) = pair_across(&net, &relay, &world);
    for (peer, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        peer.expect(
            Stream::Stderr,
            &format!("Connected to {other} through relay "),
        );
    }
    relay.kill();
    alice.send("typed while the relay was down");
    relay.restart();
    bob.expect_within(
        Duration::from_secs(90),
        Stream::Stdout,
        "the line typed while the relay was down",
        |line| line == "alice: typed while the relay was down",
    );
    exchange(&mut alice, &mut bob, (&alice_home, &bob_home), 4 << 20);
    finish(alice, bob);
}

#[test]
fn a_mistyped_code_says_that_nobody_answers_for_it_and_gives_up_in_time() {
    let relay = Relay::start();
    let world = World::new();
    let bob = Home::new(&world, "bob");
    let mut joiner = Peer::spawn(
        &bob.workdir,
        &over_relay(&bob, &relay, &["--join", "--retry-for", "3s"]),
    );
    joiner.send("12-acid-acorn-acre");
    let waiting = joiner.expect(Stream::Stderr, "Waiting for the inviter: ");
    assert!(
        waiting.contains("nobody answers for this code yet, so check it"),
        "{waiting}"
    );
    let failed = joiner.expect(Stream::Stderr, "chat: error: ");
    assert!(
        failed.contains("the inviter at this code's endpoint was unreachable for 3 s"),
        "{failed}"
    );
    assert!(!joiner.wait().success());
}
