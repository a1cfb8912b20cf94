//! `chat`: two-party chat over mutually pinned TLS 1.3.
//!
//! The library holds everything but the terminal front end's entry point, so that
//! integration tests can speak the protocol in-process.

pub mod addresses;
pub mod admission;
pub mod app;
pub mod cli;
pub mod config;
pub mod connection;
pub mod dialer;
pub mod event;
pub mod fingerprint;
pub mod frame;
pub mod handshake;
pub mod identity;
pub mod input;
pub mod invitation;
pub mod known_peers;
pub mod lane;
pub mod link;
pub mod listener;
pub mod one_connection;
pub mod one_way;
pub mod pairing;
pub mod platform;
pub mod portmap;
pub mod read_ahead;
pub mod receiving_half;
pub mod rejections;
pub mod sanitize;
pub mod sending_half;
pub mod session;
pub mod target;
pub mod tls;
pub mod transfer;
pub mod trust;
pub mod ui;
