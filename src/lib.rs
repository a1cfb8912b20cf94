//! `chat`: two-party chat over mutually pinned TLS 1.3.
//!
//! The library holds everything but the terminal front end's entry point, so that
//! integration tests can speak the protocol in-process.

pub mod app;
pub mod cli;
pub mod config;
pub mod frame;
pub mod identity;
pub mod link;
pub mod pairing;
pub mod platform;
pub mod session;
pub mod transfer;
pub mod ui;
