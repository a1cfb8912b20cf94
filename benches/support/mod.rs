//! What the benches share: `chat` processes with their output on a channel, peak
//! memory, scratch files, and medians.

#![allow(dead_code)]

pub mod no_udp;
pub mod pair;
pub mod ssh;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `chat` built with the bench, or the one `BENCH_CHAT` names: two builds
/// measured by the same bench, one after the other.
pub static CHAT: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    std::env::var_os("BENCH_CHAT")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chat")), PathBuf::from)
});
pub const WAIT: Duration = Duration::from_secs(300);

/// A running `chat` with its output lines on a channel (stdout and stderr merged).
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command.spawn().expect("start chat");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Proc { child, lines }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }

    pub fn wait_line<T>(&mut self, mut matches: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .expect("chat said nothing in time");
            if let Some(found) = matches(&line) {
                return found;
            }
        }
    }

    pub fn finish(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            let _ = self.lines.recv_timeout(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

pub fn peak_rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU time (user and system) `child` has used so far, in seconds: on a shared
/// machine it varies much less than wall time, so it shows what a change costs.
pub fn cpu_seconds(child: &Child) -> f64 {
    static TICKS_PER_SECOND: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS_PER_SECOND.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    });
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks)
        })
        .unwrap_or(0.0)
}

/// Creates alice's and bob's identities in `scratch`/certs, where the pair helpers
/// look for them, and returns that folder.
pub fn make_identities(scratch: &Path) -> PathBuf {
    let certs = scratch.join("certs");
    for name in ["alice", "bob"] {
        run(Command::new(&*CHAT)
            .args(["certs", "--force", "--name", name, "--dir"])
            .arg(&certs));
    }
    certs
}

pub fn make_random_file(path: &Path, len: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == len) {
        return;
    }
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    let mut out = std::fs::File::create(path).unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = buffer.len().min(left as usize);
        urandom.read_exact(&mut buffer[..n]).unwrap();
        out.write_all(&buffer[..n]).unwrap();
        left -= n as u64;
    }
}

pub fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BENCH_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        return dir;
    }
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("chat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder a receiver writes into, and what it is: the repository's own disk, or
/// tmpfs, named by its file system.
pub struct Place {
    pub dir: PathBuf,
    /// `disk` or `tmpfs`.
    pub kind: &'static str,
    /// The kind, with the file system's type and the folder.
    pub label: String,
}

/// Where the receivers of the folder and transfer benches write: the repository's
/// own disk (a folder under `target/`, or `BENCH_DIR`), then tmpfs (`/dev/shm`)
/// where there is one. Each is emptied first, and removed at the end unless
/// `BENCH_DIR` chose it.
pub fn receiving_places() -> Vec<Place> {
    let pid = std::process::id();
    let disk = match std::env::var_os("BENCH_DIR") {
        Some(dir) => PathBuf::from(dir).join("received"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-received-{pid}")),
    };
    let mut places = vec![disk];
    if Path::new("/dev/shm").is_dir() {
        places.push(PathBuf::from(format!("/dev/shm/chat-bench-received-{pid}")));
    }
    places
        .into_iter()
        .zip(["disk", "tmpfs"])
        .map(|(dir, kind)| {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let dir = dir.canonicalize().unwrap();
            let label = format!("{kind} ({}, {})", file_system(&dir), dir.display());
            Place { dir, kind, label }
        })
        .collect()
}

impl Place {
    /// Takes away what a run received at `path`: on tmpfs it is removed, on a disk
    /// moved aside until [`Place::clean_up`], so that the next run does not make its
    /// files among freshly deleted ones (ext4 without a journal looks at each
    /// recently deleted inode every time it makes a file).
    pub fn discard(&self, path: &Path) {
        if !path.exists() {
            return;
        }
        if self.kind == "tmpfs" {
            let _ = std::fs::remove_dir_all(path);
            let _ = std::fs::remove_file(path);
            return;
        }
        static DISCARDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = DISCARDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let aside = self.dir.join("discarded");
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::rename(path, aside.join(number.to_string())).unwrap();
    }

    /// Removes the folder unless `BENCH_DIR` chose it; what was moved aside in it
    /// goes either way.
    pub fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("discarded"));
        if std::env::var_os("BENCH_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The type of the file system `path` is on, from the mount that holds it.
pub fn file_system(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let mount = mount.replace("\\040", " ");
            path.starts_with(&mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown file system".into(), |(_, kind)| kind)
}

/// Writes out what earlier runs left in the page cache (`sync`), so that a run does
/// not pay for the write-back of the one before it.
pub fn settle_disk() {
    let _ = Command::new("sync").status();
}

/// Seconds `sync -f` takes on the file system of `dir`: what making the bytes just
/// written there durable would still cost.
pub fn seconds_to_sync(dir: &Path) -> f64 {
    let start = Instant::now();
    let _ = Command::new("sync").arg("-f").arg(dir).status();
    start.elapsed().as_secs_f64()
}

pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value below which `percent` of `values` lie (nearest rank).
pub fn percentile(values: &[f64], percent: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
