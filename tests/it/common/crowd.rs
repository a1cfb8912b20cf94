//! A hostile crowd for the siege test and `make bench`: many connections to one
//! listener from many loopback addresses, each reopened as soon as the listener
//! closes it. None of them needs a credential. They do what anyone who can reach
//! the port can do: connect and say nothing, trickle a ClientHello a byte a
//! second, send garbage, or speak TLS 1.3 with a certificate nobody pinned.

#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat::identity::fingerprint::Fingerprint;
use chat::identity::{self, IdentityFiles};
use chat::link::handshake::{self, Greeting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// File descriptors kept back for everything else in the process (pipes, the
/// harness's threads, the runtime).
const FD_RESERVE: u64 = 256;
/// Distinct source addresses: 127.0.0.1 (the real peer's own) and 127.0.1.1 onwards.
const SOURCES: usize = 100;

/// What one member of the crowd does with each of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connects and sends nothing.
    Idle,
    /// A TLS record header announcing a 512-byte handshake record, then one byte a second.
    Trickle,
    /// Bytes that are not TLS.
    Garbage,
    /// A TLS 1.3 client whose certificate the listener does not pin.
    Stranger,
}

impl Kind {
    /// Of every ten members: five idle, two trickling, two sending garbage, one stranger.
    fn of_member(slot: usize) -> Kind {
        match slot % 10 {
            0..=4 => Kind::Idle,
            5 | 6 => Kind::Trickle,
            7 | 8 => Kind::Garbage,
            _ => Kind::Stranger,
        }
    }
}

/// Counts the crowd keeps while it runs.
#[derive(Debug, Default)]
pub struct Tally {
    /// Connections established.
    pub opened: AtomicU64,
    /// Connections that ended (the listener closed, shed or refused them).
    pub ended: AtomicU64,
    /// Connection attempts that failed (refused, out of ports, ...).
    pub failed: AtomicU64,
    /// Connections open now, and the most that were open at once.
    pub open: AtomicU64,
    pub peak_open: AtomicU64,
}

impl Tally {
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn peak_open(&self) -> u64 {
        self.peak_open.load(Ordering::Relaxed)
    }
}

/// A running crowd; dropping it closes every connection.
pub struct Crowd {
    runtime: Option<tokio::runtime::Runtime>,
    pub tally: Arc<Tally>,
    /// Members actually started (fewer than asked if file descriptors are short).
    pub size: usize,
    /// Distinct source addresses in use.
    pub sources: usize,
}

impl Crowd {
    /// Starts `wanted` members against `target`, spread over 100 source addresses
    /// (each source gets ten members, so each exceeds a per-address limit of 8),
    /// strangers using `strangers` in turn. The crowd runs on two runtime threads:
    /// enough to keep a listener on the same machine busy shedding, without taking
    /// every core from the processes under test.
    pub fn start(target: SocketAddr, wanted: usize, strangers: Vec<TlsConnector>) -> Crowd {
        assert!(!strangers.is_empty());
        let size = usable_sockets(wanted);
        let sources = source_addresses(SOURCES);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the crowd");
        let tally = Arc::new(Tally::default());
        for member in 0..size {
            // Member m comes from source m % 100 and has kind (m / 100) % 10, so
            // that every source sends the whole mix.
            let source = sources[member % sources.len()];
            let kind = Kind::of_member(member / sources.len());
            let stranger = strangers[member % strangers.len()].clone();
            runtime.spawn(run_member(kind, source, target, stranger, tally.clone()));
        }
        Crowd {
            runtime: Some(runtime),
            tally,
            size,
            sources: sources.len(),
        }
    }

    /// Opens `per_second` connections a second to `target`, from `sources`
    /// addresses in turn, each sending `client_hello` (recorded once, see
    /// [`recorded_client_hello`]) and reading what comes back until the listener
    /// closes it. Each costs the listener a key exchange and a signature, and the
    /// crowd nothing. Paced rather than as fast as it goes: a listener kept too busy
    /// to read the ClientHellos would shed silent connections, not these.
    pub fn replaying(
        target: SocketAddr,
        per_second: u32,
        sources: usize,
        client_hello: Vec<u8>,
    ) -> Crowd {
        let sources = source_addresses(sources);
        let size = usable_sockets(4 * per_second as usize);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the crowd");
        let tally = Arc::new(Tally::default());
        let client_hello: Arc<[u8]> = client_hello.into();
        let pacing = tally.clone();
        let from = sources.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
            for source in from.iter().cycle() {
                ticks.tick().await;
                if pacing.open() >= size as u64 {
                    continue;
                }
                let (tally, hello) = (pacing.clone(), client_hello.clone());
                tokio::spawn(connect_once(*source, target, tally, move |tcp| {
                    replay(tcp, hello)
                }));
            }
        });
        Crowd {
            runtime: Some(runtime),
            tally,
            size,
            sources: sources.len(),
        }
    }

    /// Waits until `done` holds for the tally, polling; panics after `deadline`.
    pub fn wait_until(&self, deadline: Duration, what: &str, done: impl Fn(&Tally) -> bool) {
        let end = Instant::now() + deadline;
        while !done(&self.tally) {
            assert!(
                Instant::now() < end,
                "the crowd never got to {what}: {:?}",
                self.tally
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// TLS clients for the crowd's strangers: `count` fresh identities under `dir`,
/// each pinning `pin` (so they would accept the listener; the listener refuses them).
pub fn strangers(dir: &Path, count: usize, pin: Fingerprint) -> Vec<TlsConnector> {
    strangers_in_mode(dir, count, pin, false)
}

/// As [`strangers`], dialing for one connection (`--no-listen`) if `one_connection`.
pub fn strangers_in_mode(
    dir: &Path,
    count: usize,
    pin: Fingerprint,
    one_connection: bool,
) -> Vec<TlsConnector> {
    (0..count)
        .map(|i| {
            let name = format!("stranger{i}");
            let files = IdentityFiles::named(dir, &name);
            let stranger = identity::create(&files, &name, true).expect("a stranger identity");
            TlsConnector::from(
                chat::link::tls::client_config(&stranger, pin, one_connection).unwrap(),
            )
        })
        .collect()
}

/// `count` addresses: 127.0.0.1 and 127.0.1.1 onwards (127.0.1.255 is followed by
/// 127.0.2.1), if this system lets a socket bind those (Linux routes all of
/// 127.0.0.0/8 to the loopback device); else 127.0.0.1 alone.
fn source_addresses(count: usize) -> Vec<Ipv4Addr> {
    let probe = Ipv4Addr::new(127, 0, 1, 1);
    match std::net::TcpListener::bind((probe, 0)) {
        Ok(_) => std::iter::once(Ipv4Addr::LOCALHOST)
            .chain(
                (0..count - 1)
                    .map(|i| Ipv4Addr::new(127, 0, 1 + (i / 255) as u8, 1 + (i % 255) as u8)),
            )
            .collect(),
        Err(err) => {
            println!("NOTE: cannot bind {probe} ({err}); the whole crowd comes from 127.0.0.1");
            vec![Ipv4Addr::LOCALHOST]
        }
    }
}

/// Windows has no per-process limit on sockets to raise.
#[cfg(not(unix))]
fn usable_sockets(wanted: usize) -> usize {
    wanted
}

/// How many sockets this process may open for the crowd: raises the soft limit on
/// open files towards the hard limit if needed, and says so if even that is short.
#[cfg(unix)]
fn usable_sockets(wanted: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = wanted as u64 + FD_RESERVE;
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < needed {
        let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
        let new = Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, new).is_ok() {
            soft = raised;
        }
    }
    let usable = soft.saturating_sub(FD_RESERVE) as usize;
    if usable < wanted {
        println!(
            "NOTE: open-file limit {soft} (hard {:?}); the crowd has {usable} members, not {wanted}",
            limit.maximum
        );
    }
    usable.min(wanted)
}

async fn run_member(
    kind: Kind,
    source: Ipv4Addr,
    target: SocketAddr,
    stranger: TlsConnector,
    tally: Arc<Tally>,
) {
    keep_connecting(source, target, tally, |tcp| {
        let stranger = stranger.clone();
        async move {
            match kind {
                Kind::Idle => until_closed(tcp).await,
                Kind::Trickle => trickle(tcp).await,
                Kind::Garbage => garbage(tcp).await,
                Kind::Stranger => {
                    let greeting = Greeting::new("stranger".into());
                    let _ = handshake::connect(
                        &stranger,
                        chat::link::Stream::Tcp(tcp),
                        chat::link::Route::Tcp(target),
                        &greeting,
                        None,
                    )
                    .await;
                }
            }
        }
    })
    .await;
}

/// Connects from `source` to `target` again and again, doing `each` with every
/// connection.
async fn keep_connecting<F, Fut>(source: Ipv4Addr, target: SocketAddr, tally: Arc<Tally>, each: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if !connect_once(source, target, tally.clone(), &each).await {
            // Out of ports or refused: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connects from `source` to `target` and does `with` with the connection, counting
/// it in `tally`; false if it could not connect.
async fn connect_once<F, Fut>(
    source: Ipv4Addr,
    target: SocketAddr,
    tally: Arc<Tally>,
    with: F,
) -> bool
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(tcp) = connect_from(source, target).await else {
        tally.failed.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let open = tally.open.fetch_add(1, Ordering::Relaxed) + 1;
    tally.peak_open.fetch_max(open, Ordering::Relaxed);
    with(tcp).await;
    tally.open.fetch_sub(1, Ordering::Relaxed);
    tally.ended.fetch_add(1, Ordering::Relaxed);
    true
}

async fn connect_from(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    socket.connect(target).await
}

/// Reads (and discards) until the listener closes the connection.
async fn until_closed(mut tcp: TcpStream) {
    let mut buffer = [0u8; 512];
    while let Ok(1..) = tcp.read(&mut buffer).await {}
}

/// A handshake record header for 512 bytes, then one byte a second, until closed.
async fn trickle(tcp: TcpStream) {
    let (mut reader, mut writer) = tcp.into_split();
    if writer
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .is_err()
    {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut buffer = [0u8; 512];
    loop {
        tokio::select! {
            read = reader.read(&mut buffer) => if !matches!(read, Ok(1..)) {
                return;
            },
            _ = ticks.tick() => if writer.write_all(&[0x01]).await.is_err() {
                return;
            },
        }
    }
}

/// Something that is not TLS, then wait for the close.
async fn garbage(mut tcp: TcpStream) {
    if tcp
        .write_all(b"\x16\x03\x01\xff\xffnot a client hello at all")
        .await
        .is_ok()
    {
        until_closed(tcp).await;
    }
}

/// A recorded ClientHello, then what comes back until the listener closes.
async fn replay(mut tcp: TcpStream, client_hello: Arc<[u8]>) {
    if tcp.write_all(&client_hello).await.is_ok() {
        until_closed(tcp).await;
    }
}

/// The first flight `stranger` sends to a listener: its whole ClientHello record,
/// recorded by a listener that answers nothing.
pub fn recorded_client_hello(stranger: &TlsConnector) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to record a ClientHello");
    runtime.block_on(async {
        let recorder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = recorder.local_addr().unwrap();
        let stranger = stranger.clone();
        let dialing = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let greeting = Greeting::new("stranger".into());
            let route = chat::link::Route::Tcp(addr);
            let stream = chat::link::Stream::Tcp(tcp);
            let _ = handshake::connect(&stranger, stream, route, &greeting, None).await;
        });
        let (mut tcp, _) = recorder.accept().await.unwrap();
        let mut header = [0u8; 5];
        tcp.read_exact(&mut header).await.unwrap();
        assert_eq!(header[0], 0x16, "a TLS handshake record");
        let mut record = header.to_vec();
        record.resize(
            5 + usize::from(u16::from_be_bytes([header[3], header[4]])),
            0,
        );
        tcp.read_exact(&mut record[5..]).await.unwrap();
        dialing.abort();
        record
    })
}
