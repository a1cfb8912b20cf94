//! A peer far away, made on loopback: a proxy that delivers every byte, each way,
//! a fixed delay after it was sent, for machines whose kernel has no netem. Like a
//! long path, it connects onwards only when the first bytes arrive there, so the
//! listener sees the ClientHello right after the connection, as it would from a
//! peer a round trip away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running proxy; dropping it stops it and its connections.
pub struct FarProxy {
    runtime: Option<tokio::runtime::Runtime>,
    pub port: u16,
}

impl FarProxy {
    /// Forwards connections to `upstream`, `one_way` late in each direction: a round
    /// trip of twice `one_way`.
    pub fn start(upstream: SocketAddr, one_way: Duration) -> FarProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let _ = down.set_nodelay(true);
                tokio::spawn(carry(down, upstream, one_way));
            }
        });
        FarProxy {
            runtime: Some(runtime),
            port,
        }
    }
}

impl Drop for FarProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What was read at one end, and when it is due at the other; `None` is the end.
type Due = (Instant, Option<Vec<u8>>);

async fn carry(down: TcpStream, upstream: SocketAddr, one_way: Duration) {
    let (down_read, down_write) = down.into_split();
    let (to_listener, mut arriving) = mpsc::unbounded_channel();
    tokio::spawn(read_into(down_read, to_listener, one_way));
    // The first bytes reach the far end only after the delay; so does the connection.
    let Some((due, Some(first))) = arriving.recv().await else {
        return;
    };
    tokio::time::sleep_until(due).await;
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let (up_read, mut up_write) = up.into_split();
    let (to_dialer, leaving) = mpsc::unbounded_channel();
    tokio::spawn(read_into(up_read, to_dialer, one_way));
    tokio::spawn(write_from(leaving, down_write));
    if up_write.write_all(&first).await.is_ok() {
        write_from(arriving, up_write).await;
    }
}

async fn read_into(mut from: OwnedReadHalf, into: mpsc::UnboundedSender<Due>, one_way: Duration) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await.unwrap_or(0);
        let due = Instant::now() + one_way;
        let bytes = (read > 0).then(|| buffer[..read].to_vec());
        let end = bytes.is_none();
        if into.send((due, bytes)).is_err() || end {
            return;
        }
    }
}

async fn write_from(mut from: mpsc::UnboundedReceiver<Due>, mut to: OwnedWriteHalf) {
    while let Some((due, bytes)) = from.recv().await {
        tokio::time::sleep_until(due).await;
        match bytes {
            Some(bytes) => {
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            None => {
                let _ = to.shutdown().await;
                return;
            }
        }
    }
}
