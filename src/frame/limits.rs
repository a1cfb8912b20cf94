//! The limits every frame is checked against before anything is allocated.

/// Bytes before the payload: one type byte and a four-byte length.
pub const HEADER_LEN: usize = 5;
/// The largest payload any frame may declare. Larger lengths are rejected unread.
pub const MAX_PAYLOAD_LEN: usize = 128 * 1024;
/// The longest chat line, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// The longest peer name announced in `Hello`, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// The most file data one `Chunk` carries. Small enough that a chat line never waits long.
pub const MAX_CHUNK_LEN: usize = 64 * 1024;
/// The longest file name in an `Offer`, in bytes of UTF-8 (the usual file-system limit).
pub const MAX_FILE_NAME_LEN: usize = 255;
/// The longest explanation in a `Verdict` or `Cancel`, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;

/// The `Chunk` data a sender may have sent on a connection of a version with
/// `Credit` before the receiver's first one, and what each `Credit` adds beyond
/// what the receiver has taken in: the file data in flight or waiting for its disk.
pub const CREDIT_WINDOW: u64 = 8 << 20;
