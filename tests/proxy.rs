//! Network faults that need no key, injected by a TCP proxy in front of each listener:
//! half-closes either way, resets, stalls and a black-holed reconnect, each in the
//! middle of a transfer while both sides chat; and `/quit` through the proxies.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Peer, Stream, TIMEOUT, World, pseudo_random};
use sha2::{Digest, Sha256};

/// Lines each side types: half before the fault, half after.
const LINES: usize = 30;
const FILE_SIZE: usize = 24 << 20;
/// How much of the sender's direction crosses the proxy before the fault.
const FAULT_AFTER: u64 = 4 << 20;

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// From the dialer to the listener: the dialer's lines and file data.
    ToListener = 0,
    /// From the listener back to the dialer: acknowledgements and verdicts.
    ToDialer = 1,
}

/// One proxied connection: the dialer's socket (`down`) and ours to the listener (`up`).
#[derive(Debug)]
struct Conn {
    down: TcpStream,
    up: TcpStream,
    /// Per way: set once a fault or a vanished destination has ended that way; later
    /// bytes are read and dropped, as if lost, so that the proxy never blocks a writer.
    ended: [Mutex<bool>; 2],
    forwarded: [AtomicU64; 2],
    stalled_until: Mutex<Option<Instant>>,
}

impl Conn {
    /// Sends a FIN that the other end never sent: towards the listener on `ToListener`,
    /// towards the dialer on `ToDialer`. The other way keeps running.
    fn half_close(&self, way: Way) {
        let mut ended = self.ended[way as usize].lock().unwrap();
        *ended = true;
        let socket = match way {
            Way::ToListener => &self.up,
            Way::ToDialer => &self.down,
        };
        let _ = socket.shutdown(Shutdown::Write);
    }

    /// From now on drops what travels `way`, sending nothing in its place: bytes lost
    /// on the path, with no FIN.
    fn lose(&self, way: Way) {
        *self.ended[way as usize].lock().unwrap() = true;
    }

    /// Closes both sockets at once, without any TLS close (no SO_LINGER 0 in std).
    fn reset(&self) {
        let _ = self.down.shutdown(Shutdown::Both);
        let _ = self.up.shutdown(Shutdown::Both);
    }

    /// Forwards nothing either way for `how_long`, then carries on.
    fn stall(&self, how_long: Duration) {
        *self.stalled_until.lock().unwrap() = Some(Instant::now() + how_long);
    }

    fn forwarded(&self, way: Way) -> u64 {
        self.forwarded[way as usize].load(Ordering::SeqCst)
    }
}

/// Copies one way of `conn` until its source ends, then passes the FIN on; a source
/// that fails (a reset) closes both sockets.
fn pump(conn: Arc<Conn>, way: Way) {
    let (mut from, mut to) = match way {
        Way::ToListener => (&conn.down, &conn.up),
        Way::ToDialer => (&conn.up, &conn.down),
    };
    let mut buffer = vec![0; 64 << 10];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => return conn.reset(),
        };
        let stalled_until = *conn.stalled_until.lock().unwrap();
        if let Some(until) = stalled_until {
            thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let mut ended = conn.ended[way as usize].lock().unwrap();
        if *ended {
            continue;
        }
        // The destination is gone. What it sent before it went is still to be read by
        // the other way, which then resets both: leave that way alone until then.
        if to.write_all(&buffer[..n]).is_err() {
            *ended = true;
            continue;
        }
        conn.forwarded[way as usize].fetch_add(n as u64, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// The listener's port, known once it is up; connections wait for it.
    upstream: Mutex<Option<u16>>,
    upstream_known: Condvar,
    current: Mutex<Option<Arc<Conn>>>,
    black_hole_next: AtomicBool,
    /// Connections accepted into the black hole, held open and never read.
    black_holed: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    stopped: AtomicBool,
}

impl Shared {
    fn forward(&self, down: TcpStream) {
        let known = self.upstream.lock().unwrap();
        let (known, _) = self
            .upstream_known
            .wait_timeout_while(known, TIMEOUT, |port| port.is_none())
            .unwrap();
        let Some(port) = *known else { return };
        drop(known);
        // Dropping the dialer's connection makes it retry, as a refused one would.
        let Ok(up) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let conn = Arc::new(Conn {
            down,
            up,
            ended: Default::default(),
            forwarded: Default::default(),
            stalled_until: Mutex::new(None),
        });
        *self.current.lock().unwrap() = Some(conn.clone());
        for way in [Way::ToListener, Way::ToDialer] {
            let conn = conn.clone();
            thread::spawn(move || pump(conn, way));
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of one peer's listener.
struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    fn new() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::spawn(move || {
            for dialer in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(dialer) = dialer else { continue };
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                if accepting.black_hole_next.swap(false, Ordering::SeqCst) {
                    accepting.black_holed.lock().unwrap().push(dialer);
                    continue;
                }
                let shared = accepting.clone();
                thread::spawn(move || shared.forward(dialer));
            }
        });
        Proxy { port, shared }
    }

    fn set_upstream(&self, port: u16) {
        *self.shared.upstream.lock().unwrap() = Some(port);
        self.shared.upstream_known.notify_all();
    }

    /// The connection forwarded most recently.
    fn current(&self) -> Arc<Conn> {
        let current = self.shared.current.lock().unwrap();
        current
            .clone()
            .expect("a connection went through the proxy")
    }

    /// The next connection is accepted and then held open, silent, forever.
    fn black_hole_next(&self) {
        self.shared.black_hole_next.store(true, Ordering::SeqCst);
    }

    /// How many connections were accepted, and how many of them were black-holed.
    fn counts(&self) -> (usize, usize) {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        (accepted, self.shared.black_holed.lock().unwrap().len())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stopped` and lets its sockets go.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

const ALICE: usize = 0;
const BOB: usize = 1;
const NAMES: [&str; 2] = ["alice", "bob"];

/// Alice and bob, each dialling the other through the proxy in front of its listener.
/// `proxies[i]` is the one peer `i` dials: it carries `i`'s lines and files. Fields
/// drop in order: processes first, then proxies, then the folder.
struct Session {
    peers: [Peer; 2],
    proxies: [Proxy; 2],
    _world: World,
}

impl Session {
    fn start() -> Session {
        let world = World::new();
        let fingerprints = NAMES.map(|name| world.identity(name));
        let proxies = [Proxy::new(), Proxy::new()];
        let start = |who: usize| {
            let target = proxies[who].port.to_string();
            let fingerprint = &fingerprints[1 - who];
            let args = ["--connect", &target, "--peer-fingerprint", fingerprint];
            world.peer(NAMES[who], &[&args[..], &["--retry-for", "60s"]].concat())
        };
        // Alice's first dial waits inside her proxy until bob is listening.
        let alice = start(ALICE);
        proxies[BOB].set_upstream(alice.port);
        let bob = start(BOB);
        proxies[ALICE].set_upstream(bob.port);
        let mut peers = [alice, bob];
        for (who, peer) in peers.iter_mut().enumerate() {
            let (other, port) = (NAMES[1 - who], proxies[who].port);
            let outbound = format!("Connected to {other} at 127.0.0.1:{port}");
            peer.expect_seen(Stream::Stderr, &outbound);
            peer.expect_seen(
                Stream::Stderr,
                &format!("{other} connected from 127.0.0.1:"),
            );
        }
        Session {
            peers,
            proxies,
            _world: world,
        }
    }

    /// Panics with `problems` and both transcripts, if there are any problems.
    fn assert_clean(&self, problems: &[String]) {
        assert!(
            problems.is_empty(),
            "{}\n\nalice's transcript:\n{}\n\nbob's transcript:\n{}",
            problems.join("\n"),
            self.peers[ALICE].transcript(),
            self.peers[BOB].transcript()
        );
    }
}

fn type_lines(peers: &mut [Peer; 2], numbers: Range<usize>) {
    for i in numbers {
        for (peer, name) in peers.iter_mut().zip(NAMES) {
            peer.send(&format!("{name} line {i}"));
        }
    }
}

/// Waits, with one deadline for both, until both processes exit; kills what is
/// left. Problems are returned for an exit that is not a clean one.
fn wait_both(peers: &mut [Peer; 2]) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut problems = Vec::new();
    for (peer, name) in peers.iter_mut().zip(NAMES) {
        let status = loop {
            let status = peer.child.try_wait().unwrap();
            if status.is_some() || Instant::now() > deadline {
                break status;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let _ = peer.child.kill();
        peer.drain();
        match status {
            Some(status) if status.code() == Some(0) => {}
            Some(status) => problems.push(format!("{name} exited with {status}, not 0")),
            None => problems.push(format!("{name} did not exit within {TIMEOUT:?}; killed")),
        }
    }
    problems
}

/// The lines from `name` that `viewer` showed, without the `name: ` prefix.
fn shown_from(viewer: &Peer, name: &str) -> Vec<String> {
    let prefix = format!("{name}: ");
    (viewer.lines_on(Stream::Stdout).into_iter())
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
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

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
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
    let data = pseudo_random(FILE_SIZE, 41);
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
    s.peers[ALICE].expect(Stream::Stderr, "big.bin delivered and verified by bob");
    let note = s.peers[BOB].expect(Stream::Stderr, "already saved as ./big.bin");
    assert!(note.contains("not stored again"), "{note}");
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
