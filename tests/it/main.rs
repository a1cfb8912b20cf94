//! Every integration test, in one binary: each file is a module, so the crate and its
//! dependencies are linked once rather than once per file, and tests of different
//! files run side by side in one process (`cargo test --test it`).

mod common;

mod command_line;
mod credit;
mod faults;
mod folders;
mod fuzz_regressions;
mod hostile;
mod interactive;
mod known_peers;
mod lan;
mod nat;
mod netns;
mod one_connection;
mod pairing;
mod peer;
mod proxy;
mod quick_start;
mod reach;
mod resilience;
mod security;
mod siege;
mod soak;
mod transfer;
