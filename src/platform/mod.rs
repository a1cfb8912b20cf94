//! Every call whose form differs between operating systems: private files and
//! folders, opening without following links, locks, renames that never replace,
//! free space, and rebinding a listening port. The rest of the code stays free of `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

/// How long a silently dead connection may go unnoticed.
pub const DEAD_PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// What identifies a file's content without reading it: where it lives, its size,
/// and when it or its metadata last changed, in nanoseconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified_ns: i128,
    pub changed_ns: i128,
}

impl FileStamp {
    /// Whether the file last changed at least `margin` before `at`.
    pub fn settled_before(&self, at: std::time::SystemTime, margin: std::time::Duration) -> bool {
        let at_ns = match at.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => since.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        let latest = self.modified_ns.max(self.changed_ns);
        latest.saturating_add(margin.as_nanos() as i128) <= at_ns
    }
}
