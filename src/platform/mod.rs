//! Every call whose form differs between operating systems: private files and
//! folders, opening without following links, locks, renames that never replace,
//! free space, and rebinding a listening port. The rest of the code stays free of `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

/// How long a silently dead connection may go unnoticed.
pub const DEAD_PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);
