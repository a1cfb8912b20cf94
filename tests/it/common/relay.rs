//! A real iroh relay for the reach tests: `examples/relay.rs` (iroh-relay's server)
//! as its own process, on an address of its own, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;

use super::TIMEOUT;

/// A running relay.
pub struct Relay {
    child: Child,
    /// Closing it tells the relay to stop.
    _stdin: ChildStdin,
    pub url: String,
    /// The relay's self-signed certificate, to pass as `--relay-ca`.
    pub ca_file: PathBuf,
    prefix: Vec<String>,
    ip: IpAddr,
    _dir: tempfile::TempDir,
}

/// The relay binary, built beside the test binary by `cargo test` (as an example).
fn binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/PROFILE/deps");
    let relay = profile_dir.join("examples").join("relay");
    assert!(
        relay.exists(),
        "{} is missing: build it with `cargo build --examples` (`cargo test` and make test do)",
        relay.display()
    );
    relay
}

/// A loopback address no other relay of this process uses: each relay's QUIC
/// address discovery listens on the fixed port clients assume.
pub fn fresh_loopback() -> IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag = (std::process::id() % 200) as u8;
    IpAddr::from([127, 77, tag, n])
}

impl Relay {
    /// Starts a relay on `ip`, run through `prefix` (for example `ip netns exec NS`).
    pub fn start_with(prefix: &[&str], ip: IpAddr) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("relay-ca.pem");
        let prefix: Vec<String> = prefix.iter().map(|part| part.to_string()).collect();
        let (child, stdin, url) = spawn(&prefix, ip, &ca_file, 0);
        Relay {
            child,
            _stdin: stdin,
            url,
            ca_file,
            prefix,
            ip,
            _dir: dir,
        }
    }

    /// Starts a relay on a fresh loopback address.
    pub fn start() -> Relay {
        Relay::start_with(&[], fresh_loopback())
    }

    /// Kills the relay, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed relay again: the same address, port and certificate.
    pub fn restart(&mut self) {
        let port: u16 = (self.url.rsplit(':').next())
            .and_then(|port| port.trim_end_matches('/').parse().ok())
            .expect("the relay's URL ends with its port");
        let (child, stdin, url) = spawn(&self.prefix, self.ip, &self.ca_file, port);
        assert_eq!(url, self.url, "the relay came back elsewhere");
        (self.child, self._stdin) = (child, stdin);
    }
}

/// Runs the relay binary and waits for it to say where it serves.
fn spawn(
    prefix: &[String],
    ip: IpAddr,
    ca_file: &std::path::Path,
    port: u16,
) -> (Child, ChildStdin, String) {
    let relay = binary();
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&relay);
            command
        }
        None => Command::new(&relay),
    };
    let mut child = command
        .arg(ip.to_string())
        .arg(ca_file)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the relay starts");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("Relay at ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(TIMEOUT)
        .expect("the relay said where it serves within the timeout");
    (child, stdin, url)
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
