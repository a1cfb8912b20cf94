//! How a link reaches the peer, as a person is told: a TCP address, or an iroh
//! connection through a relay or on a direct path.

use std::fmt;
use std::net::SocketAddr;

use iroh::{EndpointId, RelayUrl};

/// The way a link's bytes travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A TCP connection with the peer at this address.
    Tcp(SocketAddr),
    /// An iroh connection with the peer's endpoint, on the path iroh has chosen.
    Iroh { peer: EndpointId, path: Path },
}

/// Which path an iroh connection uses now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// Through this relay: the relay sees only ciphertext.
    Relay(RelayUrl),
    /// Straight to this address of the peer's, holes punched where NATs needed it.
    Direct(SocketAddr),
    /// None chosen yet.
    Unknown,
}

impl Route {
    /// The words after "Connected to bob": `at ADDR`, `through relay URL`, `directly at ADDR`.
    pub fn describe(&self) -> String {
        match self {
            Route::Tcp(addr) => format!("at {addr}"),
            Route::Iroh { path, .. } => path.to_string(),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Relay(url) => write!(f, "through relay {}", relay_host(url)),
            Path::Direct(addr) => write!(f, "directly at {addr}"),
            Path::Unknown => write!(f, "over iroh"),
        }
    }
}

/// A relay's host and port as a person reads it, without scheme or trailing dot.
pub fn relay_host(url: &RelayUrl) -> String {
    let host = url.host_str().unwrap_or("?").trim_end_matches('.');
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Tcp(addr) => write!(f, "{addr}"),
            Route::Iroh { peer, .. } => write!(f, "endpoint {}", peer.fmt_short()),
        }
    }
}

/// Asks a link, while it lasts, for its round trip now. It holds the connection
/// weakly: a front end that keeps one keeps no connection open.
#[derive(Debug, Clone, Default)]
pub struct Probe(Option<iroh::endpoint::WeakConnectionHandle>);

/// Probes are a way to ask, not a value: events that carry them compare by the rest.
impl PartialEq for Probe {
    fn eq(&self, _: &Probe) -> bool {
        true
    }
}

impl Eq for Probe {}

impl Probe {
    /// A probe of an iroh connection.
    pub fn of(connection: &iroh::endpoint::Connection) -> Probe {
        Probe(Some(connection.weak_handle()))
    }

    /// The round trip on the path in use, if the link runs over iroh and is open.
    pub fn round_trip(&self) -> Option<std::time::Duration> {
        let connection = self.0.as_ref()?.upgrade()?;
        let paths = connection.paths();
        let selected = paths.iter().find(|path| path.is_selected())?;
        Some(selected.rtt())
    }
}
