//! Two machines on one network with no relay reachable: they find each other over
//! mDNS, to pair by code and, later, to meet by name (README, "On one network").

use std::time::{Duration, Instant};

use crate::common::home::Home;
use crate::common::veth::VethPair;
use crate::common::{Peer, Stream, World};

/// A relay URL on the network that nobody answers: connections to it are refused.
const DEAD_RELAY: &str = "https://10.203.0.1:9";

/// How long meeting on the network may take: mDNS asks every 0.7 s.
const MEET_WITHIN: Duration = Duration::from_secs(10);

/// How long the inviter may take to show its code: 0.2-0.3 s on a quiet machine, up
/// to 3.4 s while the whole suite loads both cores (deriving the code's key and
/// opening its endpoint). Waiting out the relay as though it might still answer took
/// 3 s for each of the two endpoints, one after the other: over 6 s.
const CODE_WITHIN: Duration = Duration::from_secs(5);

/// The network, or the reason to skip (printed). Each end routes everything onto
/// it, as a machine on a home network without internet does through its router: mDNS
/// goes out on the default route's interface.
fn network() -> Option<VethPair> {
    let made = VethPair::create("mdns").and_then(|pair| {
        pair.on_each_end("ip route add default dev {dev}")?;
        Ok(pair)
    });
    match made {
        Ok(pair) => Some(pair),
        Err(reason) => {
            println!("SKIPPED local-network test: {reason}");
            None
        }
    }
}

/// `chat` for `home` in its namespace, with only the dead relay, and `extra`.
fn on_the_network(net: &VethPair, side: usize, home: &Home, extra: &[&str]) -> Peer {
    let mut args: Vec<String> = ["--name", home.name, "--relay", DEAD_RELAY, "--certs-dir"]
        .map(String::from)
        .into();
    args.push(home.certs.display().to_string());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let wrapper = ["ip", "netns", "exec", &net.namespaces[side]];
    Peer::spawn_in(&wrapper, &home.workdir, &args)
}

/// Waits for the connection to `other`, which must say it is direct, on the network.
fn expect_connected_directly(peer: &mut Peer, other: &str) -> String {
    let prefix = format!("Connected to {other} directly at 10.203.0.");
    peer.expect_within(MEET_WITHIN, Stream::Stderr, &prefix, |line| {
        line.starts_with(&prefix) && line.ends_with("(one connection, both directions)")
    })
}

/// A line each way, shown once each, then both end cleanly.
fn talk_and_finish(mut first: Peer, mut second: Peer, names: [&str; 2]) {
    first.send("over the local network");
    second.expect(
        Stream::Stdout,
        &format!("{}: over the local network", names[0]),
    );
    second.send("and back");
    first.expect(Stream::Stdout, &format!("{}: and back", names[1]));
    first.close_stdin();
    second.expect(Stream::Stderr, "has nothing more to say");
    second.close_stdin();
    assert!(first.wait().success(), "{}", first.transcript());
    assert!(second.wait().success(), "{}", second.transcript());
}

#[test]
fn with_no_relay_an_invite_and_then_the_names_meet_on_the_local_network() {
    let Some(net) = network() else {
        return;
    };
    let world = World::new();
    let (alice, bob) = (Home::new(&world, "alice"), Home::new(&world, "bob"));

    let started = Instant::now();
    let mut inviter = on_the_network(&net, 0, &alice, &["--invite"]);
    let code = inviter.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let code_shown = started.elapsed();
    assert!(
        code_shown < CODE_WITHIN,
        "the code took {code_shown:?} to show, though the only relay refuses at once:\n{}",
        inviter.transcript()
    );
    let no_relay = inviter.expect(Stream::Stderr, "No relay answers");
    assert!(no_relay.contains("only on this network"), "{no_relay}");
    let mut joiner = on_the_network(&net, 1, &bob, &["--join"]);
    joiner.send(&code);
    for (peer, other) in [(&mut inviter, "bob"), (&mut joiner, "alice")] {
        let paired = peer.expect_within(MEET_WITHIN, Stream::Stderr, "Paired with", |line| {
            line.starts_with(&format!("Paired with {other} (sha256 "))
        });
        assert!(!paired.contains("relay"), "{paired}");
        expect_connected_directly(peer, other);
    }
    println!(
        "code shown in {:.1} s; paired and connected in {:.1} s from the inviter's start, {:.1} s \
         from the joiner's",
        code_shown.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        (started.elapsed() - code_shown).as_secs_f64()
    );
    talk_and_finish(joiner, inviter, ["bob", "alice"]);

    // Both restarted, by name only.
    let started = Instant::now();
    let mut alice_peer = on_the_network(&net, 0, &alice, &["--peer", "bob"]);
    let mut bob_peer = on_the_network(&net, 1, &bob, &["--peer", "alice"]);
    expect_connected_directly(&mut alice_peer, "bob");
    expect_connected_directly(&mut bob_peer, "alice");
    println!(
        "connected by name in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for peer in [&alice_peer, &bob_peer] {
        let relayed = peer.lines_on(Stream::Stderr);
        let relayed = relayed.iter().find(|line| line.contains("through relay"));
        assert!(relayed.is_none(), "no relay was reachable: {relayed:?}");
    }

    // Each restarted while the other stays: one of them dials, the other accepts and
    // calls the dialer to dial again, both over the local network alone.
    let mut peers = [alice_peer, bob_peer];
    for (side, home, other) in [(0, &alice, "bob"), (1, &bob, "alice")] {
        drop(std::mem::replace(
            &mut peers[side],
            on_the_network(&net, side, home, &["--peer", other]),
        ));
        let started = Instant::now();
        expect_connected_directly(&mut peers[side], other);
        let [first, second] = &mut peers;
        let stayed = if side == 0 { second } else { first };
        stayed.expect(Stream::Stderr, &format!("Reconnected to {} ", home.name));
        println!(
            "{} back on the local network in {:.1} s",
            home.name,
            started.elapsed().as_secs_f64()
        );
    }
    let [alice_peer, bob_peer] = peers;
    talk_and_finish(alice_peer, bob_peer, ["alice", "bob"]);
}
