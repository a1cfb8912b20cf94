//! Network faults that need no key, injected by a TCP proxy in front of each listener:
//! half-closes either way, resets, stalls and a black-holed reconnect, each in the
//! middle of a transfer while both sides chat; and `/quit` through the proxies.

use crate::common;

use std::ops::Range;
use std::thread;
use std::time::{Duration, Instant};

use chat::frame::CREDIT_WINDOW;

use common::proxy::{
    ALICE, BOB, Conn, NAMES, Proxy, Session, Way, sha256_hex, shown_from, wait_both,
};
use common::{Peer, Stream, TIMEOUT, pseudo_random};

/// Lines each side types: half before the fault, half after.
const LINES: usize = 30;
const FILE_SIZE: usize = 24 << 20;
/// How much of the sender's direction crosses the proxy before the fault.
const FAULT_AFTER: u64 = 4 << 20;

fn type_lines(peers: &mut [Peer; 2], numbers: Range<usize>) {
    for i in numbers {
        for (peer, name) in peers.iter_mut().zip(NAMES) {
            peer.send(&format!("{name} line {i}"));
        }
    }
}

/// Whether `viewer` (called `other`) showed each of `name`'s lines once, in order.
fn line_problem(viewer: &Peer, name: &str, other: &str) -> Option<String> {
    let shown = shown_from(viewer, name);
    let expected: Vec<String> = (0..LINES).map(|i| format!("{name} line {i}")).collect();
    let at = (0..LINES.max(shown.len())).find(|&i| shown.get(i) != expected.get(i))?;
    Some(format!(
        "{other} showed {} of {name}'s {LINES} lines; at index {at}: {:?}, expected {:?}",
        shown.len(),
        shown.get(at),
        expected.get(at)
    ))
}

/// `sender` sends a file while both sides type; `fault` hits the sender's connection
/// (through its proxy) mid-transfer; both inputs end. Nothing may be lost, shown twice
/// or reported lost. Returns the session, for checks of the proxy.
fn fault_mid_transfer(sender: usize, seed: u64, fault: impl FnOnce(&Proxy, &Conn)) -> Session {
    let mut s = Session::start();
    let (receiver, proxy) = (1 - sender, &s.proxies[sender]);
    let data = pseudo_random(FILE_SIZE, seed);
    std::fs::write(s.peers[sender].workdir.join("big.bin"), &data).unwrap();
    s.peers[sender].send("transfer big.bin");
    type_lines(&mut s.peers, 0..LINES / 2);
    s.peers[receiver].expect(Stream::Stderr, "Receiving big.bin");
    let conn = proxy.current();
    let deadline = Instant::now() + TIMEOUT;
    while conn.forwarded(Way::ToListener) < FAULT_AFTER {
        if Instant::now() > deadline {
            s.assert_clean(&[format!("{FAULT_AFTER} bytes never crossed the proxy")]);
        }
        thread::sleep(Duration::from_millis(1));
    }
    let at = conn.forwarded(Way::ToListener);
    fault(proxy, &conn);
    type_lines(&mut s.peers, LINES / 2..LINES);
    s.peers.iter_mut().for_each(Peer::close_stdin);
    let exits = wait_both(&mut s.peers);

    let mut problems = Vec::new();
    if at >= FILE_SIZE as u64 {
        problems.push(format!("fault after {at} bytes: not mid-transfer"));
    }
    for (who, name) in NAMES.into_iter().enumerate() {
        problems.extend(line_problem(&s.peers[1 - who], name, NAMES[1 - who]));
        for line in s.peers[who].lines_on(Stream::Stderr) {
            let lower = line.to_lowercase();
            if lower.contains("were not delivered") || lower.contains("not sent") {
                problems.push(format!("{name} reported: {line}"));
            }
        }
    }
    let (rx, rx_name) = (&s.peers[receiver], NAMES[receiver]);
    let saved = |line: &&str| line.contains("Saved") && line.contains("(verified");
    if !rx.lines_on(Stream::Stderr).iter().any(saved) {
        problems.push(format!("{rx_name} never printed \"Saved … (verified\""));
    }
    match std::fs::read(rx.workdir.join("big.bin")) {
        Ok(got) if sha256_hex(&got) == sha256_hex(&data) => {}
        Ok(got) => problems.push(format!("{rx_name}'s big.bin differs ({} bytes)", got.len())),
        Err(err) => problems.push(format!("{rx_name}'s big.bin: {err}")),
    }
    problems.extend(exits);
    s.assert_clean(&problems);
    s
}

#[test]
fn fin_towards_the_listener_while_alice_sends() {
    fault_mid_transfer(ALICE, 31, |_, conn| conn.half_close(Way::ToListener));
}

#[test]
fn fin_towards_the_dialer_while_alice_sends() {
    fault_mid_transfer(ALICE, 32, |_, conn| conn.half_close(Way::ToDialer));
}

#[test]
fn fin_towards_the_listener_while_bob_sends() {
    fault_mid_transfer(BOB, 33, |_, conn| conn.half_close(Way::ToListener));
}

#[test]
fn fin_towards_the_dialer_while_bob_sends() {
    fault_mid_transfer(BOB, 34, |_, conn| conn.half_close(Way::ToDialer));
}

#[test]
fn reset_while_alice_sends() {
    fault_mid_transfer(ALICE, 35, |_, conn| conn.reset());
}

#[test]
fn three_second_stall_while_alice_sends() {
    fault_mid_transfer(ALICE, 36, |_, conn| conn.stall(Duration::from_secs(3)));
}

/// The first reconnect is accepted and never answered; the dialer's 10 s handshake
/// deadline must then let it try again.
#[test]
fn black_holed_reconnect_after_a_reset_while_alice_sends() {
    let s = fault_mid_transfer(ALICE, 37, |proxy, conn| {
        proxy.black_hole_next();
        conn.reset();
    });
    let proxy = &s.proxies[ALICE];
    let (accepted, black_holed) = proxy.counts();
    s.assert_clean(&match (accepted, black_holed) {
        (3.., 1) => vec![],
        _ => vec![format!(
            "accepted {accepted}, black-holed {black_holed}: not as meant"
        )],
    });
}

/// Bob types; alice quits, after seeing all of bob's lines or (`racing`) while bob is
/// still sending a burst. Bob must say that the peer left, exit 0 promptly, and list
/// what it could not deliver.
fn quit_through_the_proxies(racing: bool) {
    let mut s = Session::start();
    let [alice, bob] = &mut s.peers;
    alice.send("bye");
    bob.expect(Stream::Stdout, "alice: bye");
    let typed = if racing { 300 } else { LINES };
    let burst: Vec<String> = (0..typed).map(|i| format!("bob line {i}")).collect();
    bob.send(&burst.join("\n"));
    if !racing {
        alice.expect(Stream::Stdout, &format!("bob: bob line {}", typed - 1));
    }
    alice.send("/quit");
    let quit_at = Instant::now();
    let mut problems = wait_both(&mut s.peers);
    let took = quit_at.elapsed();
    // Both act on the Leave at once; a side that took the close for a loss would
    // keep retrying for --retry-for (60 s). The bound leaves room for a slow machine.
    if took > Duration::from_secs(15) {
        problems.push(format!("both exited only {took:?} after /quit"));
    }
    let bob_err = s.peers[BOB].lines_on(Stream::Stderr);
    if !bob_err.contains(&"The peer closed the connection") {
        problems.push("bob never said \"The peer closed the connection\"".into());
    }
    let shown = shown_from(&s.peers[ALICE], "bob");
    if let Some(at) = (0..shown.len()).find(|&i| burst.get(i) != shown.get(i)) {
        problems.push(format!(
            "alice showed {:?} where bob typed {:?}",
            shown[at],
            burst.get(at)
        ));
    }
    // Every line of bob's before the last one he lists was shown or listed (lines
    // bob's process had not read yet when it exited are not his to list).
    let reported: Vec<usize> = bob_err
        .iter()
        .filter_map(|line| {
            let text = (line.strip_prefix("  "))
                .or_else(|| line.strip_prefix("Not sent, the peer has left: "))?;
            text.strip_prefix("bob line ")?.parse().ok()
        })
        .collect();
    let last = reported.iter().max().map_or(0, |&last| last + 1);
    let vanished: Vec<usize> = (shown.len()..last)
        .filter(|i| !reported.contains(i))
        .collect();
    if !vanished.is_empty() {
        problems.push(format!(
            "bob's lines {vanished:?} were neither shown by alice ({} were) nor listed by bob",
            shown.len()
        ));
    }
    s.assert_clean(&problems);
}

#[test]
fn quit_through_the_proxies_ends_the_other_side_promptly() {
    quit_through_the_proxies(false);
}

#[test]
fn quit_while_the_other_side_types_ends_it_promptly_and_lists_what_was_lost() {
    quit_through_the_proxies(true);
}

#[test]
fn a_verdict_lost_after_the_file_was_stored_is_not_stored_twice() {
    let mut s = Session::start();
    // Within the first credit: the receiver's answers, lost from `FAULT_AFTER` on,
    // include the credit a larger file would wait for.
    let data = pseudo_random(CREDIT_WINDOW as usize - (1 << 20), 41);
    std::fs::write(s.peers[ALICE].workdir.join("big.bin"), &data).unwrap();
    s.peers[ALICE].send("transfer big.bin");
    s.peers[BOB].expect(Stream::Stderr, "Receiving big.bin");
    let conn = s.proxies[ALICE].current();
    let deadline = Instant::now() + TIMEOUT;
    while conn.forwarded(Way::ToListener) < FAULT_AFTER {
        assert!(Instant::now() < deadline, "the transfer never started");
        thread::sleep(Duration::from_millis(1));
    }
    // From here bob's answers to alice, his verdict among them, are lost on the path.
    conn.lose(Way::ToDialer);
    s.peers[BOB].expect(Stream::Stderr, "Saved ./big.bin (verified");
    conn.reset();
    // Nothing crossed the network the second time, and both sides say so.
    s.peers[ALICE].expect(
        Stream::Stderr,
        "bob already has big.bin (same SHA-256); nothing needed sending",
    );
    s.peers[BOB].expect(
        Stream::Stderr,
        "big.bin from alice is one you already received, as ./big.bin (same SHA-256); not copied again",
    );
    s.peers.iter_mut().for_each(Peer::close_stdin);
    let mut problems = wait_both(&mut s.peers);
    let stored = common::listing(&s.peers[BOB].workdir);
    if stored != ["big.bin"] {
        problems.push(format!("bob's folder holds {stored:?}"));
    }
    match std::fs::read(s.peers[BOB].workdir.join("big.bin")) {
        Ok(got) if sha256_hex(&got) == sha256_hex(&data) => {}
        other => problems.push(format!("bob's big.bin: {:?}", other.map(|got| got.len()))),
    }
    s.assert_clean(&problems);
}

/// Every write through both proxies cut into pieces of 1 to 7 bytes, from the dialer
/// and back: TLS records and frames arrive split anywhere, and nothing changes.
#[test]
fn writes_cut_into_pieces_of_one_to_seven_bytes_change_nothing() {
    let mut s = Session::start();
    for proxy in &s.proxies {
        proxy.fragment(Some(7));
    }
    let data = pseudo_random(256 << 10, 38);
    std::fs::write(s.peers[ALICE].workdir.join("small.bin"), &data).unwrap();
    s.peers[ALICE].send("transfer small.bin");
    type_lines(&mut s.peers, 0..LINES);
    s.peers[ALICE].expect(Stream::Stderr, "small.bin delivered and verified by bob");
    s.peers.iter_mut().for_each(Peer::close_stdin);
    let mut problems = wait_both(&mut s.peers);
    for (who, name) in NAMES.into_iter().enumerate() {
        problems.extend(line_problem(&s.peers[1 - who], name, NAMES[1 - who]));
    }
    match std::fs::read(s.peers[BOB].workdir.join("small.bin")) {
        Ok(got) if sha256_hex(&got) == sha256_hex(&data) => {}
        other => problems.push(format!("bob's small.bin: {:?}", other.map(|got| got.len()))),
    }
    s.assert_clean(&problems);
}
