//! The byte stream a link's TLS runs over: a TCP connection, or one bidirectional
//! stream of an iroh (QUIC) connection. Everything above it sees one type, so the
//! session never knows which transport carries it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use iroh::endpoint::{Connection, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A transport's byte stream, in both directions.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Quic(QuicStream),
}

/// One bidirectional QUIC stream, with the connection it belongs to: the connection
/// stays open while the stream is in use, and lingers after it (see [`Lingering`]).
#[derive(Debug)]
pub struct QuicStream {
    pub send: SendStream,
    pub recv: RecvStream,
    pub connection: Connection,
    /// Counts this stream in its [`Lingering`] from its start to its linger's end.
    counted: Option<LingerGuard>,
}

impl QuicStream {
    pub fn new(
        send: SendStream,
        recv: RecvStream,
        connection: Connection,
        lingering: &Lingering,
    ) -> Self {
        QuicStream {
            send,
            recv,
            connection,
            counted: Some(lingering.begin()),
        }
    }
}

/// The QUIC streams in use, and the connections of dropped ones that are still open
/// so that the peer can read what we sent last. A program waits for
/// [`Lingering::finished`] before it exits: its end would close them, and QUIC drops
/// data in flight when a connection closes.
#[derive(Debug, Clone, Default)]
pub struct Lingering(Arc<watch::Sender<usize>>);

impl Lingering {
    fn begin(&self) -> LingerGuard {
        self.0.send_modify(|count| *count += 1);
        LingerGuard(self.clone())
    }

    /// Waits until no stream is in use and no connection lingers.
    pub async fn finished(&self) {
        let mut count = self.0.subscribe();
        let _ = count.wait_for(|count| *count == 0).await;
    }
}

/// One stream or lingering connection, counted while it lives.
#[derive(Debug)]
struct LingerGuard(Lingering);

impl Drop for LingerGuard {
    fn drop(&mut self) {
        (self.0).0.send_modify(|count| *count -= 1);
    }
}

/// How long a dropped stream keeps its connection for the peer to take in what we
/// sent last: QUIC drops data in flight when a connection closes.
const LINGER: Duration = Duration::from_secs(3);

impl Drop for QuicStream {
    /// The connection closes when its last handle goes, and with it whatever the
    /// peer has not yet received. So a connection whose stream we finished waits,
    /// in the background and for at most [`LINGER`], until the peer has read it to
    /// the end or closes the connection itself: the last receiver closes.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let connection = self.connection.clone();
        let stopped = self.send.stopped();
        let guard = self.counted.take();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                tokio::select! {
                    _ = stopped => {}
                    _ = connection.closed() => {}
                }
            })
            .await;
            drop(connection);
            drop(guard);
        });
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, out),
            Stream::Quic(quic) => AsyncRead::poll_read(Pin::new(&mut quic.recv), cx, out),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, data),
            Stream::Quic(quic) => AsyncWrite::poll_write(Pin::new(&mut quic.send), cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, data),
            Stream::Quic(quic) => {
                AsyncWrite::poll_write_vectored(Pin::new(&mut quic.send), cx, data)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(tcp) => tcp.is_write_vectored(),
            Stream::Quic(quic) => AsyncWrite::is_write_vectored(&quic.send),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Quic(quic) => AsyncWrite::poll_flush(Pin::new(&mut quic.send), cx),
        }
    }

    /// For QUIC, finishes our side of the stream: the peer reads its end once every
    /// byte before it has arrived.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Quic(quic) => AsyncWrite::poll_shutdown(Pin::new(&mut quic.send), cx),
        }
    }
}
