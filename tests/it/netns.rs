//! Two peers in two network namespaces joined by a veth pair, with `tc netem` adding
//! 50 ms delay, 1 % loss and reordering where the kernel offers netem. Needs root and
//! iproute2; skipped with the reason printed otherwise.

use crate::common;

use std::time::Duration;

use chat::platform::DEAD_PEER_TIMEOUT;

use common::veth::{VethPair, run};
use common::{Peer, Stream, World, listing};
use sha2::{Digest, Sha256};

/// Adds the impairment on both ends; the error says why it could not.
fn impair(link: &VethPair) -> Result<(), String> {
    link.on_each_end("tc qdisc add dev {dev} root netem delay 50ms loss 1% reorder 25% 50%")
}

#[test]
fn a_transfer_and_chat_survive_an_impaired_link() {
    let link = match VethPair::create("i") {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED network-namespace test: {reason}");
            return;
        }
    };
    let impaired = match impair(&link) {
        Ok(()) => true,
        Err(reason) => {
            println!(
                "SKIPPED impairment: `tc qdisc add … netem` failed ({reason}); running over an unimpaired veth pair"
            );
            false
        }
    };
    let world = World::new();
    let (mut alice, mut bob) = connect_across(&world, &link);

    let size = if impaired { 64 << 20 } else { 16 << 20 };
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(alice.workdir.join("over-the-wire.bin"), &data).unwrap();
    alice.send("transfer over-the-wire.bin");
    for i in 0..50 {
        alice.send(&format!("line {i}"));
    }
    for i in 0..50 {
        bob.expect(Stream::Stdout, &format!("alice: line {i}"));
    }
    let saved = bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(
        saved.contains(&hex::encode(Sha256::digest(&data))),
        "{saved}"
    );
    assert_eq!(
        std::fs::read(bob.workdir.join("over-the-wire.bin")).unwrap(),
        data
    );
    assert_eq!(listing(&bob.workdir), ["over-the-wire.bin"]);
}

/// Alice in the first namespace and bob in the second, connected both ways.
fn connect_across(world: &World, link: &VethPair) -> (Peer, Peer) {
    connect_across_with(world, link, &[])
}

/// Like [`connect_across`], with `alice_extra` arguments for alice.
fn connect_across_with(world: &World, link: &VethPair, alice_extra: &[&str]) -> (Peer, Peer) {
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let home = |name: &str| {
        let dir = world.path().join(format!("{name}-home"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let args = |name: &str, listen: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.into(),
            "--certs-dir".into(),
            world.certs().display().to_string(),
            "--listen".into(),
            listen.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let [ns_a, ns_b] = &link.namespaces;
    let mut bob = Peer::start_in(
        &["ip", "netns", "exec", ns_b],
        &home("bob"),
        &args("bob", "10.203.0.2:0", &["--peer-fingerprint", &alice_fp]),
    );
    let target = format!("10.203.0.2:{}", bob.port);
    let mut alice = Peer::start_in(
        &["ip", "netns", "exec", ns_a],
        &home("alice"),
        &args("alice", "10.203.0.1:0", &{
            let mut extra = vec!["--connect", target.as_str(), "--peer-fingerprint", &bob_fp];
            extra.extend_from_slice(alice_extra);
            extra
        }),
    );
    bob.send(&format!("10.203.0.1:{}", alice.port));
    alice.expect_seen(Stream::Stderr, "Connected to bob at 10.203.0.2:");

    (alice, bob)
}

/// Neither namespace has a default route, so there is no router to ask: `--map-port`
/// says so, and what it tried, and the session goes on.
#[test]
fn map_port_without_a_router_warns_and_the_session_goes_on() {
    let link = match VethPair::create("m") {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED network-namespace test: {reason}");
            return;
        }
    };
    let world = World::new();
    let (mut alice, mut bob) = connect_across_with(&world, &link, &["--map-port"]);
    let warning = alice.expect_seen(Stream::Stderr, "Warning: the router did not forward a port");
    assert!(warning.contains("no router to ask"), "{warning}");
    assert!(warning.contains("tried PCP and UPnP-IGD"), "{warning}");
    alice.send("still here");
    bob.expect(Stream::Stdout, "alice: still here");
}

#[test]
fn a_silently_dead_link_is_noticed_and_the_chat_resumes_when_it_is_back() {
    let link = match VethPair::create("d") {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED network-namespace test: {reason}");
            return;
        }
    };
    let world = World::new();
    let (mut alice, mut bob) = connect_across(&world, &link);
    bob.expect_seen(Stream::Stderr, "Connected to alice at 10.203.0.1:");
    // Bob's end goes down: alice's packets are dropped without a word, as when a
    // cable is pulled or a NAT forgets the connection.
    let [_, ns_b] = &link.namespaces;
    let [_, dev_b] = &link.devices;
    run("ip", &format!("-n {ns_b} link set {dev_b} down")).unwrap();
    alice.send("typed into the void");
    let noticed = DEAD_PEER_TIMEOUT + Duration::from_secs(15);
    alice.expect_within(noticed, Stream::Stderr, "a lost connection", |line| {
        line.starts_with("Connection to the peer lost")
    });
    run("ip", &format!("-n {ns_b} link set {dev_b} up")).unwrap();
    alice.expect_within(noticed, Stream::Stderr, "a reconnect", |line| {
        line.starts_with("Reconnected to bob at 10.203.0.2:")
    });
    bob.expect_within(noticed, Stream::Stdout, "the line", |line| {
        line == "alice: typed into the void"
    });
    alice.close_stdin();
    bob.close_stdin();
    assert_eq!(alice.wait().code(), Some(0), "{}", alice.transcript());
    assert_eq!(bob.wait().code(), Some(0), "{}", bob.transcript());
    let shown = bob.lines_on(Stream::Stdout);
    let times = shown
        .iter()
        .filter(|l| **l == "alice: typed into the void")
        .count();
    assert_eq!(times, 1, "{}", bob.transcript());
}
