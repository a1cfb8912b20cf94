//! A socket that, once the peer is known, reads ahead in large steps.
//!
//! rustls asks its transport for at most one record's worth at a time, and often
//! 4 KiB: a 1 GiB transfer would cost hundreds of thousands of system calls. Under
//! TLS, a [`ReadAhead`] serves those small reads from one buffer that it fills
//! with one call. Until [`ReadAhead::read_ahead`] is called it passes every read
//! straight through and holds no buffer, so that strangers who never authenticate
//! cost no more memory than before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket in one call once reading ahead.
pub const READ_AHEAD_LEN: usize = 256 * 1024;

#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Empty until reading ahead; then `READ_AHEAD_LEN` bytes, of which
    /// `start..end` are read from the socket and not yet taken.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buffer: Box::default(),
            start: 0,
            end: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// From now on, reads smaller than the buffer are served from it.
    pub fn read_ahead(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = vec![0; READ_AHEAD_LEN].into_boxed_slice();
        }
    }

    fn take_buffered(&mut self, out: &mut ReadBuf<'_>) {
        let taken = out.remaining().min(self.end - self.start);
        out.put_slice(&self.buffer[self.start..self.start + taken]);
        self.start += taken;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            this.take_buffered(out);
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= this.buffer.len() {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let mut fill = ReadBuf::new(&mut this.buffer);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
        this.start = 0;
        this.end = fill.filled().len();
        this.take_buffered(out);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The bytes `reader` yields when read `step` bytes at a time.
    async fn read_all_in_steps(
        reader: &mut ReadAhead<tokio::io::DuplexStream>,
        step: usize,
    ) -> Vec<u8> {
        let mut all = Vec::new();
        let mut piece = vec![0; step];
        loop {
            match reader.read(&mut piece).await.unwrap() {
                0 => return all,
                n => all.extend_from_slice(&piece[..n]),
            }
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn small_and_large_reads_see_every_byte_once_in_order() {
        for (step, ahead) in [
            (4096, true),
            (4096, false),
            (READ_AHEAD_LEN + 1, true),
            (1, true),
        ] {
            let data = pattern(3 * READ_AHEAD_LEN + 12_345);
            let (mut far, near) = tokio::io::duplex(64 * 1024);
            let mut reader = ReadAhead::new(near);
            if ahead {
                reader.read_ahead();
            }
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                far.write_all(&sent).await.unwrap();
                far.shutdown().await.unwrap();
            });
            assert_eq!(
                read_all_in_steps(&mut reader, step).await,
                data,
                "step {step}"
            );
            writer.await.unwrap();
        }
    }

    /// A stream that counts the reads it is asked for.
    struct Counting {
        inner: tokio::io::DuplexStream,
        reads: usize,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            Pin::new(&mut this.inner).poll_read(cx, out)
        }
    }

    #[tokio::test]
    async fn record_sized_reads_take_one_socket_read_per_buffer_once_reading_ahead() {
        for (ahead, socket_reads) in [(false, 64), (true, 1)] {
            let (mut far, near) = tokio::io::duplex(2 * READ_AHEAD_LEN);
            far.write_all(&pattern(READ_AHEAD_LEN)).await.unwrap();
            let mut reader = ReadAhead::new(Counting {
                inner: near,
                reads: 0,
            });
            if ahead {
                reader.read_ahead();
            }
            let mut record = vec![0; READ_AHEAD_LEN / 64];
            for _ in 0..64 {
                reader.read_exact(&mut record).await.unwrap();
            }
            assert_eq!(reader.inner.reads, socket_reads, "reading ahead: {ahead}");
        }
    }

    #[tokio::test]
    async fn nothing_is_held_until_asked_to_read_ahead() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(near);
        far.write_all(b"hello, world").await.unwrap();
        let mut five = [0; 5];
        reader.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"hello");
        assert!(reader.buffer.is_empty());
        // What the socket still holds is not lost when reading ahead begins.
        reader.read_ahead();
        let mut rest = [0; 7];
        reader.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b", world");
    }

    #[tokio::test]
    async fn writes_pass_straight_through() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(near);
        reader.read_ahead();
        reader.write_all(b"out").await.unwrap();
        let mut got = [0; 3];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"out");
    }
}
