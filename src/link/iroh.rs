//! The iroh transport: an endpoint that reaches a peer by its endpoint ID through
//! relays and hole punching, and the one bidirectional stream per connection that
//! our pinned TLS runs in (PROTOCOL.md, "The iroh transport").
//!
//! iroh authenticates endpoint IDs in its own QUIC handshake, so an accepting
//! endpoint turns away every connection from an ID it does not expect before any of
//! our TLS work runs. It authenticates nothing more: who the peer is stays the
//! business of the pinned certificate inside.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream as _;
use tokio::sync::mpsc;

use iroh::endpoint::{ConnectError, Connection, ConnectionError, presets};
use iroh::tls::CaTlsConfig;
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, RelayUrl, SecretKey, TransportAddr};
use rustls::pki_types::CertificateDer;
use thiserror::Error;

use super::route::{Path, Route};
use super::stream::{Lingering, QuicStream, Stream};
use super::wake::{self, WakeUps};
use super::{mdns, online};
use crate::link::handshake::Link;
use crate::session::event::Event;

/// The ALPN of chat's QUIC connections (not of the TLS inside them).
pub const ALPN: &[u8] = b"chat-iroh/1";

/// How long one dial may take to reach the peer's endpoint: through a relay that
/// takes a few round trips; an endpoint nobody serves (not started yet, or a
/// mistyped code's) would otherwise keep an attempt waiting for QUIC's own timeout.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dial or an accepted connection has to open its stream.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Which relays an endpoint uses to be reached and to reach others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relays {
    /// The public relays that iroh's authors run.
    Public,
    /// These, and no others (`--relay URL`).
    Own(Vec<RelayUrl>),
}

/// Everything an endpoint needs besides its key.
#[derive(Debug, Clone)]
pub struct Settings {
    pub relays: Relays,
    /// Certificate authorities trusted for relays beside the web PKI roots built into
    /// iroh (`--relay-ca`),
    /// for a relay of one's own with a private certificate.
    pub relay_roots: Vec<CertificateDer<'static>>,
    /// Announce our endpoints and look up peers' on the local network over mDNS
    /// (off with `--no-mdns`).
    pub mdns: bool,
}

/// Why the iroh transport failed.
#[derive(Debug, Error)]
pub enum IrohError {
    /// The endpoint's UDP sockets could not be opened.
    #[error("cannot start the iroh endpoint: {0}")]
    Bind(String),
    /// The peer could not be reached through any relay or address.
    #[error("cannot reach the peer's endpoint {peer}: {reason}")]
    Connect { peer: String, reason: String },
    /// The connection ended before its stream was open.
    #[error("the connection ended before its stream opened: {0}")]
    Connection(#[from] ConnectionError),
    /// The stream did not open within [`STREAM_TIMEOUT`].
    #[error("the peer opened no stream within {} s", STREAM_TIMEOUT.as_secs())]
    StreamTimeout,
}

impl Settings {
    fn relay_mode(&self) -> RelayMode {
        match &self.relays {
            Relays::Public => RelayMode::Default,
            Relays::Own(urls) => RelayMode::custom(urls.iter().cloned()),
        }
    }

    /// Every relay this endpoint knows, for dialing a peer whose home relay we do
    /// not know: iroh tries them all.
    pub fn relay_urls(&self) -> Vec<RelayUrl> {
        self.relay_mode().relay_map().urls()
    }
}

/// Opens an endpoint with `secret` as its identity, as [`open_endpoint`] does, and
/// waits until a peer dialing through a relay finds it, unless no relay answers (see
/// [`online::findable`]).
pub async fn bind(
    secret: SecretKey,
    settings: &Settings,
    accepts: bool,
) -> Result<Endpoint, IrohError> {
    let opened = tokio::time::Instant::now();
    let endpoint = open_endpoint(secret, settings, accepts).await?;
    online::findable(&endpoint, &settings.relay_urls(), opened).await;
    Ok(endpoint)
}

/// Opens an endpoint with `secret` as its identity. One that `accepts` takes
/// connections for [`ALPN`]; either kind dials. Returns once its sockets are open,
/// while it still looks for a home relay: before anyone is told to reach it, wait
/// with [`online::findable`]. With `settings.mdns`, it is also found on the local
/// network.
pub async fn open_endpoint(
    secret: SecretKey,
    settings: &Settings,
    accepts: bool,
) -> Result<Endpoint, IrohError> {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .relay_mode(settings.relay_mode());
    if !settings.relay_roots.is_empty() {
        builder = builder
            .ca_tls_config(CaTlsConfig::default().with_extra_roots(settings.relay_roots.clone()));
    }
    if settings.mdns {
        builder = builder.address_lookup(super::mdns::lookup());
    }
    if accepts {
        builder = builder.alpns(vec![ALPN.to_vec()]);
    }
    builder
        .bind()
        .await
        .map_err(|err| IrohError::Bind(format!("{err:#}")))
}

/// Dials `peer` as [`connect_to`] does, and opens the link's stream.
pub async fn dial(
    endpoint: &Endpoint,
    peer: EndpointId,
    relays: &[RelayUrl],
    lingering: &Lingering,
) -> Result<Stream, IrohError> {
    let failed = |reason: String| IrohError::Connect {
        peer: peer.fmt_short().to_string(),
        reason,
    };
    let connecting = connect_to(endpoint, peer, relays, ALPN);
    let connection = tokio::time::timeout(DIAL_TIMEOUT, connecting)
        .await
        .map_err(|_| failed(format!("no answer within {} s", DIAL_TIMEOUT.as_secs())))?
        .map_err(|err: ConnectError| failed(format!("{err:#}")))?;
    let (send, recv) = tokio::time::timeout(STREAM_TIMEOUT, connection.open_bi())
        .await
        .map_err(|_| IrohError::StreamTimeout)??;
    Ok(Stream::Quic(QuicStream::new(
        send, recv, connection, lingering,
    )))
}

/// Connects to `peer` under `alpn`. On a relay, through `relays`: iroh moves to a
/// direct path once it finds one. On none, straight to where the local network finds
/// the peer, as soon as it does: an attempt that names only relays would go there
/// only when QUIC sends again.
pub(super) async fn connect_to(
    endpoint: &Endpoint,
    peer: EndpointId,
    relays: &[RelayUrl],
    alpn: &[u8],
) -> Result<Connection, ConnectError> {
    let connect = |nearby: Vec<SocketAddr>| {
        let relays = relays.iter().cloned().map(TransportAddr::Relay);
        let addr = EndpointAddr::from_parts(
            peer,
            relays.chain(nearby.into_iter().map(TransportAddr::Ip)),
        );
        endpoint.connect(addr, alpn)
    };
    if online::on_a_relay(endpoint) {
        return connect(Vec::new()).await;
    }
    let nearby = mdns::already_known(endpoint, peer).await;
    if !nearby.is_empty() {
        return connect(nearby).await;
    }
    tokio::select! {
        through_relays = connect(Vec::new()) => through_relays,
        nearby = mdns::found(endpoint, peer) => connect(nearby).await,
    }
}

/// What an accepting endpoint lets through to our TLS.
#[derive(Debug, Clone)]
pub enum Admit {
    /// Only this endpoint: the pinned peer's.
    Only(EndpointId),
    /// Anyone: a pairing endpoint, where the code decides.
    Anyone,
}

/// Accepts the next connection that `admit` lets through and its stream. A
/// connection from an endpoint that is not admitted is closed at once and yields
/// `Ok(None)`; `Err` is a connection that failed on its way in. Ends with
/// `Ok(None)` too when the endpoint is closed: check [`Endpoint::is_closed`].
pub async fn accept(
    endpoint: &Endpoint,
    admit: &Admit,
    lingering: &Lingering,
) -> Result<Option<(Stream, EndpointId)>, IrohError> {
    let Some(incoming) = endpoint.accept().await else {
        return Ok(None);
    };
    let (stream, remote) = match admit {
        Admit::Anyone => open(incoming, lingering).await?,
        Admit::Only(expected) => {
            let connection = handshake(incoming).await?;
            if connection.remote_id() != *expected {
                connection.close(REFUSED, b"not expected");
                return Ok(None);
            }
            stream_of(connection, lingering).await?
        }
    };
    Ok(Some((stream, remote)))
}

/// Finishes an incoming connection's QUIC handshake and takes the stream its
/// dialer opens, whoever it is.
pub async fn open(
    incoming: iroh::endpoint::Incoming,
    lingering: &Lingering,
) -> Result<(Stream, EndpointId), IrohError> {
    stream_of(handshake(incoming).await?, lingering).await
}

async fn handshake(
    incoming: iroh::endpoint::Incoming,
) -> Result<iroh::endpoint::Connection, IrohError> {
    incoming.await.map_err(|err| IrohError::Connect {
        peer: "an incoming endpoint".into(),
        reason: format!("{err:#}"),
    })
}

async fn stream_of(
    connection: iroh::endpoint::Connection,
    lingering: &Lingering,
) -> Result<(Stream, EndpointId), IrohError> {
    let remote = connection.remote_id();
    let (send, recv) = tokio::time::timeout(STREAM_TIMEOUT, connection.accept_bi())
        .await
        .map_err(|_| IrohError::StreamTimeout)??;
    Ok((
        Stream::Quic(QuicStream::new(send, recv, connection, lingering)),
        remote,
    ))
}

/// The QUIC close code for a connection from an endpoint we do not expect.
pub(super) const REFUSED: iroh::endpoint::VarInt = iroh::endpoint::VarInt::from_u32(1);

/// Follows the path `link`'s iroh connection uses, until it closes, and tells
/// `events` each time it changes: a hole punched, a direct path lost. Nothing for
/// a link over TCP.
pub fn watch_paths(link: &Link, events: &mpsc::UnboundedSender<Event>) {
    let Some(connection) = connection_of(link).cloned() else {
        return;
    };
    let Route::Iroh { path: mut last, .. } = link.route.clone() else {
        return;
    };
    let (peer, events) = (link.peer_name.clone(), events.clone());
    let started = Instant::now();
    tokio::spawn(async move {
        let mut paths = connection.paths_stream();
        while let Some(list) = poll_fn(|cx| Pin::new(&mut paths).poll_next(cx)).await {
            let selected = list.iter().find(|path| path.is_selected());
            let now = match selected.map(|path| path.remote_addr().clone()) {
                Some(TransportAddr::Relay(url)) => Path::Relay(url),
                Some(TransportAddr::Ip(addr)) => Path::Direct(addr),
                _ => continue,
            };
            if now == last {
                continue;
            }
            let sent = events.send(Event::PathChanged {
                peer: peer.clone(),
                from: last,
                to: now.clone(),
                after: started.elapsed(),
            });
            if sent.is_err() {
                return;
            }
            last = now;
        }
    });
}

/// The route of a stream's connection: its peer and the path iroh has chosen now.
pub fn route_of(stream: &Stream) -> Route {
    match stream {
        Stream::Tcp(tcp) => match tcp.peer_addr() {
            Ok(addr) => Route::Tcp(addr),
            Err(_) => Route::Tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        },
        Stream::Quic(quic) => Route::Iroh {
            peer: quic.connection.remote_id(),
            path: selected_path(&quic.connection),
        },
    }
}

/// The path a connection sends on now.
pub fn selected_path(connection: &iroh::endpoint::Connection) -> Path {
    let paths = connection.paths();
    let selected = paths.iter().find(|path| path.is_selected());
    match selected.map(|path| path.remote_addr().clone()) {
        Some(TransportAddr::Relay(url)) => Path::Relay(url),
        Some(TransportAddr::Ip(addr)) => Path::Direct(addr),
        _ => Path::Unknown,
    }
}

/// One of our endpoints, with what reaching a peer from it needs: the relays to try
/// and the count of streams that must be read before it closes.
#[derive(Debug, Clone)]
pub struct Node {
    pub endpoint: Endpoint,
    pub relays: Vec<RelayUrl>,
    pub lingering: Lingering,
    /// When the endpoint was opened, which the wait for its relay counts from.
    pub opened: tokio::time::Instant,
}

impl Node {
    /// Opens the endpoint with `secret` as its identity, taking connections for
    /// [`ALPN`], without waiting for a relay (see [`Node::findable`]).
    pub async fn open(secret: SecretKey, settings: &Settings) -> Result<Node, IrohError> {
        let opened = tokio::time::Instant::now();
        Ok(Node {
            endpoint: open_endpoint(secret, settings, true).await?,
            relays: settings.relay_urls(),
            lingering: Lingering::default(),
            opened,
        })
    }

    /// Waits until a peer can find the endpoint: on its home relay, or once no relay
    /// answers (see [`online::findable`]). Called again, it returns at once.
    pub async fn findable(&self) -> online::Relay {
        online::findable(&self.endpoint, &self.relays, self.opened).await
    }

    /// Closes the endpoint once the peer has read what we sent last, each step
    /// bounded: QUIC drops data in flight when a connection closes.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.lingering.finished()).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.endpoint.close()).await;
    }

    /// Our part in a session with `peer`: the smaller endpoint ID dials the other,
    /// which accepts, so that the two never race. The endpoint takes connections
    /// only for that part: the session's if it accepts, wake-up calls if it dials.
    pub fn role_with(self, peer: EndpointId) -> Role {
        match self.endpoint.id() < peer {
            true => {
                self.endpoint.set_alpns(vec![wake::WAKE_ALPN.to_vec()]);
                Role::Dial(Dial { node: self, peer })
            }
            false => {
                self.endpoint.set_alpns(vec![ALPN.to_vec()]);
                Role::Accept(Accept { node: self, peer })
            }
        }
    }
}

/// How long each step of closing an endpoint may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which side of a session over iroh we are.
#[derive(Debug)]
pub enum Role {
    Dial(Dial),
    Accept(Accept),
}

/// Reaching one peer's endpoint from ours, again after each loss.
#[derive(Debug)]
pub struct Dial {
    node: Node,
    peer: EndpointId,
}

impl Dial {
    /// One attempt: the connection and its stream.
    pub async fn open(&self) -> Result<Stream, IrohError> {
        let node = &self.node;
        dial(&node.endpoint, self.peer, &node.relays, &node.lingering).await
    }

    /// Starts taking the peer's wake-up calls, each a sign that it started again.
    pub fn wake_ups(&self) -> WakeUps {
        WakeUps::answer(self.node.endpoint.clone(), self.peer)
    }
}

impl std::fmt::Display for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "endpoint {}", self.peer.fmt_short())
    }
}

/// Taking one peer's connections at our endpoint.
#[derive(Debug)]
pub struct Accept {
    pub node: Node,
    pub peer: EndpointId,
}

/// The iroh connection `link` runs in, if it runs in one.
pub fn connection_of(link: &Link) -> Option<&iroh::endpoint::Connection> {
    match link.connection.stream().get_ref().0.get_ref() {
        Stream::Quic(quic) => Some(&quic.connection),
        Stream::Tcp(_) => None,
    }
}

/// What `/status` asks a link for its round trip; empty for TCP.
pub fn probe_of(link: &Link) -> super::Probe {
    connection_of(link)
        .map(super::Probe::of)
        .unwrap_or_default()
}
