//! A harness that runs real `chat` processes in a temporary folder and waits,
//! always with a deadline, for the lines a user would see.

#![allow(dead_code)]

pub mod case_folder;
pub mod crowd;
pub mod far;
pub mod home;
pub mod proxy;
pub mod pty;
pub mod relay;
pub mod two_homes;
pub mod veth;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chat");
/// Generous, because CI machines are slow; a passing test never waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Deterministic bytes that do not repeat with any short period.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A seeded source of choices (SplitMix64), so that a run can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number from 0 to `n - 1`; `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number from `range`, both ends included.
    pub fn within(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let (low, high) = range.into_inner();
        low + self.below(high - low + 1)
    }

    /// True `percent` times in a hundred.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The names in `dir`, sorted, for exact assertions about what landed on disk.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The folder inside a download folder where unfinished transfers are kept.
pub const PARTS_DIR: &str = ".chat-parts";

/// The kept part files (without their metas) under `download_dir`, sorted.
pub fn kept_parts(download_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(download_dir.join(PARTS_DIR)) else {
        return Vec::new();
    };
    let mut parts: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "part"))
        .collect();
    parts.sort();
    parts
}

/// What the private parts folder holds: how many parts and how many metas.
pub fn kept_counts(download_dir: &Path) -> (usize, usize) {
    let names = match std::fs::read_dir(download_dir.join(PARTS_DIR)) {
        Ok(_) => listing(&download_dir.join(PARTS_DIR)),
        Err(_) => Vec::new(),
    };
    let parts = names.iter().filter(|name| name.ends_with(".part")).count();
    let metas = names.iter().filter(|name| name.ends_with(".meta")).count();
    (parts, metas)
}

/// Waits, with a deadline, until one kept part under `download_dir` holds at least
/// `bytes`, and returns its path.
pub fn wait_for_kept_part(download_dir: &Path, bytes: u64) -> PathBuf {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let grown = kept_parts(download_dir)
            .into_iter()
            .find(|part| std::fs::metadata(part).map_or(0, |m| m.len()) >= bytes);
        if let Some(part) = grown {
            return part;
        }
        assert!(
            Instant::now() < deadline,
            "no kept part in {} grew to {bytes} bytes",
            download_dir.display()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A temporary folder holding identities and the peers' working directories.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> PathBuf {
        self.path().join("certs")
    }

    /// Creates an identity with `chat certs` and returns its fingerprint.
    pub fn identity(&self, name: &str) -> String {
        let output = Command::new(BIN)
            .args(["certs", "--name", name, "--dir"])
            .arg(self.certs())
            .output()
            .expect("run chat certs");
        assert!(output.status.success(), "chat certs failed: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let fingerprint = stdout
            .lines()
            .find_map(|line| line.strip_prefix("Fingerprint: "))
            .expect("chat certs prints the fingerprint")
            .to_owned();
        assert_eq!(fingerprint.len(), 64);
        fingerprint
    }

    /// Starts `name` again in its usual folder, listening on `port` and dialling
    /// `target` on 127.0.0.1, pinning `peer_fp`: a peer restarted as a user would.
    pub fn restart(&self, name: &str, port: u16, target: u16, peer_fp: &str) -> Peer {
        Peer::start(
            &self.path().join(format!("{name}-home")),
            &[
                "--name".into(),
                name.into(),
                "--certs-dir".into(),
                self.certs().display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--connect".into(),
                target.to_string(),
                "--peer-fingerprint".into(),
                peer_fp.into(),
            ],
        )
    }

    /// The fingerprint of the identity `name`, as `chat fingerprint` prints it.
    pub fn identity_fingerprint(&self, name: &str) -> String {
        let output = Command::new(BIN)
            .arg("fingerprint")
            .arg(self.certs().join(format!("{name}.crt")))
            .output()
            .expect("run chat fingerprint");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Starts a peer called `name` with its identity from this world's certs folder,
    /// listening on 127.0.0.1 with a port the OS picks, plus `extra` arguments.
    pub fn peer(&self, name: &str, extra: &[&str]) -> Peer {
        self.peer_in(&[], name, extra)
    }

    /// Like [`World::peer`], with the binary run through `wrapper`.
    pub fn peer_in(&self, wrapper: &[&str], name: &str, extra: &[&str]) -> Peer {
        let workdir = self.path().join(format!("{name}-home"));
        std::fs::create_dir_all(&workdir).unwrap();
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.into(),
            "--certs-dir".into(),
            self.certs().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Peer::start_in(wrapper, &workdir, &args)
    }
}

/// What runs `chat` as a user whom file permissions bind: nothing for a user, and
/// for root `setpriv` without the capabilities that let root read and write any
/// file, so that a folder closed to its owner is closed to the test too.
pub fn bound_by_permissions() -> Vec<&'static str> {
    let root = proc_status(std::process::id(), "Uid:") == Some(0);
    match root {
        true => vec![
            "setpriv",
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ],
        false => Vec::new(),
    }
}

/// A running `chat` process.
pub struct Peer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Stream, String)>,
    /// Every line received so far, in arrival order.
    pub history: Vec<(Stream, String)>,
    /// Index into `history` of the next line `expect` looks at, per stream.
    cursor: [usize; 2],
    pub fingerprint: String,
    pub port: u16,
    pub workdir: PathBuf,
}

impl Peer {
    /// Starts the binary and waits for its `Fingerprint:` and `Listening on port` lines.
    pub fn start(workdir: &Path, args: &[String]) -> Peer {
        Self::start_in(&[], workdir, args)
    }

    /// Like [`Peer::start`], with the binary run through `wrapper` (for example
    /// `ip netns exec NAME`).
    pub fn start_in(wrapper: &[&str], workdir: &Path, args: &[String]) -> Peer {
        Self::start_with(wrapper, &[], workdir, args)
    }

    /// Like [`Peer::start`], with `env` added to the environment.
    pub fn start_with_env(env: &[(&str, &str)], workdir: &Path, args: &[String]) -> Peer {
        Self::start_with(&[], env, workdir, args)
    }

    fn start_with(wrapper: &[&str], env: &[(&str, &str)], workdir: &Path, args: &[String]) -> Peer {
        let mut peer = Self::spawn_with(wrapper, env, workdir, args);
        let fingerprint = peer.expect(Stream::Stdout, "Fingerprint: ");
        peer.fingerprint = fingerprint["Fingerprint: ".len()..].to_owned();
        let listening = peer.expect(Stream::Stdout, "Listening on port ");
        peer.port = listening["Listening on port ".len()..].parse().unwrap();
        peer
    }

    /// Like [`Peer::start`], but standard output is handed back unread once the two
    /// ready lines are in, as a terminal or pipe that stops being read: the harness
    /// sees only standard error.
    pub fn start_with_stalled_stdout(workdir: &Path, args: &[String]) -> (Peer, ChildStdout) {
        let mut child = spawn_child(&[], &[], workdir, args);
        let mut stdout = child.stdout.take().unwrap();
        // Byte by byte, so that nothing after the ready lines is taken from the pipe.
        let mut ready = Vec::new();
        let mut byte = [0u8];
        while ready.iter().filter(|&&b| b == b'\n').count() < 2 {
            assert_eq!(stdout.read(&mut byte).unwrap(), 1, "chat exited early");
            ready.push(byte[0]);
        }
        let ready = String::from_utf8(ready).unwrap();
        let (tx, lines) = mpsc::channel();
        read_lines(child.stderr.take().unwrap(), Stream::Stderr, tx);
        let field = |prefix: &str| {
            ready
                .lines()
                .find_map(|line| line.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {ready:?}"))
                .to_owned()
        };
        let peer = Peer {
            stdin: child.stdin.take(),
            fingerprint: field("Fingerprint: "),
            port: field("Listening on port ").parse().unwrap(),
            child,
            lines,
            history: Vec::new(),
            cursor: [0, 0],
            workdir: workdir.to_owned(),
        };
        (peer, stdout)
    }

    /// Starts the binary without waiting for anything.
    pub fn spawn(workdir: &Path, args: &[String]) -> Peer {
        Self::spawn_in(&[], workdir, args)
    }

    /// Like [`Peer::spawn`], with `env` added to the environment.
    pub fn spawn_with_env(env: &[(&str, &str)], workdir: &Path, args: &[String]) -> Peer {
        Self::spawn_with(&[], env, workdir, args)
    }

    pub fn spawn_in(wrapper: &[&str], workdir: &Path, args: &[String]) -> Peer {
        Self::spawn_with(wrapper, &[], workdir, args)
    }

    fn spawn_with(wrapper: &[&str], env: &[(&str, &str)], workdir: &Path, args: &[String]) -> Peer {
        let mut child = spawn_child(wrapper, env, workdir, args);
        let (tx, lines) = mpsc::channel();
        read_lines(child.stdout.take().unwrap(), Stream::Stdout, tx.clone());
        read_lines(child.stderr.take().unwrap(), Stream::Stderr, tx);
        Peer {
            stdin: child.stdin.take(),
            child,
            lines,
            history: Vec::new(),
            cursor: [0, 0],
            fingerprint: String::new(),
            port: 0,
            workdir: workdir.to_owned(),
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Ends standard input, as Ctrl-D or the end of a script does.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a line on `stream` containing `needle`, after the last line matched
    /// on that stream, and returns it. Panics with everything seen on timeout.
    pub fn expect(&mut self, stream: Stream, needle: &str) -> String {
        self.expect_where(stream, needle, |line| line.contains(needle))
    }

    /// Like [`Peer::expect`], with a predicate.
    pub fn expect_where(
        &mut self,
        stream: Stream,
        description: &str,
        matches: impl FnMut(&str) -> bool,
    ) -> String {
        self.expect_within(TIMEOUT, stream, description, matches)
    }

    /// Like [`Peer::expect_where`], with a deadline of `within` instead of [`TIMEOUT`],
    /// for events whose timing the kernel decides (a dead link noticed).
    pub fn expect_within(
        &mut self,
        within: Duration,
        stream: Stream,
        description: &str,
        mut matches: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        let slot = stream as usize;
        loop {
            while self.cursor[slot] < self.history.len() {
                let index = self.cursor[slot];
                self.cursor[slot] += 1;
                let (from, line) = &self.history[index];
                if *from == stream && matches(line) {
                    return line.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.history.push(line),
                Err(_) => panic!(
                    "timed out waiting for {stream:?} line {description:?}; seen:\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// Waits until a line on `stream` containing `needle` has been seen at any time,
    /// for events whose order relative to others does not matter. Leaves the cursor alone.
    pub fn expect_seen(&mut self, stream: Stream, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut checked = 0;
        loop {
            let found = self.history[checked..]
                .iter()
                .find(|(from, line)| *from == stream && line.contains(needle));
            if let Some((_, line)) = found {
                return line.clone();
            }
            checked = self.history.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.history.push(line),
                Err(_) => panic!(
                    "timed out waiting for {stream:?} line {needle:?}; seen:\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// Waits until a line on `stream` from `history[from]` on satisfies `matches`, at
    /// most until `deadline`, and says whether one did. Unlike [`Peer::expect`] it
    /// never panics, for callers that report a failure with context of their own; it
    /// leaves the cursors alone. A process that has exited returns at once.
    pub fn wait_for(
        &mut self,
        from: usize,
        deadline: Instant,
        stream: Stream,
        mut matches: impl FnMut(&str) -> bool,
    ) -> bool {
        let mut checked = from.min(self.history.len());
        loop {
            let found = self.history[checked..]
                .iter()
                .any(|(from, line)| *from == stream && matches(line));
            if found {
                return true;
            }
            checked = self.history.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.history.push(line);
                    self.collect();
                }
                Err(_) => return false,
            }
        }
    }

    /// Moves every line already read from the process into `history`, without waiting.
    pub fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.history.push(line);
        }
    }

    /// Collects output until the process closes both streams, with a deadline.
    pub fn drain(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.history.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("process did not exit; seen:\n{}", self.transcript())
                }
            }
        }
    }

    /// Waits for the process to exit: its output streams close when it does, so
    /// draining them with a deadline bounds the wait.
    pub fn wait(&mut self) -> ExitStatus {
        self.drain();
        self.child.wait().expect("wait for chat")
    }

    /// Sends a signal by name, as a user's `kill -NAME` would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// All output so far, for failure messages.
    pub fn transcript(&self) -> String {
        self.history
            .iter()
            .map(|(stream, line)| format!("  {stream:?}: {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every line seen on `stream` so far.
    pub fn lines_on(&self, stream: Stream) -> Vec<&str> {
        self.history
            .iter()
            .filter(|(from, _)| *from == stream)
            .map(|(_, line)| line.as_str())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in `workdir`, through `wrapper` if any, with `env` added to
/// its environment and all three standard streams piped.
fn spawn_child(wrapper: &[&str], env: &[(&str, &str)], workdir: &Path, args: &[String]) -> Child {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(BIN);
            command
        }
        None => Command::new(BIN),
    };
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat")
}

/// A number from `/proc/PID/status`, such as `VmHWM:` (peak RSS, KiB) or `Threads:`.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn read_lines(stream: impl Read + Send + 'static, tag: Stream, tx: mpsc::Sender<(Stream, String)>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    if tx.send((tag, line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Two peers, alice and bob, connected both ways, following the original flow:
/// alice is asked for the target, bob is given it on the command line.
pub struct Pair {
    pub world: World,
    pub alice: Peer,
    pub bob: Peer,
}

impl Pair {
    pub fn connect(extra: &[&str]) -> Pair {
        Self::connect_in(World::new(), extra)
    }

    /// Like [`Pair::connect`], in a world the caller has prepared.
    pub fn connect_in(world: World, extra: &[&str]) -> Pair {
        Self::connect_with_alice_in(&[], world, extra)
    }

    /// Like [`Pair::connect_in`], with alice's binary run through `wrapper`.
    pub fn connect_with_alice_in(wrapper: &[&str], world: World, extra: &[&str]) -> Pair {
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        Self::connect_with(wrapper, world, &alice_fp, &bob_fp, extra)
    }

    /// Like [`Pair::connect_in`], with the identities a session before made: both
    /// peers started again, as users would after a restart.
    pub fn connect_again(world: World, extra: &[&str]) -> Pair {
        let alice_fp = world.identity_fingerprint("alice");
        let bob_fp = world.identity_fingerprint("bob");
        Self::connect_with(&[], world, &alice_fp, &bob_fp, extra)
    }

    fn connect_with(
        alice_wrapper: &[&str],
        world: World,
        alice_fp: &str,
        bob_fp: &str,
        extra: &[&str],
    ) -> Pair {
        let mut alice_args = vec!["--peer-fingerprint", bob_fp];
        alice_args.extend_from_slice(extra);
        let mut alice = world.peer_in(alice_wrapper, "alice", &alice_args);
        let alice_port = alice.port.to_string();
        let mut bob_args = vec!["--connect", &alice_port, "--peer-fingerprint", alice_fp];
        bob_args.extend_from_slice(extra);
        let mut bob = world.peer("bob", &bob_args);
        alice.send(&bob.port.to_string());
        // A prompt's line ends once the answer is read, when input is not a terminal.
        alice.expect(Stream::Stdout, "Enter the target port number: ");
        alice.expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
        alice.expect_seen(Stream::Stderr, "bob connected from 127.0.0.1:");
        bob.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
        bob.expect_seen(Stream::Stderr, "alice connected from 127.0.0.1:");
        Pair { world, alice, bob }
    }
}

/// Waits until `path` last changed long enough ago for its hash to be cached.
pub fn wait_until_settled(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let settled = std::time::Duration::from_millis(2100);
    loop {
        let stamp = chat::platform::file_stamp(&std::fs::File::open(path).unwrap()).unwrap();
        if stamp.settled_before(std::time::SystemTime::now(), settled) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clock does not move"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
