//! The inviting side: waits on the listener for the one joiner that knows the code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::server::Acceptor;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use super::code::InviteCode;
use super::exchange::{self, Answered, EndpointIdBytes, NoGuess, Whereabouts};
use super::invite::{AfterWrongGuess, Closed, Invite};
use super::link::{Paired, binding_of, peer_name};
use crate::identity::Identity;
use crate::identity::fingerprint::Fingerprint;
use crate::link::Stream;
use crate::link::addresses;
use crate::link::handshake::{CLIENT_HELLO_TIMEOUT, HANDSHAKE_TIMEOUT, Stage};
use crate::link::iroh as transport;
use crate::link::listener::{self, Slot};
use crate::link::route::{Path, Route};
use crate::link::stream::Lingering;
use crate::link::tls::{self, TlsConfigError};
use crate::platform;

/// Pairing connections over iroh handled at once; more wait in iroh's queue. Each
/// has [`HANDSHAKE_TIMEOUT`] to finish. Nobody without the code can find the
/// rendezvous endpoint, so there is no crowd to shed.
const CONCURRENT_IROH_ATTEMPTS: usize = 16;
/// How often the inviter hears how many strangers were shed, while some are.
const CROWD_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Something the person who invited should know while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteReport {
    /// Someone tried a wrong code; `left` more wrong tries are allowed.
    WrongCode { from: Route, left: u32 },
    /// Someone made a guess and broke off (hung up, or stalled past the deadline)
    /// before proving anything, which counts as a wrong try; `left` more are allowed.
    BrokeOff { from: Route, left: u32 },
    /// A connection that made no guess that counts: for verbose output.
    Dropped { from: Option<Route>, reason: String },
    /// Over TCP, the first connection lost its place to a newer one: someone is
    /// crowding the port, and a joiner may need several tries.
    CrowdBegan,
    /// Over TCP, `dropped` more connections lost their place to newer ones within
    /// `window`; one report each [`CROWD_REPORT_EVERY`] while it goes on.
    Crowded { dropped: u64, window: Duration },
}

/// Why no one joined with this code.
#[derive(Debug, Error)]
pub enum InviteError {
    /// Nobody came in time.
    #[error("the invite code expired after {} minutes unused; run chat --invite again for a new one", .0.as_secs() / 60)]
    Expired(Duration),
    /// The code died of wrong guesses; a fresh one may be offered.
    #[error(
        "the invite code stopped working after {} wrong tries",
        super::invite::MAX_WRONG_GUESSES
    )]
    TooManyWrongGuesses,
    /// The code was proved and so used up, but the pairing broke off; a fresh one
    /// may be offered.
    #[error(
        "the joiner at {0} proved the code but broke off before pairing finished, which used the code up"
    )]
    JoinerVanished(Route),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// Where joiners arrive.
pub enum Door<'a> {
    /// A TCP listener: pairing version 1, the joiner announces a port.
    Tcp(&'a TcpListener),
    /// The code's rendezvous endpoint: pairing version 2, and `ours` is the long-term
    /// endpoint ID that the session will use.
    Iroh {
        rendezvous: &'a iroh::Endpoint,
        ours: iroh::EndpointId,
        lingering: &'a Lingering,
    },
}

/// A connection at the door, on its way to a stream.
enum Arrival {
    Tcp(TcpStream, SocketAddr),
    Iroh(Box<iroh::endpoint::Incoming>),
}

impl Door<'_> {
    async fn next(&self) -> Option<Arrival> {
        match self {
            Door::Tcp(listener) => match listener.accept().await {
                Ok((tcp, addr)) => Some(Arrival::Tcp(tcp, addresses::canonical(addr))),
                // Out of file descriptors, for example: let others finish first.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    None
                }
            },
            Door::Iroh { rendezvous, .. } => match rendezvous.accept().await {
                Some(incoming) => Some(Arrival::Iroh(Box::new(incoming))),
                // Closed: nobody more can come.
                None => std::future::pending().await,
            },
        }
    }

    fn lingering(&self) -> Lingering {
        match self {
            Door::Tcp(_) => Lingering::default(),
            Door::Iroh { lingering, .. } => (*lingering).clone(),
        }
    }

    fn is_tcp(&self) -> bool {
        matches!(self, Door::Tcp(_))
    }

    fn ours(&self) -> Option<EndpointIdBytes> {
        match self {
            Door::Tcp(_) => None,
            Door::Iroh { ours, .. } => Some(*ours.as_bytes()),
        }
    }
}

/// Answers pairing connections at `door` until one knows `code` (and returns
/// who it is and where its session is), the code dies of wrong guesses, or
/// `lifetime` passes.
pub async fn wait_for_joiner(
    door: &Door<'_>,
    identity: &Identity,
    code: InviteCode,
    lifetime: Duration,
    mut report: impl FnMut(InviteReport),
) -> Result<Paired, InviteError> {
    let acceptor = TlsAcceptor::from(tls::pairing_server_config(identity)?);
    let invite = Arc::new(Mutex::new(Invite::with_lifetime(
        code,
        Instant::now(),
        lifetime,
    )));
    let expiry = tokio::time::sleep(lifetime);
    tokio::pin!(expiry);
    let mut expired = false;
    let mut attempts = JoinSet::new();
    let table = listener::table(listener::LIMITS);
    let mut crowd = Crowd::default();
    let mut crowd_reports = tokio::time::interval(CROWD_REPORT_EVERY);
    loop {
        // An attempt admitted before the code expired may still finish.
        if expired && attempts.is_empty() {
            return Err(InviteError::Expired(lifetime));
        }
        let room = door.is_tcp() || attempts.len() < CONCURRENT_IROH_ATTEMPTS;
        tokio::select! {
            biased;
            Some(done) = attempts.join_next() => match done {
                Ok(Ok(paired)) => return Ok(paired),
                Ok(Err(Failure::Guess { from, left, broke_off })) => {
                    report(if broke_off {
                        InviteReport::BrokeOff { from, left }
                    } else {
                        InviteReport::WrongCode { from, left }
                    });
                    if left == 0 {
                        return Err(InviteError::TooManyWrongGuesses);
                    }
                }
                Ok(Err(Failure::Vanished { from })) => return Err(InviteError::JoinerVanished(from)),
                Ok(Err(Failure::Other { from, reason })) => report(InviteReport::Dropped { from, reason }),
                // Shed, and counted when it was.
                Err(_) => {}
            },
            () = &mut expiry, if !expired => expired = true,
            _ = crowd_reports.tick() => {
                if let Some(report_now) = crowd.report() {
                    report(report_now);
                }
            }
            arrival = door.next(), if !expired && room => {
                let Some(arrival) = arrival else { continue };
                let (acceptor, invite, ours) = (acceptor.clone(), invite.clone(), door.ours());
                let lingering = door.lingering();
                let fingerprint = identity.fingerprint;
                let addr = arrival_addr(&arrival);
                let answer = move |slot| async move {
                    let (stream, from) = arrive(arrival, &lingering).await?;
                    answer(acceptor, stream, from, invite, fingerprint, ours, slot).await
                };
                match addr {
                    None => {
                        attempts.spawn(answer(None));
                    }
                    Some(addr) => {
                        let taken = listener::take_slot(&table, addr, |slot| {
                            attempts.spawn(answer(Some(slot)))
                        });
                        let dropped = match taken {
                            Ok(shed) => shed.map(|shed| (shed.addr, shed.to_string())),
                            Err(full) => Some((addr, full.to_string())),
                        };
                        if let Some((addr, reason)) = dropped {
                            let from = Some(Route::Tcp(addr));
                            report(InviteReport::Dropped { from, reason });
                            if crowd.dropped() {
                                report(InviteReport::CrowdBegan);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Connections shed since the last report.
#[derive(Debug, Default)]
struct Crowd {
    dropped: u64,
    since: Option<Instant>,
    began: bool,
}

impl Crowd {
    /// Counts one more after the first; true for the first, told on its own.
    fn dropped(&mut self) -> bool {
        if !std::mem::replace(&mut self.began, true) {
            return true;
        }
        self.dropped += 1;
        false
    }

    fn report(&mut self) -> Option<InviteReport> {
        let now = Instant::now();
        let since = self.since.replace(now)?;
        let dropped = std::mem::take(&mut self.dropped);
        (dropped > 0).then(|| InviteReport::Crowded {
            dropped,
            window: now - since,
        })
    }
}

/// Where a TCP arrival comes from; iroh arrivals take no slot.
fn arrival_addr(arrival: &Arrival) -> Option<SocketAddr> {
    match arrival {
        Arrival::Tcp(_, addr) => Some(*addr),
        Arrival::Iroh(_) => None,
    }
}

enum Failure {
    /// A guess that proved nothing: a wrong code, or, if `broke_off`, none at all.
    Guess {
        from: Route,
        left: u32,
        broke_off: bool,
    },
    /// Proved the code, so the code is used, and then broke off.
    Vanished { from: Route },
    Other {
        /// Unknown for a connection that failed before it said who it is.
        from: Option<Route>,
        reason: String,
    },
}

/// The stream of a connection at the door: at once for TCP; for iroh once its QUIC
/// handshake is done and the joiner has opened its stream.
async fn arrive(arrival: Arrival, lingering: &Lingering) -> Result<(Stream, Route), Failure> {
    match arrival {
        Arrival::Tcp(tcp, addr) => {
            let _ = platform::detect_dead_peer(&tcp);
            Ok((Stream::Tcp(tcp), Route::Tcp(addr)))
        }
        Arrival::Iroh(incoming) => {
            let opened =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, transport::open(*incoming, lingering))
                    .await
                    .unwrap_or(Err(transport::IrohError::StreamTimeout));
            match opened {
                Ok((stream, _)) => {
                    let from = transport::route_of(&stream);
                    Ok((stream, from))
                }
                Err(err) => Err(Failure::Other {
                    from: None,
                    reason: err.to_string(),
                }),
            }
        }
    }
}

/// One pairing connection: its ClientHello within [`CLIENT_HELLO_TIMEOUT`], TLS with
/// any certificate, then the exchange, all within [`HANDSHAKE_TIMEOUT`]. A guess is
/// counted from the moment it is admitted, so a joiner that vanishes before proving
/// the code has still used one. Over TCP the connection holds a `slot` in the
/// listener's table, as the session listener's do (see [`crate::link::admission`]): a
/// newer connection may shed it until it has a guess in hand, never after, so a
/// crowd cannot use up the code's tries by shedding joiners.
async fn answer(
    acceptor: TlsAcceptor,
    stream: Stream,
    from: Route,
    invite: Arc<Mutex<Invite>>,
    ours: Fingerprint,
    our_endpoint: Option<EndpointIdBytes>,
    slot: Option<Slot>,
) -> Result<Paired, Failure> {
    let reached = |stage| slot.as_ref().is_none_or(|slot| slot.reached(stage));
    let other = |reason: String| Failure::Other {
        from: Some(from.clone()),
        reason,
    };
    let attempt = Mutex::new(None);
    let confirmed = AtomicBool::new(false);
    let proved_wrong = AtomicBool::new(false);
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let hello = LazyConfigAcceptor::new(Acceptor::default(), stream);
        let hello = tokio::time::timeout(CLIENT_HELLO_TIMEOUT, hello)
            .await
            .map_err(|_| {
                other(format!(
                    "no complete TLS ClientHello within {} s",
                    CLIENT_HELLO_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|err| other(format!("TLS: {err}")))?;
        if !reached(Stage::Tls) {
            return Err(other("dropped for a newer connection".into()));
        }
        // The joiner's session dials this port as soon as it has paired, perhaps
        // before we are done here: closing without an alert makes it try again
        // (an alert would tell it we refuse its certificate).
        if !hello
            .client_hello()
            .alpn()
            .is_some_and(|mut names| names.any(|name| name == tls::PAIRING_ALPN))
        {
            return Err(other("not a pairing connection".into()));
        }
        let mut stream = hello
            .into_stream(acceptor.config().clone())
            .await
            .map_err(|err| other(format!("TLS: {}", tls::explain(&err))))?;
        let (_, connection) = stream.get_ref();
        let binding = binding_of(connection, ours, false).map_err(|err| other(err.to_string()))?;
        let name = peer_name(connection);
        let code = lock(&invite).code().clone();
        let admit = || -> Result<(), NoGuess> {
            // From here the connection holds a guess: never shed.
            if !reached(Stage::Authenticated) {
                return Err(NoGuess::Shed);
            }
            let admitted = lock(&invite).admit(Instant::now())?;
            *lock(&attempt) = Some(admitted);
            Ok(())
        };
        let confirm = || -> Result<(), Closed> {
            let admitted = lock(&attempt).take().expect("admitted before confirmed");
            lock(&invite).succeeded(admitted)?;
            confirmed.store(true, Ordering::SeqCst);
            Ok(())
        };
        let answered =
            exchange::answer(&mut stream, &code, &binding, our_endpoint, admit, confirm).await;
        let _ = stream.shutdown().await;
        match answered {
            Ok(Answered { joiner }) => Ok(Paired {
                fingerprint: binding.dialer,
                name,
                session: match (joiner, &from) {
                    (Whereabouts::Port(port), Route::Tcp(addr)) => {
                        Route::Tcp(SocketAddr::new(addr.ip(), port))
                    }
                    (Whereabouts::Endpoint(id), _) => Route::Iroh {
                        peer: iroh::EndpointId::from_bytes(&id)
                            .map_err(|_| other("the joiner's endpoint ID is not a key".into()))?,
                        path: Path::Unknown,
                    },
                    (Whereabouts::Port(_), Route::Iroh { .. }) => {
                        unreachable!("an iroh door takes version 2 only")
                    }
                },
            }),
            Err(err) => {
                if matches!(err, exchange::PairError::WrongCode) {
                    proved_wrong.store(true, Ordering::SeqCst);
                }
                Err(other(err.to_string()))
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(other(format!(
            "no pairing within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        )))
    });
    // Wrong, or broken off after guessing: a guess either way.
    let unsettled = lock(&attempt).take();
    match (result, unsettled) {
        (Ok(paired), None) => Ok(paired),
        (Err(_), None) if confirmed.load(Ordering::SeqCst) => Err(Failure::Vanished { from }),
        (_, Some(admitted)) => {
            let guess = |left| Failure::Guess {
                from: from.clone(),
                left,
                broke_off: !proved_wrong.load(Ordering::SeqCst),
            };
            match lock(&invite).failed(admitted) {
                AfterWrongGuess::GuessesLeft(left) => Err(guess(left)),
                AfterWrongGuess::CodeDied => Err(guess(0)),
                AfterWrongGuess::CodeAlreadyUsed => {
                    Err(other("guessed after the code was used".into()))
                }
            }
        }
        (Err(failure), None) => Err(failure),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("never poisoned: no code panics while holding it")
}

/// The address to tell the joiner: the one we listen on if it is a single one,
/// else the one this machine's default route leaves from (found without sending
/// anything), else loopback.
pub fn address_to_share(listening: SocketAddr) -> SocketAddr {
    if !listening.ip().is_unspecified() {
        return listening;
    }
    let outgoing = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|socket| {
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        socket.local_addr()
    });
    let ip = match outgoing {
        Ok(local) if !local.ip().is_unspecified() => local.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, listening.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{self, IdentityFiles};
    use crate::link::target::Target;
    use crate::pairing::joiner::{self, JoinError};

    fn identity(dir: &std::path::Path, name: &str) -> Identity {
        identity::create(&IdentityFiles::named(dir, name), name, false).unwrap()
    }

    async fn listening() -> (TcpListener, Target) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, format!("127.0.0.1:{port}").parse().unwrap())
    }

    #[tokio::test]
    async fn an_unused_code_expires() {
        let dir = tempfile::tempdir().unwrap();
        let alice = identity(dir.path(), "alice");
        let (listener, _) = listening().await;
        let code: InviteCode = "7-acid-acorn-acre".parse().unwrap();
        let lifetime = Duration::from_millis(200);
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            wait_for_joiner(&Door::Tcp(&listener), &alice, code, lifetime, |_| {}),
        )
        .await
        .expect("the invite never expired");
        assert!(matches!(waited, Err(InviteError::Expired(_))), "{waited:?}");
    }

    #[tokio::test]
    async fn of_two_joiners_with_the_code_only_one_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, bob, carol) = (
            identity(dir.path(), "alice"),
            identity(dir.path(), "bob"),
            identity(dir.path(), "carol"),
        );
        let (listener, target) = listening().await;
        let door = Door::Tcp(&listener);
        let code: InviteCode = "7-acid-acorn-acre".parse().unwrap();
        let retry = Duration::from_secs(5);
        let outcome = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(
                wait_for_joiner(&door, &alice, code.clone(), Duration::from_secs(60), |_| {}),
                joiner::join(&target, &bob, &code, 1111, retry, |_| {}),
                joiner::join(&target, &carol, &code, 2222, retry, |_| {}),
            )
        })
        .await
        .expect("pairing hung");
        let (invited, by_bob, by_carol) = outcome;
        let invited = invited.unwrap();
        let (winner, loser) = match (by_bob, by_carol) {
            (Ok(paired), Err(lost)) => ((bob.fingerprint, 1111, paired), lost),
            (Err(lost), Ok(paired)) => ((carol.fingerprint, 2222, paired), lost),
            (bob, carol) => panic!("not exactly one paired: {bob:?} {carol:?}"),
        };
        let (fingerprint, port, paired) = winner;
        assert_eq!(invited.fingerprint, fingerprint);
        assert!(
            matches!(invited.session, Route::Tcp(addr) if addr.port() == port),
            "{:?}",
            invited.session
        );
        assert_eq!(paired.fingerprint, alice.fingerprint);
        assert!(
            matches!(loser, JoinError::Closed | JoinError::Broken { .. }),
            "{loser:?}"
        );
    }
}
