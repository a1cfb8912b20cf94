//! Everything that turns a transport into an authenticated link to the pinned peer.

pub mod iroh;
pub mod iroh_listener;
pub mod keys;
pub mod knock;
pub mod mdns;
pub mod online;
pub mod route;
pub mod stream;
pub mod wake;

pub use route::{Probe, Route};
pub use stream::Stream;
