//! The dialer: reaches the peer's listener, retrying while it is not up, and dials
//! again each time the connection it made is lost, until that connection ends for good.

use std::sync::Arc;
use std::time::Duration;

use rustls::AlertDescription;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_rustls::TlsConnector;

use crate::identity::fingerprint::Fingerprint;
use crate::link::handshake::{self, Greeting, HandshakeError, Link};
use crate::link::iroh as transport;
use crate::link::knock;
use crate::link::target::Target;
use crate::link::tls::{self, Pin, PinMismatch};
use crate::link::wake::{self, WakeUps};
use crate::link::{Route, Stream};
use crate::session::event::Event;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A connection the dialer made. Telling `on_loss` has it dial again; dropping it
/// untold means the connection ended for good.
pub struct Dialed {
    pub link: Link,
    pub on_loss: oneshot::Sender<()>,
}

/// Why the dialer stopped.
#[derive(Debug)]
pub enum DialEnd {
    /// Its last connection ended for good, or nobody wants another.
    Done,
    /// The peer is not the one we pinned, or it refused us. Retrying cannot help.
    Refused(Refusal),
    /// The peer stayed unreachable for longer than `--retry-for`.
    GaveUp(String),
}

/// Dials, hands the connection to `links`, and dials again whenever it is lost, or
/// when the peer calls to say it started again (over iroh): the connection we hold
/// then is to its previous run, and the new one replaces it. In two-connection mode,
/// asked to, it dials once more for a connection that carries both directions, and
/// stays in that mode when the peer takes it.
pub async fn run(
    mut dialer: Dialer,
    links: mpsc::Sender<Dialed>,
    events: mpsc::UnboundedSender<Event>,
) -> DialEnd {
    let mut wake_ups = match &dialer.target {
        Destination::Iroh(dial) => Some(dial.wake_ups()),
        Destination::Tcp(_) => None,
    };
    let mut connected_before = false;
    let mut next = None;
    loop {
        let link = match next.take() {
            Some(link) => link,
            None => match dialer.dial(&events, connected_before, &mut wake_ups).await {
                Ok(link) => link,
                Err(end) => return end,
            },
        };
        if let Some(wake_ups) = &mut wake_ups {
            wake_ups.seen();
        }
        connected_before = true;
        let held = transport::connection_of(&link).cloned();
        let (on_loss, mut lost) = oneshot::channel();
        if links.send(Dialed { link, on_loss }).await.is_err() {
            return DialEnd::Done;
        }
        next = loop {
            tokio::select! {
                lost = &mut lost => if lost.is_err() {
                    return DialEnd::Done;
                } else {
                    break None;
                },
                // The peer started again: the connection we hold is to its previous run.
                // Closed first, as iroh sends a new connection's first packets only on
                // the path an open one to the same endpoint uses, a dead one here.
                () = woken(&mut wake_ups) => {
                    if let Some(held) = held {
                        held.close(wake::STALE, b"the peer started again");
                    }
                    break None;
                }
                // The session retires the connection we hold once it has this one.
                () = asked(dialer.two_connections.as_ref()) => {
                    if let Some(link) = dialer.carry_both().await {
                        break Some(link);
                    }
                }
            }
        };
    }
}

/// Waits until the session asks for one connection for both directions; forever
/// where it cannot.
async fn asked(two_connections: Option<&TwoConnections>) {
    match two_connections {
        Some(two) => two.carry_both.notified().await,
        None => std::future::pending().await,
    }
}

/// Waits until the peer has connected to us: it is up, so the next attempt need
/// not wait for the backoff. Forever where nobody tells.
async fn peer_seen(two_connections: Option<&TwoConnections>) {
    match two_connections {
        Some(two) => two.peer_seen.notified().await,
        None => std::future::pending().await,
    }
}

/// Waits for the peer's next wake-up call; forever where none can come.
async fn woken(wake_ups: &mut Option<WakeUps>) {
    match wake_ups {
        Some(wake_ups) => wake_ups.next().await,
        None => std::future::pending().await,
    }
}

/// Why the peer we reached is not one we may talk to.
#[derive(Debug, Clone, Error)]
#[error("{reason}")]
pub struct Refusal {
    pub reason: String,
    /// Set when it presented another certificate than the pinned one (rather than
    /// refusing ours).
    pub mismatch: Option<PinMismatch>,
    /// Where we reached it.
    pub target: String,
}

/// Where the dialer reaches the peer.
pub enum Destination {
    /// A TCP listener at a host and port.
    Tcp(Target),
    /// An iroh endpoint, through the relays or an address iroh learns.
    Iroh(transport::Dial),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Tcp(target) => write!(f, "{target}"),
            Destination::Iroh(dial) => write!(f, "{dial}"),
        }
    }
}

/// Everything needed to reach the peer.
pub struct Dialer {
    pub target: Destination,
    pub connector: TlsConnector,
    pub greeting: Greeting,
    pub retry_for: Duration,
    /// The pin the connector checks; a new one restarts the attempts at once.
    pub pin: Pin,
    /// Our certificate's fingerprint, for the knock (a TCP listener only needs it).
    pub own: Fingerprint,
    pub wrong_pin: WrongPin,
    /// In two-connection mode, what ties the dialer to the session's listening side;
    /// `None` in single-connection mode (`--no-listen`, iroh), where the connection
    /// carries both directions.
    pub two_connections: Option<TwoConnections>,
}

/// A two-connection dialer's ties to the session: when to dial at once, and when
/// to carry both directions on one connection instead (PROTOCOL.md §13, "From two
/// connections to one").
pub struct TwoConnections {
    /// The peer connected to us.
    pub peer_seen: Arc<Notify>,
    /// Only our connection came up: dial once for one that carries both directions.
    pub carry_both: Arc<Notify>,
    /// The connector for that connection: single-connection protocol names.
    pub one_connection: TlsConnector,
}

/// What a wrong certificate before the first connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongPin {
    /// The end: exit status 3 (scripts, pipes).
    Fatal,
    /// Say so, and keep trying while the person re-enters the fingerprint (or the
    /// other side corrects ours).
    AskAgain,
}

impl Dialer {
    /// Connects, retrying with capped exponential backoff while the peer is unreachable,
    /// for at most `retry_for`. Returns an error when retrying cannot help or time is up.
    ///
    /// A wrong certificate or a refusal is final only before the pinned peer has ever
    /// answered: afterwards it may be a stranger holding the port while the peer
    /// restarts, or a forged alert, so it is reported and retried.
    ///
    /// A wake-up call from the peer cuts the wait before the next attempt short.
    async fn dial(
        &self,
        events: &mpsc::UnboundedSender<Event>,
        connected_before: bool,
        wake_ups: &mut Option<WakeUps>,
    ) -> Result<Link, DialEnd> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut told_user = false;
        let mut started = tokio::time::Instant::now();
        let mut pin_changes = self.pin.changes();
        let mut last_mismatch = None;
        loop {
            let reason = match self.try_dial().await {
                Ok(link) => return Ok(link),
                Err(DialFailure::Fatal { reason, mismatch })
                    if !connected_before && self.wrong_pin == WrongPin::Fatal =>
                {
                    return Err(DialEnd::Refused(Refusal {
                        reason,
                        mismatch,
                        target: self.target.to_string(),
                    }));
                }
                Err(DialFailure::Fatal {
                    reason,
                    mismatch: Some(mismatch),
                }) if !connected_before => {
                    if last_mismatch.replace(mismatch.clone()) != Some(mismatch.clone()) {
                        let _ = events.send(Event::WrongPin {
                            target: self.target.to_string(),
                            mismatch,
                        });
                    }
                    reason
                }
                Err(DialFailure::Fatal { reason, .. }) if !connected_before => reason,
                Err(DialFailure::Fatal { reason, .. }) => {
                    let _ = events.send(Event::Distrusted {
                        reason: reason.clone(),
                    });
                    reason
                }
                Err(DialFailure::Retry(reason)) => reason,
            };
            let target = self.target.to_string();
            if started.elapsed() >= self.retry_for {
                let _ = events.send(Event::GaveUp {
                    target: target.clone(),
                    reason: reason.clone(),
                });
                return Err(DialEnd::GaveUp(format!(
                    "the peer at {target} was unreachable for {}s ({reason})",
                    self.retry_for.as_secs()
                )));
            }
            if !told_user {
                told_user = true;
                let _ = events.send(Event::Waiting {
                    target: target.clone(),
                    reason: reason.clone(),
                });
            }
            let _ = events.send(Event::Retrying {
                target,
                reason,
                delay,
            });
            let left = self.retry_for.saturating_sub(started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(delay.min(left)) => delay = (delay * 2).min(MAX_RETRY_DELAY),
                Ok(()) = pin_changes.changed() => {
                    // The same wrong fingerprint entered again is reported again.
                    last_mismatch = None;
                    delay = FIRST_RETRY_DELAY;
                    started = tokio::time::Instant::now();
                }
                () = woken(wake_ups) => delay = FIRST_RETRY_DELAY,
                () = peer_seen(self.two_connections.as_ref()) => delay = FIRST_RETRY_DELAY,
            }
        }
    }

    /// Dials once for a connection that carries both directions, and from then on
    /// dials only for such connections. `None`, and two connections as before, when
    /// the peer does not take one (an older `chat`) or cannot be reached just now.
    async fn carry_both(&mut self) -> Option<Link> {
        let mut two = self.two_connections.take()?;
        std::mem::swap(&mut self.connector, &mut two.one_connection);
        match self.try_dial().await {
            Ok(link) => Some(link),
            Err(_) => {
                std::mem::swap(&mut self.connector, &mut two.one_connection);
                self.two_connections = Some(two);
                None
            }
        }
    }

    /// Whether our connection carries both directions.
    fn one_connection(&self) -> bool {
        self.two_connections.is_none()
    }

    async fn try_dial(&self) -> Result<Link, DialFailure> {
        match &self.target {
            Destination::Tcp(target) => self.try_tcp(target).await,
            Destination::Iroh(dial) => {
                let stream = dial
                    .open()
                    .await
                    .map_err(|err| DialFailure::Retry(err.to_string()))?;
                let route = transport::route_of(&stream);
                let target = self.target.to_string();
                handshake::connect(&self.connector, stream, route, &self.greeting, None)
                    .await
                    .map_err(|err| classify(&target, err, self.one_connection()))
            }
        }
    }

    async fn try_tcp(&self, target: &Target) -> Result<Link, DialFailure> {
        let addrs = target
            .resolve()
            .await
            .map_err(|err| DialFailure::Retry(err.to_string()))?;
        let mut last_error = String::from("no address");
        for addr in addrs {
            let tcp = match TcpStream::connect(addr).await {
                Ok(tcp) => tcp,
                Err(err) => {
                    last_error = err.to_string();
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return handshake::connect(
                &self.connector,
                Stream::Tcp(tcp),
                Route::Tcp(addr),
                &self.greeting,
                Some(knock::knock(&self.own, &self.pin)),
            )
            .await
            .map_err(|err| classify(&addr.to_string(), err, self.one_connection()));
        }
        Err(DialFailure::Retry(last_error))
    }
}

enum DialFailure {
    Retry(String),
    /// A wrong certificate, or the peer refused ours.
    Fatal {
        reason: String,
        mismatch: Option<PinMismatch>,
    },
}

/// Pin mismatches and refusals are final; everything else may be a peer still starting.
fn classify(addr: &str, err: HandshakeError, one_connection: bool) -> DialFailure {
    if let Some(io) = err.io_error() {
        if tls::received_alert(io) == Some(AlertDescription::NoApplicationProtocol) {
            return DialFailure::Fatal {
                reason: other_mode(addr, one_connection),
                mismatch: None,
            };
        }
        if let Some(mismatch) = tls::pin_mismatch(io) {
            return DialFailure::Fatal {
                reason: format!("the peer at {addr} is not the one we trust: {mismatch}"),
                mismatch: Some(mismatch.clone()),
            };
        }
        if let Some(alert) = tls::received_alert(io) {
            return DialFailure::Fatal {
                reason: format!(
                    "the peer at {addr} refused our certificate (TLS alert {alert:?}); check that it pinned our fingerprint"
                ),
                mismatch: None,
            };
        }
    }
    match err {
        HandshakeError::Version { .. } | HandshakeError::NotHello(_) => {
            DialFailure::Retry(format!("the peer at {addr} broke the greeting: {err}"))
        }
        HandshakeError::Timeout => DialFailure::Retry(format!(
            "the connection was accepted, but the peer has not answered within {}s; it may still be at its prompts",
            handshake::HANDSHAKE_TIMEOUT.as_secs()
        )),
        other => DialFailure::Retry(other.to_string()),
    }
}

/// What a dialer is told when the listener speaks the other mode: a listener
/// started with `--accept` offers only single-connection mode, any other only two
/// connections, and TLS finds no protocol in common (`no_application_protocol`).
fn other_mode(addr: &str, one_connection: bool) -> String {
    if one_connection {
        format!(
            "the peer at {addr} does not take a single connection for both directions: \
             start it with `chat --accept`, or drop --no-listen here (then each side dials the other); \
             if it waits for a pairing (--invite), that needs both sides to listen"
        )
    } else {
        format!(
            "the peer at {addr} speaks no protocol version of ours: if it runs with --accept \
             (one connection for both directions), run `chat --connect {addr} --no-listen` here; \
             if it waits for a pairing (--invite), join it with --join"
        )
    }
}
