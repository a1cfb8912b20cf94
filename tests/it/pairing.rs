//! Pairing by invite code: two real processes pair and chat with no fingerprint
//! typed; wrong codes, guessers, a replayed code and a relay in the middle fail.

use crate::common;

use common::crowd::{self, Crowd};
use common::home::Home;
use common::{Peer, Stream, TIMEOUT, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Connections crowding an invite's port: idle, trickling, garbage and TLS
/// strangers, each reopened as it closes, more than the listener's 128 places.
const CROWD: usize = 400;

/// An inviter waiting, with its code and the joiner's command as printed.
struct Invitation {
    peer: Peer,
    code: String,
    /// The printed command, without `chat`.
    join_args: Vec<String>,
}

impl Invitation {
    /// Reads the next code `peer` offers and the command it prints with it, which
    /// must keep the code off the joiner's command line.
    fn read(mut peer: Peer) -> Invitation {
        let (code, join_args) = next_code(&mut peer);
        Invitation {
            peer,
            code,
            join_args,
        }
    }

    /// Reads a fresh code offered after the current one died.
    fn read_fresh_code(&mut self) {
        let (code, join_args) = next_code(&mut self.peer);
        assert_ne!(code, self.code, "the fresh code is another one");
        (self.code, self.join_args) = (code, join_args);
    }
}

fn next_code(peer: &mut Peer) -> (String, Vec<String>) {
    let code = peer.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let told = peer.expect(
        Stream::Stderr,
        "the code works once, for the next 5 minutes",
    );
    assert!(
        told.starts_with("Give the other person this command"),
        "{told}"
    );
    let command = peer.expect(Stream::Stderr, "  chat --join");
    assert!(
        !command.contains(&code),
        "the code is on the joiner's command line, which every user can read: {command}"
    );
    let join_args: Vec<String> = command
        .trim()
        .strip_prefix("chat ")
        .unwrap()
        .split(' ')
        .map(String::from)
        .collect();
    let port = peer.port.to_string();
    assert_eq!(
        join_args,
        ["--join", "--connect", &format!("127.0.0.1:{port}")]
    );
    let then = peer.expect(Stream::Stderr, "type the code");
    assert_eq!(then.trim(), "(then type the code at its prompt)");
    (code, join_args)
}

fn invite(home: &Home) -> Invitation {
    Invitation::read(home.start(&["--invite"]))
}

/// `joiner` runs the command the inviter printed and types `code` at its prompt.
fn join_with(joiner: &Home, invitation: &Invitation, code: &str) -> Peer {
    let args: Vec<&str> = invitation.join_args.iter().map(String::as_str).collect();
    let mut peer = joiner.start(&args);
    peer.send(code);
    // A prompt's line ends once the answer is read, when input is not a terminal.
    peer.expect(Stream::Stdout, "Enter the invite code: ");
    peer
}

/// An identity of a third party's own, for pairing connections made by hand.
fn stranger(world: &World, name: &str) -> chat::identity::Identity {
    let files =
        chat::identity::IdentityFiles::named(&world.path().join(format!("{name}-config")), name);
    chat::identity::create(&files, name, false).unwrap()
}

/// Opens a pairing connection to the inviter at `port`, sends a JOIN, waits for the
/// answer that says the guess was admitted, and hangs up: what anyone who can reach
/// the port can do without knowing the code.
fn hang_up_mid_exchange(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    as_whom: &chat::identity::Identity,
) {
    let connector = TlsConnector::from(chat::link::tls::pairing_client_config(as_whom).unwrap());
    let exchange = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // Version 1, a SPAKE2 message of zeros, and port 1.
        let mut join = [0u8; 36];
        join[0] = 1;
        join[35] = 1;
        tls.write_all(&join).await.unwrap();
        let mut answer = [0u8; 34];
        tls.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[0], 0, "the guess was admitted");
    };
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, exchange).await })
        .expect("the inviter did not answer a JOIN");
}

/// A code of the right shape that is not `code`.
fn another_code(code: &str, nth: u32) -> String {
    let (number, words) = code.split_once('-').unwrap();
    let number: u32 = number.parse().unwrap();
    format!("{}-{words}", (number + nth) % 100)
}

fn safety_number(peer: &mut Peer) -> String {
    peer.expect_seen(Stream::Stderr, "Safety number: ")
}

#[test]
fn two_peers_pair_by_code_and_chat_with_no_fingerprint_typed() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    let a = &mut invitation.peer;

    a.expect_seen(Stream::Stderr, "Paired with bob (sha256 ");
    b.expect_seen(Stream::Stderr, "Paired with alice (sha256 ");
    a.expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    assert_eq!(safety_number(a), safety_number(&mut b));
    b.send("hello alice");
    a.expect(Stream::Stdout, "bob: hello alice");
    a.send("hello bob");
    b.expect(Stream::Stdout, "alice: hello bob");
    a.expect_seen(Stream::Stderr, "Saved bob (sha256 ");
    b.expect_seen(Stream::Stderr, "Saved alice (sha256 ");

    b.close_stdin();
    a.close_stdin();
    assert!(b.wait().success(), "{}", b.transcript());
    assert!(a.wait().success(), "{}", a.transcript());
    let saved = std::fs::read_to_string(alice.known_peers()).unwrap();
    assert!(
        saved.contains(&format!("bob {} ", b.fingerprint)),
        "{saved}"
    );
    let saved = std::fs::read_to_string(bob.known_peers()).unwrap();
    assert!(
        saved.contains(&format!("alice {} ", a.fingerprint)),
        "{saved}"
    );
}

/// Idle connections reopened as they close once kept every place at the invite's
/// port: the joiner failed after 10 s and the inviter said nothing. Now the pairing
/// listener sheds them as the session listener does, the inviter is told, and the
/// joiner gets in (trying again if it is shed).
#[test]
fn a_crowd_at_the_invite_s_port_is_reported_and_the_joiner_still_gets_in() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let mut invitation = invite(&alice);
    // They pin a certificate nobody has: the inviter refuses them either way.
    let nobody = "07".repeat(32).parse().unwrap();
    let strangers = crowd::strangers(&world.path().join("strangers"), 4, nobody);
    let port = invitation.peer.port;
    let crowd = Crowd::start(([127, 0, 0, 1], port).into(), CROWD, strangers);
    invitation.peer.expect_seen(
        Stream::Stderr,
        "Strangers are crowding the invite's port; their connections are dropped",
    );
    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    b.expect_seen(Stream::Stderr, "Paired with alice (sha256 ");
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Paired with bob (sha256 ");
    println!("invite crowd: {} members; {:?}", crowd.size, crowd.tally);
    drop(crowd);
    b.send("through the crowd");
    invitation
        .peer
        .expect(Stream::Stdout, "bob: through the crowd");
}

#[test]
fn a_wrong_code_fails_on_both_sides_and_the_right_one_still_works() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let mut invitation = invite(&alice);
    let wrong = another_code(&invitation.code, 1);

    let mut b = join_with(&bob, &invitation, &wrong);
    assert_eq!(b.wait().code(), Some(3), "{}", b.transcript());
    b.expect_seen(
        Stream::Stderr,
        "chat: error: the inviter did not accept the invite code",
    );
    assert!(!b.transcript().contains("Paired"), "{}", b.transcript());
    let a = &mut invitation.peer;
    let told = a.expect(Stream::Stderr, "tried a wrong invite code");
    assert!(told.starts_with("Someone at 127.0.0.1:"), "{told}");
    assert!(told.ends_with("; 2 tries left"), "{told}");
    assert!(!a.transcript().contains(&wrong), "the guess is not echoed");

    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
}

/// Three wrong tries kill a code, but not the invite: the inviter says what
/// happened and offers a fresh code, up to 3 codes in all, and then gives up.
#[test]
fn guessers_kill_at_most_three_codes_and_then_the_inviter_gives_up() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let mallory = Home::new(&world, "mallory");
    let by_hand = stranger(&world, "mallory-by-hand");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut invitation = invite(&alice);
    for nth in 1..=3 {
        let guess = another_code(&invitation.code, nth);
        let mut m = join_with(&mallory, &invitation, &guess);
        assert_eq!(m.wait().code(), Some(3), "{}", m.transcript());
        m.expect_seen(Stream::Stderr, "the inviter did not accept the invite code");
        let left = ["2 tries left", "1 try left", "no tries left"][nth as usize - 1];
        let told = invitation
            .peer
            .expect(Stream::Stderr, "tried a wrong invite code");
        assert!(told.ends_with(left), "{told}");
    }
    for fresh in 2..=3 {
        let told = invitation.peer.expect(Stream::Stderr, "Nobody paired");
        assert!(
            told.contains("the invite code stopped working after 3 wrong tries"),
            "{told}"
        );
        assert!(
            told.contains(&format!("fresh code {fresh} of at most 3")),
            "{told}"
        );
        invitation.read_fresh_code();
        for _ in 0..3 {
            hang_up_mid_exchange(&runtime, invitation.peer.port, &by_hand);
        }
    }
    let a = &mut invitation.peer;
    assert_eq!(a.wait().code(), Some(3), "{}", a.transcript());
    a.expect_seen(
        Stream::Stderr,
        "chat: error: the invite code stopped working after 3 wrong tries, and it was the last \
         of 3 codes in this run; run chat --invite again for a new one",
    );
    assert!(!a.transcript().contains("Paired"), "{}", a.transcript());
}

/// Joiners that hang up halfway through the exchange use up a try each, so three
/// of them end a code in a moment; the inviter says so and offers a fresh code,
/// with which the real joiner pairs.
#[test]
fn joiners_that_hang_up_end_a_code_and_the_inviter_offers_a_fresh_one() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let by_hand = stranger(&world, "mallory");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut invitation = invite(&alice);
    let old_code = invitation.code.clone();
    for left in ["2 tries left", "1 try left", "no tries left"] {
        hang_up_mid_exchange(&runtime, invitation.peer.port, &by_hand);
        let told = invitation.peer.expect(Stream::Stderr, "broke off");
        assert!(told.starts_with("Someone at 127.0.0.1:"), "{told}");
        assert!(told.contains("counts as a wrong try"), "{told}");
        assert!(told.ends_with(left), "{told}");
    }
    let told = invitation.peer.expect(Stream::Stderr, "Nobody paired");
    assert!(told.contains("fresh code 2 of at most 3"), "{told}");
    invitation.read_fresh_code();
    assert_ne!(invitation.code, old_code);

    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    let a = &mut invitation.peer;
    a.expect_seen(Stream::Stderr, "Paired with bob (sha256 ");
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    b.send("made it");
    a.expect(Stream::Stdout, "bob: made it");
}

#[test]
fn a_used_code_cannot_be_used_again() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let carol = Home::new(&world, "carol");
    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");

    let mut c = join_with(&carol, &invitation, &code);
    assert_eq!(c.wait().code(), Some(3), "{}", c.transcript());
    c.expect_seen(Stream::Stderr, "is not waiting for an invite code");
    b.send("still here");
    invitation.peer.expect(Stream::Stdout, "bob: still here");
}

/// The command the inviter prints asks for the code rather than taking it on the
/// command line, which every user of the joiner's machine can read (`ps`).
#[test]
fn the_printed_command_keeps_the_code_off_the_command_line() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", b.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&code));
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
}

/// A script passes the code in `CHAT_INVITE_CODE`: no prompt, and nothing on the
/// command line.
#[test]
fn a_script_can_pass_the_code_in_the_environment() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let args: Vec<&str> = invitation.join_args.iter().map(String::as_str).collect();
    let mut b = bob.start_with_env(&[("CHAT_INVITE_CODE", &code)], &args);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", b.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&code));
    b.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    let prompted = b
        .lines_on(Stream::Stdout)
        .iter()
        .any(|line| line.contains("invite code"));
    assert!(!prompted, "{}", b.transcript());
}

#[test]
fn a_malformed_code_is_refused_before_anything_starts() {
    let world = World::new();
    let bob = Home::new(&world, "bob");
    let stderr = bob.refused_at_start(&["--join", "banana", "--connect", "9"]);
    assert!(stderr.contains("--join"), "{stderr}");
    assert!(stderr.contains("7-amber-lantern-echo"), "{stderr}");
}

/// A relay that terminates TLS towards both sides and forwards every byte of the
/// pairing between them. It even holds both peers' own keys, so each side sees
/// the very certificate it would see without it: all that differs between the
/// two TLS connections is their exporter value, and that alone makes pairing fail
/// on both sides with the right code in flight.
#[test]
fn a_relay_in_the_middle_makes_pairing_fail() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    bob.make_identity(false);
    let mut invitation = invite(&alice);
    let alice_port = invitation.peer.port;
    let own = |home: &Home| {
        let files = chat::identity::IdentityFiles::named(&home.certs, home.name);
        chat::identity::load(&files).unwrap()
    };
    let (as_alice, as_bob) = (own(&alice), own(&bob));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let relayed = runtime.spawn(async move {
        let acceptor =
            TlsAcceptor::from(chat::link::tls::pairing_server_config(&as_alice).unwrap());
        let connector =
            TlsConnector::from(chat::link::tls::pairing_client_config(&as_bob).unwrap());
        let (from_bob, _) = listener.accept().await.unwrap();
        let mut bob_side = acceptor.accept(from_bob).await.unwrap();
        let to_alice = TcpStream::connect(("127.0.0.1", alice_port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut alice_side = connector.connect(name, to_alice).await.unwrap();
        copy_bidirectional(&mut bob_side, &mut alice_side).await
    });

    let code = invitation.code.clone();
    let relay = format!("127.0.0.1:{relay_port}");
    let mut b = bob.start(&["--join", &code, "--connect", &relay]);
    assert_eq!(b.wait().code(), Some(3), "{}", b.transcript());
    b.expect_seen(Stream::Stderr, "the inviter did not accept the invite code");
    let a = &mut invitation.peer;
    a.expect(Stream::Stderr, "tried a wrong invite code; 2 tries left");
    assert!(!a.transcript().contains("Paired"), "{}", a.transcript());
    assert!(!b.transcript().contains("Paired"), "{}", b.transcript());
    let relayed = runtime.block_on(async { tokio::time::timeout(TIMEOUT, relayed).await });
    assert!(relayed.is_ok(), "the relay never finished");
}

/// Someone with the code whose certificate claims the name of a peer already
/// saved is refused as a changed certificate would be.
#[test]
fn pairing_with_the_name_of_a_known_peer_is_refused() {
    let world = World::new();
    let alice = Home::new(&world, "alice");
    let bob = Home::new(&world, "bob");
    let impostor = Home {
        name: "bob",
        certs: world.path().join("impostor-config"),
        workdir: world.path().join("impostor-home"),
    };
    std::fs::create_dir_all(&impostor.workdir).unwrap();
    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let mut b = join_with(&bob, &invitation, &code);
    invitation
        .peer
        .expect_seen(Stream::Stderr, "Saved bob (sha256 ");
    b.close_stdin();
    invitation.peer.close_stdin();
    assert!(invitation.peer.wait().success());

    let mut invitation = invite(&alice);
    let code = invitation.code.clone();
    let _impostor = join_with(&impostor, &invitation, &code);
    let a = &mut invitation.peer;
    assert_eq!(a.wait().code(), Some(3), "{}", a.transcript());
    a.expect_seen(
        Stream::Stderr,
        "WARNING: THE CERTIFICATE OF BOB HAS CHANGED!",
    );
    assert!(
        !a.transcript().contains("Connected to"),
        "{}",
        a.transcript()
    );
}
