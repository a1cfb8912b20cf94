//! The joining side: dials the inviter and proves that we know its code.

use std::io;
use std::time::Duration;

use rustls::AlertDescription;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::code::InviteCode;
use super::exchange::{self, EndpointIdBytes, PairError, Whereabouts};
use super::link::{Paired, binding_of, peer_name};
use crate::identity::Identity;
use crate::link::Stream;
use crate::link::handshake::HANDSHAKE_TIMEOUT;
use crate::link::iroh as transport;
use crate::link::rendezvous::rendezvous_key;
use crate::link::route::{Path as RoutePath, Route};
use crate::link::stream::Lingering;
use crate::link::target::Target;
use crate::link::tls::{self, TlsConfigError};
use crate::platform;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Why joining failed.
#[derive(Debug, Error)]
pub enum JoinError {
    #[error(
        "the inviter did not accept the invite code: it is wrong, or someone is intercepting the connection (each try uses up one of the code's {})",
        super::invite::MAX_WRONG_GUESSES
    )]
    WrongCode,
    #[error(
        "the invite code no longer works: it was used already, expired, or had too many wrong tries; ask for a new one"
    )]
    Closed,
    #[error(
        "the peer at {0} is not waiting for an invite code: the code was used already or has expired, or this is not the inviter's address"
    )]
    NotInviting(String),
    /// The peer broke the pairing protocol: not a compatible inviter.
    #[error("pairing with {target} failed: {reason}")]
    Misbehaved { target: String, reason: String },
    /// The connection failed or timed out.
    #[error("pairing with {target} failed: {reason}")]
    Broken { target: String, reason: String },
    #[error("the inviter at {target} was unreachable for {} s ({reason})", .within.as_secs())]
    Unreachable {
        target: String,
        reason: String,
        within: Duration,
    },
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// Dials `target`, retrying while nothing listens there, or a connection breaks
/// before the inviter answers, for up to `retry_for` (telling `on_waiting` why,
/// once), and runs the pairing exchange, announcing
/// `our_port` as where the inviter can reach us. Returns the inviter, authenticated.
pub async fn join(
    target: &Target,
    identity: &Identity,
    code: &InviteCode,
    our_port: u16,
    retry_for: Duration,
    on_waiting: impl FnOnce(&str),
) -> Result<Paired, JoinError> {
    let connector = TlsConnector::from(tls::pairing_client_config(identity)?);
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_RETRY_DELAY;
    let mut on_waiting = Some(on_waiting);
    loop {
        let reason = match dial(target).await {
            Ok(tcp) => {
                let addr = tcp.peer_addr().map_err(|err| JoinError::Broken {
                    target: target.to_string(),
                    reason: err.to_string(),
                })?;
                let _ = tcp.set_nodelay(true);
                let _ = platform::detect_dead_peer(&tcp);
                let ours = Whereabouts::Port(our_port);
                let session = |_| Ok(Route::Tcp(addr));
                let label = target.to_string();
                let paired = pair(
                    &connector,
                    Stream::Tcp(tcp),
                    &label,
                    identity,
                    code,
                    ours,
                    session,
                );
                match paired.await {
                    // Dropped before an answer, by a crowded inviter for example.
                    Err(JoinError::Broken { reason, .. }) => reason,
                    done => return done,
                }
            }
            Err(err) => err.to_string(),
        };
        if let Some(tell) = on_waiting.take() {
            tell(&reason);
        }
        if started.elapsed() >= retry_for {
            return Err(JoinError::Unreachable {
                target: target.to_string(),
                reason,
                within: retry_for,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

async fn dial(target: &Target) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in target.resolve().await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last_error = err,
        }
    }
    Err(last_error)
}

/// Pairs with the inviter that dialling the code's rendezvous endpoint reaches,
/// through every relay in `relays`, from our long-term `endpoint`, retrying while it
/// is not there yet for up to `retry_for`. Pairing version 2: both long-term endpoint
/// IDs are exchanged and confirmed.
pub async fn join_over_iroh(
    endpoint: &iroh::Endpoint,
    relays: &[iroh::RelayUrl],
    lingering: &Lingering,
    identity: &Identity,
    code: &InviteCode,
    retry_for: Duration,
    on_waiting: impl FnOnce(&str),
) -> Result<Paired, JoinError> {
    let connector = TlsConnector::from(tls::pairing_client_config(identity)?);
    let rendezvous = rendezvous_key(code).public();
    let label = "this code's endpoint".to_owned();
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_RETRY_DELAY;
    let mut on_waiting = Some(on_waiting);
    loop {
        let reason = match transport::dial(endpoint, rendezvous, relays, lingering).await {
            Ok(stream) => {
                let ours = Whereabouts::Endpoint(*endpoint.id().as_bytes());
                let session = |inviter: Option<EndpointIdBytes>| {
                    let id = inviter.ok_or("the inviter sent no endpoint ID")?;
                    let peer = iroh::EndpointId::from_bytes(&id)
                        .map_err(|_| "the inviter's endpoint ID is not a key")?;
                    Ok(Route::Iroh {
                        peer,
                        path: RoutePath::Unknown,
                    })
                };
                match pair(&connector, stream, &label, identity, code, ours, session).await {
                    Err(JoinError::Broken { reason, .. }) => reason,
                    done => return done,
                }
            }
            Err(err) => err.to_string(),
        };
        if let Some(tell) = on_waiting.take() {
            tell(&reason);
        }
        if started.elapsed() >= retry_for {
            return Err(JoinError::Unreachable {
                target: label,
                reason,
                within: retry_for,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// Pairing on a connected stream: TLS with any certificate, then the exchange, with
/// `ours` announced; `session` turns what the inviter announced into where its
/// session is.
async fn pair(
    connector: &TlsConnector,
    transport_stream: Stream,
    target: &str,
    identity: &Identity,
    code: &InviteCode,
    ours: Whereabouts,
    session: impl FnOnce(Option<EndpointIdBytes>) -> Result<Route, &'static str>,
) -> Result<Paired, JoinError> {
    let failed = |reason: String| JoinError::Broken {
        target: target.to_owned(),
        reason,
    };
    let pairing = async {
        // Names mean nothing to the pairing's verifier.
        let server_name = match &transport_stream {
            Stream::Tcp(tcp) => tcp
                .peer_addr()
                .map(|addr| ServerName::IpAddress(addr.ip().into()))
                .map_err(|err| failed(err.to_string()))?,
            Stream::Quic(_) => ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
        };
        let mut stream = connector
            .connect(server_name, transport_stream)
            .await
            .map_err(|err| match tls::received_alert(&err) {
                Some(AlertDescription::NoApplicationProtocol) => {
                    JoinError::NotInviting(target.to_owned())
                }
                _ => failed(format!("TLS: {}", tls::explain(&err))),
            })?;
        let (_, connection) = stream.get_ref();
        let binding = binding_of(connection, identity.fingerprint, true)
            .map_err(|err| failed(err.to_string()))?;
        let name = peer_name(connection);
        let joined = exchange::join(&mut stream, code, &binding, ours).await;
        let _ = stream.shutdown().await;
        match joined {
            Ok(inviter) => Ok(Paired {
                fingerprint: binding.listener,
                name,
                session: session(inviter).map_err(|reason| JoinError::Misbehaved {
                    target: target.to_owned(),
                    reason: reason.into(),
                })?,
            }),
            Err(PairError::WrongCode) => Err(JoinError::WrongCode),
            Err(PairError::InviteClosed) => Err(JoinError::Closed),
            Err(PairError::Io(err)) => Err(failed(err.to_string())),
            Err(other) => Err(JoinError::Misbehaved {
                target: target.to_owned(),
                reason: other.to_string(),
            }),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, pairing)
        .await
        .unwrap_or_else(|_| {
            Err(failed(format!(
                "no answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )))
        })
}
