//! The validated settings of a peer. Built once from the command line; the rest of
//! the program sees only this.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};

use crate::identity::IdentityFiles;
use crate::identity::fingerprint::Fingerprint;
use crate::identity::known_peers::{self, Entry};
use crate::link::target::Target;
use crate::pairing::InviteCode;
use crate::platform;
use crate::transfer::{hash_cache, stored};

/// Which identity to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `DIR/NAME.crt` and `DIR/NAME.key`, created if neither exists.
    Named { dir: PathBuf, name: String },
    /// Explicit files, which must exist.
    Files(IdentityFiles),
}

/// Where the peer's pin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `--peer-fingerprint` or `--peer-cert`; the peer is saved to known peers.
    Given(Fingerprint),
    /// Asked for on standard input; the peer is saved to known peers.
    Ask,
    /// `--peer NAME`: the pin saved in known peers, which a changed certificate
    /// never replaces.
    Known(Entry),
    /// `--invite`: print a one-time code, and trust whoever proves it knows the code.
    Invite,
    /// `--join CODE`: prove to the inviter that we know its code, and trust it. The
    /// code is asked for when not given.
    Join(Option<InviteCode>),
}

impl IdentitySource {
    /// Where what belongs to the identity lives: the identity folder, or the folder
    /// of an explicit certificate file.
    pub fn folder(&self) -> PathBuf {
        match self {
            IdentitySource::Named { dir, .. } => dir.clone(),
            IdentitySource::Files(files) => match files.certificate.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            },
        }
    }

    /// `known_peers` beside the identity.
    pub fn known_peers(&self) -> PathBuf {
        self.folder().join(known_peers::FILE_NAME)
    }

    /// The hash cache beside the identity.
    pub fn hash_cache(&self) -> PathBuf {
        self.folder().join(hash_cache::FILE_NAME)
    }

    /// The record of the files this identity stored, beside its certificate and
    /// named after it: identities that share a folder each keep their own.
    pub fn stored_record(&self) -> PathBuf {
        match self {
            IdentitySource::Named { dir, name } => {
                dir.join(format!("{name}.{}", stored::EXTENSION))
            }
            IdentitySource::Files(files) => files.certificate.with_extension(stored::EXTENSION),
        }
    }
}

/// How the two peers reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Each side listens and dials the other: one connection per direction.
    Two,
    /// `--no-listen`: dial, and carry both directions on that one connection.
    DialOne,
    /// `--accept`: accept the peer's one connection, which carries both directions.
    AcceptOne,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// Every interface, IPv6 and IPv4 where the system allows; port 0 lets the OS choose.
    AllInterfaces(u16),
    /// One address, or a host name resolved at start.
    Host(String, u16),
}

/// A validated peer configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: IdentitySource,
    pub listen: ListenAddr,
    /// Asked for on standard input when absent (unless `links` is `AcceptOne`).
    pub connect: Option<Target>,
    pub links: LinkMode,
    /// Whom to trust.
    pub trust: Trust,
    /// The `known_peers` file beside the identity.
    pub known_peers: PathBuf,
    /// The hash cache beside the identity.
    pub hash_cache: PathBuf,
    /// The record of files stored, beside the identity.
    pub stored_record: PathBuf,
    pub download_dir: PathBuf,
    /// Offers larger than this are refused.
    pub max_file_size: Option<u64>,
    /// How long to keep trying to reach the peer without a connection.
    pub retry_for: Duration,
    /// Ask the router to forward the listening port (`--map-port`).
    pub map_port: bool,
    /// Reach the peer over iroh rather than TCP: an invite or a join given no
    /// address.
    pub over_iroh: bool,
    /// The relays iroh uses.
    pub relays: crate::link::iroh::Settings,
    pub look: Look,
}

/// How the front end shows things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    /// Connection details and retries.
    pub verbose: bool,
    /// Progress bars.
    pub progress: bool,
    /// `[HH:MM]` before every line.
    pub timestamps: bool,
}

/// Why a `--listen` value is not usable.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not PORT or HOST:PORT (write IPv6 addresses as [::1]:PORT)")]
pub struct ListenAddrError(String);

/// Why a size is not usable.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not a size: use bytes, or a number with K, M, G or T (powers of 1024)")]
pub struct SizeError(String);

/// Parses `1048576`, `512K`, `100M`, `4G`, `1T` (also `KiB`, `MB`...: all powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let error = || SizeError(text.to_owned());
    let (number, unit) = split_number(text).ok_or_else(error)?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(error()),
    };
    number.checked_mul(1 << shift).ok_or_else(error)
}

/// Splits `12abc` into 12 and `abc`, after trimming; `None` without leading digits.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    Some((number.parse().ok()?, unit))
}

/// Why a duration is not usable.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a duration: use seconds, or a number with s, m or h (for example 90s, 5m, 1h)"
)]
pub struct DurationError(String);

/// Parses `90`, `90s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError(text.to_owned());
    let (number, unit) = split_number(text).ok_or_else(error)?;
    let seconds = match unit {
        "" | "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => None,
    };
    seconds.map(Duration::from_secs).ok_or_else(error)
}

/// Connections the kernel may hold, fully established, until we accept them.
///
/// std and tokio ask for 128. A crowd reopening connections faster than the listener
/// sheds them fills that, and then the kernel drops every SYN, the real peer's too,
/// whose connect then waits a second or more for its retransmission. The kernel caps
/// the value at `net.core.somaxconn` (4096 by default on Linux, which is also
/// what Go's listeners ask for); queued connections cost kernel memory only.
pub const LISTEN_BACKLOG: u32 = 4096;

impl ListenAddr {
    /// Binds a listener. For all interfaces, tries dual-stack IPv6 first, then IPv4.
    /// For a host name, tries each of its addresses in turn.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        match self {
            ListenAddr::AllInterfaces(port) => {
                match listen_on((Ipv6Addr::UNSPECIFIED, *port).into()) {
                    Ok(listener) => Ok(listener),
                    Err(_) => listen_on((Ipv4Addr::UNSPECIFIED, *port).into()),
                }
            }
            ListenAddr::Host(host, port) => {
                let mut last_error = None;
                for addr in tokio::net::lookup_host((host.as_str(), *port)).await? {
                    match listen_on(addr) {
                        Ok(listener) => return Ok(listener),
                        Err(err) => last_error = Some(err),
                    }
                }
                Err(last_error.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "the host has no address")
                }))
            }
        }
    }
}

/// Binds and listens on `addr` with [`LISTEN_BACKLOG`].
fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    platform::allow_quick_rebind(&socket)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || ListenAddrError(text.to_owned());
        if let Ok(port) = text.parse::<u16>() {
            return Ok(ListenAddr::AllInterfaces(port));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenAddr::Host(addr.ip().to_string(), addr.port()));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(malformed)?;
        let port = port.parse::<u16>().map_err(|_| malformed())?;
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid_host {
            return Err(malformed());
        }
        Ok(ListenAddr::Host(host.to_owned(), port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::AllInterfaces(port) => write!(f, "*:{port}"),
            ListenAddr::Host(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            ListenAddr::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// Where named identities live: `explicit` (`--certs-dir`), else `$CHAT_HOME`, else
/// the per-user configuration folder's `chat` (`$XDG_CONFIG_HOME/chat` or
/// `~/.config/chat` on Linux), so that one user has one identity wherever `chat`
/// is started.
pub fn identity_home(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    if let Some(home) = std::env::var_os("CHAT_HOME").filter(|home| !home.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match dirs::config_dir() {
        Some(config) => Ok(config.join("chat")),
        None => anyhow::bail!(
            "cannot tell where your configuration folder is; pass --certs-dir DIR or set CHAT_HOME"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "m", "1.5m", "5 min", "-1", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100 MiB"), Ok(100 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "G", "1.5G", "12X", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_listen_forms() {
        assert_eq!("0".parse(), Ok(ListenAddr::AllInterfaces(0)));
        assert_eq!("7000".parse(), Ok(ListenAddr::AllInterfaces(7000)));
        assert_eq!(
            "127.0.0.1:0".parse(),
            Ok(ListenAddr::Host("127.0.0.1".into(), 0))
        );
        assert_eq!("[::1]:9".parse(), Ok(ListenAddr::Host("::1".into(), 9)));
        assert_eq!(
            "localhost:9".parse(),
            Ok(ListenAddr::Host("localhost".into(), 9))
        );
        for bad in ["", "70000", "host", "::1:9", "a b:1", "host:x"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }
}
