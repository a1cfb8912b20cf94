//! A user-space TCP proxy in front of a peer's listener that injects faults needing
//! no key (half-closes either way, resets, stalls, lost bytes, black-holed
//! connections, writes cut into small pieces), and a session of alice and bob each
//! dialling the other through one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Peer, SeededRng, Stream, TIMEOUT, World};

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the dialer to the listener: the dialer's lines and file data.
    ToListener = 0,
    /// From the listener back to the dialer: acknowledgements and verdicts.
    ToDialer = 1,
}

/// One proxied connection: the dialer's socket (`down`) and ours to the listener (`up`).
#[derive(Debug)]
pub struct Conn {
    down: TcpStream,
    up: TcpStream,
    /// Per way: set once a fault or a vanished destination has ended that way; later
    /// bytes are read and dropped, as if lost, so that the proxy never blocks a writer.
    ended: [Mutex<bool>; 2],
    forwarded: [AtomicU64; 2],
    stalled_until: Mutex<Option<Instant>>,
    /// Per way: once that many bytes have crossed it, stall both ways for how long.
    stall_after: [Mutex<Option<(u64, Duration)>>; 2],
    /// The proxy's setting, read before every write: 0 forwards what each read
    /// returned in one write, `n` cuts it into writes of 1 to `n` bytes.
    max_piece: Arc<AtomicUsize>,
    /// Where this connection's piece sizes come from, so that a seed replays them.
    pieces_seed: u64,
}

impl Conn {
    /// Sends a FIN that the other end never sent: towards the listener on `ToListener`,
    /// towards the dialer on `ToDialer`. The other way keeps running.
    pub fn half_close(&self, way: Way) {
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
    pub fn lose(&self, way: Way) {
        *self.ended[way as usize].lock().unwrap() = true;
    }

    /// Closes both sockets at once, without any TLS close (no SO_LINGER 0 in std).
    pub fn reset(&self) {
        let _ = self.down.shutdown(Shutdown::Both);
        let _ = self.up.shutdown(Shutdown::Both);
    }

    /// Forwards nothing either way for `how_long`, then carries on.
    pub fn stall(&self, how_long: Duration) {
        *self.stalled_until.lock().unwrap() = Some(Instant::now() + how_long);
    }

    /// Stalls both ways for `how_long` once `bytes` have crossed `way`: a fault placed
    /// mid-transfer however fast the transfer runs.
    pub fn stall_after(&self, way: Way, bytes: u64, how_long: Duration) {
        *self.stall_after[way as usize].lock().unwrap() = Some((bytes, how_long));
    }

    /// Waits until a stall set with [`Conn::stall_after`] has begun.
    pub fn wait_stalled(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.stalled_until.lock().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the proxy never stalled");
            thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn forwarded(&self, way: Way) -> u64 {
        self.forwarded[way as usize].load(Ordering::SeqCst)
    }
}

/// Copies one way of `conn` until its source ends, then passes the FIN on; a source
/// that fails (a reset) closes both sockets.
fn pump(conn: Arc<Conn>, way: Way) {
    let (mut from, to) = match way {
        Way::ToListener => (&conn.down, &conn.up),
        Way::ToDialer => (&conn.up, &conn.down),
    };
    let mut pieces = SeededRng::new(conn.pieces_seed.wrapping_add(way as u64));
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
        let stall_after = conn.stall_after[way as usize]
            .lock()
            .unwrap()
            .take_if(|(bytes, _)| conn.forwarded[way as usize].load(Ordering::SeqCst) >= *bytes);
        if let Some((_, how_long)) = stall_after {
            conn.stall(how_long);
        }
        let stalled_until = *conn.stalled_until.lock().unwrap();
        if let Some(until) = stalled_until {
            thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let mut ended = conn.ended[way as usize].lock().unwrap();
        if *ended {
            continue;
        }
        let max_piece = conn.max_piece.load(Ordering::SeqCst);
        // The destination is gone. What it sent before it went is still to be read by
        // the other way, which then resets both: leave that way alone until then.
        if write_in_pieces(to, &buffer[..n], max_piece, &mut pieces).is_err() {
            *ended = true;
            continue;
        }
        conn.forwarded[way as usize].fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Writes `data` whole when `max_piece` is 0, else in writes of 1 to `max_piece` bytes,
/// each its own segment (the sockets have `TCP_NODELAY`): a reader then sees TLS
/// records and frames split anywhere.
fn write_in_pieces(
    mut to: &TcpStream,
    mut data: &[u8],
    max_piece: usize,
    pieces: &mut SeededRng,
) -> std::io::Result<()> {
    if max_piece == 0 {
        return to.write_all(data);
    }
    while !data.is_empty() {
        let piece = (pieces.below(max_piece as u64) as usize + 1).min(data.len());
        to.write_all(&data[..piece])?;
        data = &data[piece..];
    }
    Ok(())
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
    /// Largest write when cutting writes into pieces; 0 when not (see [`Conn`]).
    max_piece: Arc<AtomicUsize>,
    seed: u64,
    forwarded_connections: AtomicU64,
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
        let number = self.forwarded_connections.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn {
            down,
            up,
            ended: Default::default(),
            forwarded: Default::default(),
            stalled_until: Mutex::new(None),
            stall_after: Default::default(),
            max_piece: self.max_piece.clone(),
            pieces_seed: SeededRng::new(self.seed ^ number).next_u64(),
        });
        *self.current.lock().unwrap() = Some(conn.clone());
        for way in [Way::ToListener, Way::ToDialer] {
            let conn = conn.clone();
            thread::spawn(move || pump(conn, way));
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of one peer's listener.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn new() -> Proxy {
        Self::seeded(0)
    }

    /// A proxy whose pieces, once [`Proxy::fragment`] asks for them, follow `seed`.
    pub fn seeded(seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            seed,
            ..Shared::default()
        });
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

    pub fn set_upstream(&self, port: u16) {
        *self.shared.upstream.lock().unwrap() = Some(port);
        self.shared.upstream_known.notify_all();
    }

    /// The connection forwarded most recently.
    pub fn current(&self) -> Arc<Conn> {
        let current = self.shared.current.lock().unwrap();
        current
            .clone()
            .expect("a connection went through the proxy")
    }

    /// The next connection is accepted and then held open, silent, forever.
    pub fn black_hole_next(&self) {
        self.shared.black_hole_next.store(true, Ordering::SeqCst);
    }

    /// From now on, on every connection, forwards in writes of 1 to `max_piece` bytes
    /// (`Some`), or as it reads (`None`).
    pub fn fragment(&self, max_piece: Option<usize>) {
        let max_piece = max_piece.map_or(0, |max| max.max(1));
        self.shared.max_piece.store(max_piece, Ordering::SeqCst);
    }

    /// How many connections were accepted, and how many of them were black-holed.
    pub fn counts(&self) -> (usize, usize) {
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

pub const ALICE: usize = 0;
pub const BOB: usize = 1;
pub const NAMES: [&str; 2] = ["alice", "bob"];

/// Alice and bob, each dialling the other through the proxy in front of its listener.
/// `proxies[i]` is the one peer `i` dials: it carries `i`'s lines and files. Fields
/// drop in order: processes first, then proxies, then the folder.
pub struct Session {
    pub peers: [Peer; 2],
    pub proxies: [Proxy; 2],
    /// Each peer's certificate fingerprint, to pin it when the other restarts.
    pub fingerprints: [String; 2],
    pub world: World,
}

impl Session {
    pub fn start() -> Session {
        Self::start_with([Proxy::new(), Proxy::new()])
    }

    /// Like [`Session::start`], through proxies the caller made (seeded ones, say).
    pub fn start_with(proxies: [Proxy; 2]) -> Session {
        let world = World::new();
        let fingerprints = NAMES.map(|name| world.identity(name));
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
            fingerprints,
            world,
        }
    }

    /// Panics with `problems` and both transcripts, if there are any problems.
    pub fn assert_clean(&self, problems: &[String]) {
        assert!(
            problems.is_empty(),
            "{}\n\nalice's transcript:\n{}\n\nbob's transcript:\n{}",
            problems.join("\n"),
            self.peers[ALICE].transcript(),
            self.peers[BOB].transcript()
        );
    }
}

/// Waits, with one deadline for both, until both processes exit; kills what is
/// left. Problems are returned for an exit that is not a clean one.
pub fn wait_both(peers: &mut [Peer; 2]) -> Vec<String> {
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
pub fn shown_from(viewer: &Peer, name: &str) -> Vec<String> {
    let prefix = format!("{name}: ");
    (viewer.lines_on(Stream::Stdout).into_iter())
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
