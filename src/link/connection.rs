//! Frames over a byte stream: `read_frame` and `write_frame`, whole or split in two halves.
//!
//! The read buffer never holds more than one frame plus one read's worth of bytes,
//! because the decoder rejects an oversized length as soon as the header arrives.

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::frame::{Frame, FrameError};

const READ_CHUNK: usize = 64 * 1024;

/// Why a connection could not deliver a frame.
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// The peer sent bytes that are not a valid frame.
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The transport failed, including a TLS stream that ended without close_notify.
    #[error("{}", describe_io(.0))]
    Io(#[from] std::io::Error),
    /// On a connection that carries both directions: the peer closed it without
    /// `Finish` or `Leave` for this direction.
    #[error("the peer closed the connection without finishing or leaving")]
    Unfinished,
    /// On a connection that carries both directions: the other direction's failure
    /// took the connection down.
    #[error("the connection was lost")]
    Dropped,
    /// On a connection that carries both directions: a frame that belongs to
    /// neither, or to a direction the peer already ended.
    #[error("protocol error: unexpected {0} frame")]
    Misplaced(&'static str),
    /// On a connection that carries both directions: the peer sent more answers
    /// than could wait unread.
    #[error("protocol error: more than {0} answers arrived unread")]
    TooManyAnswers(usize),
}

/// rustls reports a TCP close without close_notify as `UnexpectedEof` with a long
/// explanation; a user only needs to know that the connection dropped.
fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof => "the connection dropped (no TLS close_notify)".into(),
        _ => err.to_string(),
    }
}

impl ConnectionError {
    /// True when the connection simply went away rather than misbehaving.
    pub fn is_disconnect(&self) -> bool {
        !matches!(
            self,
            ConnectionError::Protocol(_)
                | ConnectionError::Misplaced(_)
                | ConnectionError::TooManyAnswers(_)
        )
    }

    /// The same error, for a second reader of the same connection.
    pub fn duplicate(&self) -> ConnectionError {
        match self {
            ConnectionError::Protocol(err) => ConnectionError::Protocol(err.clone()),
            ConnectionError::Truncated => ConnectionError::Truncated,
            ConnectionError::Io(err) => {
                ConnectionError::Io(std::io::Error::new(err.kind(), err.to_string()))
            }
            ConnectionError::Unfinished => ConnectionError::Unfinished,
            ConnectionError::Dropped => ConnectionError::Dropped,
            ConnectionError::Misplaced(kind) => ConnectionError::Misplaced(kind),
            ConnectionError::TooManyAnswers(max) => ConnectionError::TooManyAnswers(*max),
        }
    }
}

/// Reads frames from a stream. `read_frame` is cancel-safe.
#[derive(Debug)]
pub struct FrameReader<R> {
    stream: R,
    buffer: BytesMut,
}

/// Writes frames to a stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    stream: W,
    buffer: Vec<u8>,
}

/// A stream that both reads and writes frames; split it once both directions run concurrently.
#[derive(Debug)]
pub struct Connection<S> {
    reader: FrameReader<S>,
    write_buffer: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R) -> Self {
        Self::with_buffer(stream, BytesMut::with_capacity(READ_CHUNK))
    }

    fn with_buffer(stream: R, buffer: BytesMut) -> Self {
        FrameReader { stream, buffer }
    }

    /// The next frame; `None` at a clean end of stream between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buffer)? {
                self.buffer.advance(used);
                return Ok(Some(frame));
            }
            if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 4 {
                self.buffer.reserve(READ_CHUNK);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated)
                };
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(stream: W) -> Self {
        FrameWriter {
            stream,
            buffer: Vec::with_capacity(READ_CHUNK),
        }
    }

    /// Encodes, writes and flushes one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        write_frame_to(&mut self.stream, &mut self.buffer, frame).await
    }

    /// The underlying stream, for writing bytes that are not frames (tests of hostile peers).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.stream
    }

    /// Ends our direction cleanly (for TLS, sends close_notify).
    pub async fn shutdown(&mut self) -> Result<(), ConnectionError> {
        Ok(self.stream.shutdown().await?)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            reader: FrameReader::new(stream),
            write_buffer: Vec::with_capacity(READ_CHUNK),
        }
    }

    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        self.reader.read_frame().await
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        write_frame_to(&mut self.reader.stream, &mut self.write_buffer, frame).await
    }

    pub async fn shutdown(&mut self) -> Result<(), ConnectionError> {
        Ok(self.reader.stream.shutdown().await?)
    }

    pub fn stream(&self) -> &S {
        &self.reader.stream
    }

    /// Separates the two directions, keeping any bytes already read.
    pub fn into_split(self) -> (FrameReader<ReadHalf<S>>, FrameWriter<WriteHalf<S>>) {
        let (read_half, write_half) = tokio::io::split(self.reader.stream);
        let reader = FrameReader::with_buffer(read_half, self.reader.buffer);
        let writer = FrameWriter {
            stream: write_half,
            buffer: self.write_buffer,
        };
        (reader, writer)
    }
}

async fn write_frame_to<W: AsyncWrite + Unpin>(
    stream: &mut W,
    buffer: &mut Vec<u8>,
    frame: &Frame,
) -> Result<(), ConnectionError> {
    buffer.clear();
    frame.encode(buffer);
    stream.write_all(buffer).await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn frames_cross_a_stream_in_order() {
        let (a, b) = duplex(64);
        let mut writer = Connection::new(a);
        let mut reader = Connection::new(b);
        let sent = vec![
            Frame::Message {
                seq: 1,
                text: "x".repeat(1000),
            },
            Frame::Ack { seq: 1 },
        ];
        let expected = sent.clone();
        let send = tokio::spawn(async move {
            for frame in &sent {
                writer.write_frame(frame).await.unwrap();
            }
            writer.shutdown().await.unwrap();
        });
        for frame in expected {
            assert_eq!(reader.read_frame().await.unwrap(), Some(frame));
        }
        assert!(reader.read_frame().await.unwrap().is_none());
        send.await.unwrap();
    }

    #[tokio::test]
    async fn end_of_stream_inside_a_frame_is_an_error() {
        let (mut a, b) = duplex(64);
        a.write_all(b"\x03\x00\x00\x00\x08\x00").await.unwrap();
        drop(a);
        let mut reader = FrameReader::new(b);
        assert!(matches!(
            reader.read_frame().await,
            Err(ConnectionError::Truncated)
        ));
    }

    #[tokio::test]
    async fn oversized_length_fails_without_waiting_for_the_payload() {
        let (mut a, b) = duplex(64);
        a.write_all(b"\x02\xff\xff\xff\xff").await.unwrap();
        let mut reader = FrameReader::new(b);
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::Protocol(FrameError::TooLarge { .. })
        ));
        assert!(!err.is_disconnect());
    }
}
