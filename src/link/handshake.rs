//! Turning a transport's stream into an authenticated, greeted [`Link`], for both roles.
//!
//! In TLS 1.3 the connecting side finishes its handshake before the listener has
//! checked the client certificate. The listener therefore speaks first: its `Hello`
//! is the proof that it accepted us, and the connector sends nothing until it arrives.
//!
//! The listening side reports each [`Stage`] it reaches, so that the listener can
//! tell a stranger that has said nothing from one whose TLS is under way, and the
//! pinned peer from both.

use std::io;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::server::Acceptor;
use thiserror::Error;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor, TlsConnector, TlsStream};

use crate::frame::{Frame, MAX_NAME_LEN};
use crate::identity::common_name;
use crate::identity::fingerprint::Fingerprint;
use crate::link::connection::{Connection, ConnectionError};
use crate::link::knock::Doorman;
use crate::link::read_ahead::ReadAhead;
use crate::link::tls::{self, TlsSummary};
use crate::link::{Route, Stream};
use crate::platform;

/// How long a peer has to complete TLS and the greeting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an accepted connection has to deliver its whole ClientHello, within
/// [`HANDSHAKE_TIMEOUT`]. A real client sends it in its first packet, right after the
/// TCP handshake, so 3 s leaves room for a couple of retransmissions on a lossy link.
/// A stranger that sends nothing, or a byte at a time, is gone after 3 s instead of
/// holding a slot for 10.
pub const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Written data the kernel may hold unsent: two chunk frames. A chat line then waits
/// behind at most these and the frames in flight, not behind the megabytes a socket
/// buffer grows to while the peer's disk is the slower end.
const UNSENT_LIMIT: u32 = 128 * 1024;

/// What a peer connection asks of the kernel, on either side: notice a peer that
/// vanished, and hold little unsent. Where a system refuses, its defaults stay.
/// A QUIC stream needs neither: iroh notices a dead path and bounds what it holds.
fn tune(stream: &Stream) {
    if let Stream::Tcp(tcp) = stream {
        let _ = platform::detect_dead_peer(tcp);
        let _ = platform::bound_unsent(tcp, UNSENT_LIMIT);
    }
}

/// How far an accepted connection has got. The listener sheds the least advanced
/// first, and never one that has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Accepted; its whole ClientHello has not arrived yet.
    AwaitingClientHello,
    /// The ClientHello is in; the TLS handshake is under way.
    Tls,
    /// As [`Stage::Tls`], and the ClientHello carried the pinned peer's knock
    /// ([`crate::link::knock`]): shed only for another that knocked.
    Knocked,
    /// TLS finished and the pin verifier accepted the certificate: the pinned peer,
    /// now greeting.
    Authenticated,
}

/// TLS over a transport's stream, reading ahead once the peer is authenticated.
pub type Tls = TlsStream<ReadAhead<Stream>>;

/// A TLS connection to the pinned peer, after both greetings.
#[derive(Debug)]
pub struct Link {
    pub connection: Connection<Tls>,
    /// The common name in the peer's pinned certificate (untrusted text).
    pub peer_name: String,
    /// The peer's certificate, as the pin verifier accepted it.
    pub peer_fingerprint: Fingerprint,
    /// The peer's per-run session id from its `Hello`.
    pub peer_session: u64,
    /// The protocol version both sides speak on this link (ALPN, confirmed by `Hello`).
    pub version: u16,
    /// How it reaches the peer.
    pub route: Route,
    pub tls: TlsSummary,
}

impl Link {
    /// Tells `events` from now on when the route changes under the link (a hole
    /// punched, a direct path lost), for as long as it lasts.
    pub fn watch_route(
        &self,
        events: &tokio::sync::mpsc::UnboundedSender<crate::session::event::Event>,
    ) {
        crate::link::iroh::watch_paths(self, events);
    }

    /// What `/status` asks for the round trip.
    pub fn probe(&self) -> crate::link::Probe {
        crate::link::iroh::probe_of(self)
    }

    /// Whether this connection carries both directions (single-connection mode).
    pub fn carries_both(&self) -> bool {
        tls::carries_both(self.version)
    }

    /// Whether we dialed this connection (we are its TLS client).
    pub fn dialed(&self) -> bool {
        matches!(self.connection.stream(), TlsStream::Client(_))
    }
}

/// What we announce in our `Hello`.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub session_id: u64,
    pub name: String,
}

/// Why a connection did not become a [`Link`].
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// TLS and the greeting did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("handshake timed out after {}s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout,
    /// No complete ClientHello arrived within [`CLIENT_HELLO_TIMEOUT`].
    #[error("no complete TLS ClientHello within {}s", CLIENT_HELLO_TIMEOUT.as_secs())]
    ClientHelloTimeout,
    /// The listener gave this handshake's slot to a newer connection (and said so
    /// when it did).
    #[error("dropped for a newer connection")]
    Shed,
    /// The TLS handshake failed; see [`tls::pin_mismatch`] and [`tls::received_alert`].
    #[error("TLS handshake failed: {}", tls::explain(.0))]
    Tls(io::Error),
    /// Reading or writing the greeting failed.
    #[error("greeting failed: {0}")]
    Greeting(#[from] ConnectionError),
    /// The peer closed the connection before greeting.
    #[error("the peer closed the connection before greeting")]
    Closed,
    /// The first frame was not a `Hello`.
    #[error("expected Hello, received {0}")]
    NotHello(&'static str),
    /// The peer's `Hello` names another version than the one TLS negotiated.
    #[error("the peer's Hello says protocol version {got}, but version {agreed} was agreed")]
    Version { got: u16, agreed: u16 },
    /// We accept one connection for both directions (`--accept`), and the dialer
    /// offered only the protocol names of one connection per direction (told by
    /// ALPN before anything is authenticated).
    #[error(
        "it dialed for one connection per direction, but this side runs with --accept: run that side with --connect ADDRESS:PORT --no-listen"
    )]
    OtherMode,
}

impl HandshakeError {
    /// The other side closed the connection before the handshake was done.
    pub fn is_closed_by_client(&self) -> bool {
        matches!(self, HandshakeError::Closed)
            || self
                .io_error()
                .is_some_and(|err| err.kind() == io::ErrorKind::UnexpectedEof)
    }

    /// The underlying I/O error of a failed TLS handshake or greeting, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            HandshakeError::Tls(err) | HandshakeError::Greeting(ConnectionError::Io(err)) => {
                Some(err)
            }
            _ => None,
        }
    }
}

impl Greeting {
    /// A greeting with a fresh random session id. The name is informational (the
    /// peer shows the name in our certificate) and is cut, at a character boundary,
    /// to what `Hello` may carry: a certificate made elsewhere may have a longer one.
    pub fn new(mut name: String) -> Self {
        let mut end = name.len().min(MAX_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        let mut bytes = [0u8; 8];
        tls::crypto_provider()
            .secure_random
            .fill(&mut bytes)
            .expect("the system random number generator failed");
        Greeting {
            session_id: u64::from_be_bytes(bytes),
            name,
        }
    }

    fn hello(&self, version: u16) -> Frame {
        Frame::Hello {
            version,
            session_id: self.session_id,
            name: self.name.clone(),
        }
    }
}

/// The listening side: the ClientHello (within [`CLIENT_HELLO_TIMEOUT`]), the rest of
/// TLS, then our `Hello`, then the peer's, all within [`HANDSHAKE_TIMEOUT`].
///
/// `reached` is told each [`Stage`] as it is reached; when it answers `false` the
/// handshake stops with [`HandshakeError::Shed`]. rustls reads the ClientHello itself
/// ([`LazyConfigAcceptor`]), so every byte goes through it and nothing is buffered
/// here beyond what it keeps anyway.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: Stream,
    route: Route,
    greeting: &Greeting,
    doorman: Option<&Doorman>,
    mut reached: impl FnMut(Stage) -> bool,
) -> Result<Link, HandshakeError> {
    tune(&stream);
    let handshake = async {
        let client_hello = LazyConfigAcceptor::new(Acceptor::default(), ReadAhead::new(stream));
        let start = tokio::time::timeout(CLIENT_HELLO_TIMEOUT, client_hello)
            .await
            .map_err(|_| HandshakeError::ClientHelloTimeout)?
            .map_err(HandshakeError::Tls)?;
        let hello = start.client_hello();
        let knocked =
            doorman.is_some_and(|doorman| doorman.admits(hello.alpn().into_iter().flatten()));
        if !reached(if knocked { Stage::Knocked } else { Stage::Tls }) {
            return Err(HandshakeError::Shed);
        }
        let other_mode = other_mode_offered(&hello, acceptor);
        // A dialer that offered names of its own is refused by TLS itself, with
        // `no_application_protocol`, which tells it why.
        let mut tls = start
            .into_stream(acceptor.config().clone())
            .await
            .map_err(|err| {
                if other_mode {
                    HandshakeError::OtherMode
                } else {
                    HandshakeError::Tls(err)
                }
            })?;
        if other_mode {
            return Err(HandshakeError::OtherMode);
        }
        // The handshake completes only once the pin verifier has accepted the
        // client's certificate and its signature has been checked.
        if !reached(Stage::Authenticated) {
            return Err(HandshakeError::Shed);
        }
        tls.get_mut().0.read_ahead();
        let version = tls::negotiated_version(tls.get_ref().1);
        let mut connection = Connection::new(TlsStream::Server(tls));
        connection.write_frame(&greeting.hello(version)).await?;
        let peer_session = read_hello(&mut connection, version).await?;
        Ok(into_link(connection, peer_session, version, route))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// Whether a ClientHello asks an accepting listener (`--accept`) for one connection
/// per direction. (A two-connection listener takes both kinds.)
fn other_mode_offered(hello: &rustls::server::ClientHello<'_>, acceptor: &TlsAcceptor) -> bool {
    let ours = &acceptor.config().alpn_protocols;
    let we_take_two = ours.iter().any(|name| tls::ALPN.contains(&name.as_slice()));
    let offered: Vec<&[u8]> = hello.alpn().map(Iterator::collect).unwrap_or_default();
    let wants_one = offered
        .iter()
        .any(|name| tls::ONE_CONNECTION_ALPN.contains(name));
    let wants_two = offered.is_empty() || offered.iter().any(|name| tls::ALPN.contains(name));
    !we_take_two && wants_two && !wants_one
}

/// The connecting side: TLS, then the peer's `Hello` (proof it accepted us), then ours.
/// A `knock` goes in the ClientHello after the connector's protocol names.
pub async fn connect(
    connector: &TlsConnector,
    stream: Stream,
    route: Route,
    greeting: &Greeting,
    knock: Option<Vec<u8>>,
) -> Result<Link, HandshakeError> {
    tune(&stream);
    let handshake = async {
        // Names mean nothing to the pin verifier; an address is all TLS needs.
        let server_name = match &route {
            Route::Tcp(addr) => ServerName::IpAddress(addr.ip().into()),
            Route::Iroh { .. } => ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
        };
        let stream = ReadAhead::new(stream);
        let connecting = match knock {
            Some(knock) => {
                let mut names = connector.config().alpn_protocols.clone();
                names.push(knock);
                connector.with_alpn(names).connect(server_name, stream)
            }
            None => connector.connect(server_name, stream),
        };
        let mut tls = connecting.await.map_err(HandshakeError::Tls)?;
        // The handshake completes only once the pin verifier has accepted the
        // listener's certificate.
        tls.get_mut().0.read_ahead();
        let version = tls::negotiated_version(tls.get_ref().1);
        let mut connection = Connection::new(TlsStream::Client(tls));
        let peer_session = read_hello(&mut connection, version).await?;
        connection.write_frame(&greeting.hello(version)).await?;
        Ok(into_link(connection, peer_session, version, route))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn read_hello(connection: &mut Connection<Tls>, agreed: u16) -> Result<u64, HandshakeError> {
    match connection.read_frame().await? {
        None => Err(HandshakeError::Closed),
        Some(Frame::Hello {
            version,
            session_id,
            ..
        }) if version == agreed => Ok(session_id),
        Some(Frame::Hello { version, .. }) => Err(HandshakeError::Version {
            got: version,
            agreed,
        }),
        Some(other) => Err(HandshakeError::NotHello(other.kind())),
    }
}

fn into_link(connection: Connection<Tls>, peer_session: u64, version: u16, route: Route) -> Link {
    let (_, state) = connection.stream().get_ref();
    let certificate = state
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("both sides of a finished handshake have presented a certificate");
    let peer_name = common_name(certificate).unwrap_or_else(|| "peer".to_owned());
    let peer_fingerprint = Fingerprint::of(certificate);
    let tls = tls::summarize(state);
    Link {
        connection,
        peer_name,
        peer_fingerprint,
        peer_session,
        version,
        route,
        tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_certificate_name_is_cut_to_what_hello_carries() {
        let greeting = Greeting::new("é".repeat(40));
        assert_eq!(greeting.name, "é".repeat(32));
        let mut out = Vec::new();
        greeting.hello(2).encode(&mut out);
        assert!(matches!(
            Frame::decode(&out),
            Ok(Some((Frame::Hello { .. }, _)))
        ));
    }
}
