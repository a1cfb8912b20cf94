//! Everything that turns a transport into an authenticated link to the pinned peer.

pub mod addresses;
pub mod admission;
pub mod connection;
pub mod dialer;
pub mod handshake;
pub mod iroh;
pub mod iroh_listener;
pub mod knock;
pub mod listener;
pub mod mdns;
pub mod one_way;
pub mod online;
pub mod portmap;
pub mod read_ahead;
pub mod rejections;
pub mod rendezvous;
pub mod route;
pub mod stream;
pub mod target;
pub mod tls;
pub mod wake;

pub use route::{Probe, Route};
pub use stream::Stream;
