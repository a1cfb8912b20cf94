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
