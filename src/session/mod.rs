//! One peer's session: the dialer and the listener make the connections, each
//! connection becomes a lane for one half or both ([`crate::session::lane`],
//! [`crate::session::one_connection`]), the sending half and the receiving half run over
//! them, and the rules here say when the whole thing is over.

pub mod event;
pub mod lane;
pub mod one_connection;
pub mod receiving_half;
pub mod sending_half;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::frame::Frame;
use crate::identity::Identity;
use crate::link::dialer::{
    self, Destination, DialEnd, Dialed, Dialer, Refusal, TwoConnections, WrongPin,
};
use crate::link::handshake::{Greeting, Link};
use crate::link::iroh as transport;
use crate::link::iroh_listener;
use crate::link::knock::Doorman;
use crate::link::listener;
use crate::link::one_way::{OneWay, Step};
use crate::link::target::Target;
use crate::link::tls::{self, Pin, TlsConfigError};
use crate::transfer::hash_cache::SharedHashCache;
use crate::transfer::incoming::ReceiveLimits;
use event::{Command, Direction, Event, ShownWatch, TransferId};
use lane::Lane;
use one_connection::Carrier;
use receiving_half::{ReceiveState, ReceivingEnd};
use sending_half::SendingEnd;

/// Cancels typed ahead of the receiving connection.
const CANCELS_IN_FLIGHT: usize = 16;
/// How long quitting waits for both directions to close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything a session needs, already validated.
pub struct SessionSetup {
    pub links: Links,
    pub identity: Identity,
    /// The peer's pin, shared with the front end, which may let a person enter it again.
    pub pin: Pin,
    pub wrong_pin: WrongPin,
    pub limits: ReceiveLimits,
    /// Hashes of files sent before; `None` hashes every file.
    pub hash_cache: Option<SharedHashCache>,
    /// How long to keep trying to reach the peer without a connection.
    pub retry_for: Duration,
    /// What `Finish` (the end of input) means: wait for the peer to finish too, or,
    /// once what is queued is delivered, leave.
    pub at_finish: AtFinish,
}

/// How the session reaches the peer, and the peer us.
pub enum Links {
    /// Each side listens and dials the other: one connection per direction.
    Two {
        listener: TcpListener,
        target: Target,
    },
    /// Dial, and carry both directions on that connection (`--no-listen`).
    DialOne(Target),
    /// Accept, and carry both directions on that connection (`--accept`).
    AcceptOne(TcpListener),
    /// One iroh connection for both directions, on our side of it.
    Iroh(transport::Role),
}

/// Where the session takes connections from.
enum Accepting {
    Tcp(TcpListener),
    Iroh(transport::Accept),
}

/// What the session does once our sending side has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtFinish {
    /// Keep receiving until the peer finishes as well (scripts, pipes).
    WaitForPeer,
    /// Close both directions and end: Ctrl-D at a terminal.
    Leave,
}

/// How a session ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Both sides finished sending and closed cleanly.
    Finished,
    /// The peer closed both directions.
    PeerLeft,
    /// We quit on request.
    Quit,
}

/// Why a session failed.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The peer is not the pinned one, or refused our certificate.
    #[error(transparent)]
    Refused(Refusal),
    /// The peer stayed unreachable for longer than `--retry-for`.
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// The receiving half currently running, if any.
struct Receiver {
    task: JoinHandle<ReceivingEnd>,
    close: oneshot::Sender<()>,
    /// Arriving files the person cancels, with whether to keep their parts.
    cancels: mpsc::Sender<(u64, bool)>,
    peer: String,
}

/// The connection that carries both directions, in single-connection mode.
struct Shared {
    carrier: Carrier,
    /// Told when the connection is lost (accepting side; the dialer has its own).
    lost: Option<oneshot::Receiver<()>>,
}

/// Runs until both directions are finished, the user quits, or the peer refuses us.
pub async fn run(
    setup: SessionSetup,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<SessionEnd, SessionError> {
    let mut one_connection = !matches!(setup.links, Links::Two { .. });
    let greeting = Greeting::new(setup.identity.name.clone());
    let one_way_target = match &setup.links {
        Links::Two { target, .. } => Some(target.to_string()),
        _ => None,
    };
    let (listener, target) = match setup.links {
        Links::Two { listener, target } => (
            Some(Accepting::Tcp(listener)),
            Some(Destination::Tcp(target)),
        ),
        Links::DialOne(target) => (None, Some(Destination::Tcp(target))),
        Links::AcceptOne(listener) => (Some(Accepting::Tcp(listener)), None),
        Links::Iroh(transport::Role::Dial(dial)) => (None, Some(Destination::Iroh(dial))),
        Links::Iroh(transport::Role::Accept(accept)) => (Some(Accepting::Iroh(accept)), None),
    };
    let (accepted_tx, mut accepted) = mpsc::channel::<Link>(4);
    let mut stop_listening = match listener {
        Some(listener) => {
            let acceptor = TlsAcceptor::from(tls::server_config(
                &setup.identity,
                setup.pin.clone(),
                one_connection,
            )?);
            let greeting = greeting.clone();
            let events = events.clone();
            Some(AbortOnDrop(match listener {
                Accepting::Tcp(listener) => tokio::spawn(listener::run(
                    listener,
                    acceptor,
                    greeting,
                    Doorman::new(setup.identity.fingerprint, setup.pin.clone()),
                    accepted_tx,
                    events,
                )),
                Accepting::Iroh(accept) => tokio::spawn(iroh_listener::run(
                    accept,
                    acceptor,
                    greeting,
                    accepted_tx,
                    events,
                )),
            }))
        }
        None => None,
    };
    let (dialed_tx, mut dialed) = mpsc::channel::<Dialed>(1);
    let peer_seen = Arc::new(Notify::new());
    let carry_both = Arc::new(Notify::new());
    let mut dialing = match target {
        Some(target) => {
            let connector = |one_connection| {
                tls::client_config(&setup.identity, setup.pin.clone(), one_connection)
                    .map(TlsConnector::from)
            };
            let two_connections = match one_connection {
                true => None,
                false => Some(TwoConnections {
                    peer_seen: peer_seen.clone(),
                    carry_both: carry_both.clone(),
                    one_connection: connector(true)?,
                }),
            };
            let dialer = Dialer {
                target,
                connector: connector(one_connection)?,
                greeting,
                retry_for: setup.retry_for,
                pin: setup.pin.clone(),
                own: setup.identity.fingerprint,
                wrong_pin: setup.wrong_pin,
                two_connections,
            };
            Some(tokio::spawn(dialer::run(dialer, dialed_tx, events.clone())))
        }
        None => None,
    };
    let mut stop_dialing = dialing
        .as_ref()
        .map(|task| task.abort_handle())
        .map(AbortDialer);

    let (lanes_tx, lanes) = mpsc::channel(1);
    let mut lanes_tx = Some(lanes_tx);
    let (outgoing, outgoing_rx) = mpsc::channel(1024);
    let mut sending = Some(tokio::spawn(sending_half::run(
        lanes,
        outgoing_rx,
        events.clone(),
        setup.hash_cache.clone(),
        setup.at_finish == AtFinish::Leave,
    )));
    let mut sending_ended: Option<SendingEnd> = None;

    let received = Arc::new(Mutex::new(ReceiveState::default()));
    let shown: ShownWatch = Arc::new(watch::channel((0, 0)).0);
    let receiving = Receiving {
        state: received,
        shown,
        limits: setup.limits.clone(),
        events: events.clone(),
    };
    let mut receiver: Option<Receiver> = None;
    let mut shared: Option<Shared> = None;
    // Retires the lane our sending half runs on, for a newer connection: one that
    // comes to carry both directions, or the peer's again.
    let mut sending_on: Option<oneshot::Sender<()>> = None;
    let mut come_back_by: Option<tokio::time::Instant> = None;
    let mut one_way = OneWay::new(one_way_target);
    let mut peer_finished = false;
    let mut peer_finished_before = false;
    let mut heard_before = false;
    let mut dialed_before = false;
    let mut leaving = false;

    loop {
        if let (Some(end), true) = (&sending_ended, peer_finished || leaving) {
            let end = match end {
                SendingEnd::PeerLeft => SessionEnd::PeerLeft,
                _ => SessionEnd::Finished,
            };
            if !peer_finished {
                quit(&outgoing, sending.take(), receiver.take()).await;
            }
            if let Some(shared) = &mut shared {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, shared.carrier.closed()).await;
            }
            return Ok(end);
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Quit) => {
                    quit(&outgoing, sending.take(), receiver.take()).await;
                    if let Some(shared) = &mut shared {
                        let _ = tokio::time::timeout(QUIT_TIMEOUT, shared.carrier.closed()).await;
                    }
                    return Ok(SessionEnd::Quit);
                }
                Some(Command::Cancel { transfer, keep }) if transfer.receiving => {
                    cancel_arriving(receiver.as_ref(), transfer, keep, &events);
                }
                Some(command) if sending_ended.is_some() => not_sent(command, &events),
                Some(command) => {
                    leaving |= command == Command::Finish && setup.at_finish == AtFinish::Leave;
                    // The sending task may have just ended: report, never drop.
                    if let Err(mpsc::error::SendError(command)) = outgoing.send(command).await {
                        not_sent(command, &events);
                    }
                }
                None => {
                    let _ = outgoing.send(Command::Finish).await;
                }
            },
            Some(Dialed { link, on_loss }) = dialed.recv() => {
                let again = std::mem::replace(&mut dialed_before, true);
                if !link.carries_both() {
                    one_way.dialed(&link);
                    connected(&events, &link, Direction::Outbound, again);
                    if let Some(lanes) = &lanes_tx {
                        sending_on = hand_over(lanes, Lane::whole(link, Some(on_loss))).await;
                    }
                    continue;
                }
                let switched = !one_connection;
                if switched {
                    // Only our connection could be made: it carries both directions
                    // now, and the peer stops dialing us.
                    one_connection = true;
                    drop(stop_listening.take());
                    both_on_one(&mut one_way, &events, &link, true);
                    retire(&mut sending_on);
                }
                connected(&events, &link, Direction::Both { dialed: true }, again && !switched);
                let Some(lanes) = &lanes_tx else { continue };
                let (send_lane, receive_lane, carrier) = one_connection::split(link, Some(on_loss));
                // Otherwise the dialer dials again only once the old one was lost.
                shared = Some(Shared { carrier, lost: None });
                sending_on = hand_over(lanes, send_lane).await;
                peer_finished = false;
                replace(&mut receiver, receiving.start(receive_lane));
            }
            Some(link) = accepted.recv() => {
                let again = std::mem::replace(&mut heard_before, true);
                peer_finished = false;
                if link.carries_both() {
                    let switched = !one_connection;
                    if switched {
                        // The peer could reach us but not we it: its connection
                        // carries both directions now, and ours is not dialed again.
                        one_connection = true;
                        dialing = None;
                        drop(stop_dialing.take());
                        both_on_one(&mut one_way, &events, &link, false);
                    }
                    connected(&events, &link, Direction::Both { dialed: false }, again && !switched);
                    let (on_loss, lost) = oneshot::channel();
                    let (send_lane, receive_lane, carrier) = one_connection::split(link, Some(on_loss));
                    // The old connection, if any, goes first: our sending half leaves
                    // it for this one, its receiving half is replaced below.
                    retire(&mut sending_on);
                    shared = Some(Shared { carrier, lost: Some(lost) });
                    come_back_by = None;
                    if let Some(lanes) = &lanes_tx {
                        sending_on = hand_over(lanes, send_lane).await;
                    }
                    replace(&mut receiver, receiving.start(receive_lane));
                } else {
                    peer_seen.notify_one();
                    one_way.accepted(&link);
                    connected(&events, &link, Direction::Inbound, again);
                    replace(&mut receiver, receiving.start(Lane::whole(link, None)));
                }
            }
            lost = async { shared.as_mut().and_then(|s| s.lost.as_mut()).expect("guarded").await },
                if shared.as_ref().is_some_and(|s| s.lost.is_some()) => {
                if let Some(shared) = &mut shared {
                    shared.lost = None;
                }
                // Untold: the connection ended for good.
                if lost.is_ok() {
                    come_back_by = Some(tokio::time::Instant::now() + setup.retry_for);
                }
            }
            () = tokio::time::sleep_until(come_back_by.unwrap_or_else(tokio::time::Instant::now)),
                if come_back_by.is_some() => {
                let reason = format!(
                    "the peer did not come back within {}s of the connection being lost",
                    setup.retry_for.as_secs()
                );
                give_up(&mut lanes_tx, sending.take(), receiver.take()).await;
                return Err(SessionError::Unreachable(reason));
            }
            () = one_way.due(), if one_way.is_due() => match one_way.step() {
                Some(Step::CarryBoth) => carry_both.notify_one(),
                Some(Step::Hint(event)) => {
                    let _ = events.send(*event);
                }
                None => {}
            },
            end = async { (&mut receiver.as_mut().expect("guarded").task).await }, if receiver.is_some() => {
                let peer = receiver.take().expect("guarded").peer;
                match end {
                    // A peer finishes once; it says so again on each later connection.
                    Ok(ReceivingEnd::Finished) => {
                        if !std::mem::replace(&mut peer_finished_before, true) {
                            let _ = events.send(Event::PeerFinished { peer });
                        }
                        peer_finished = true;
                    }
                    // The sending half reports the loss of a shared connection, while it runs.
                    Ok(ReceivingEnd::Lost(_)) if one_connection && sending.is_some() => {}
                    Ok(ReceivingEnd::Lost(err)) => {
                        let _ = events.send(Event::InboundLost { peer, reason: err.to_string() });
                    }
                    Ok(ReceivingEnd::Closed) | Err(_) => {}
                }
            }
            end = async { dialing.as_mut().expect("guarded").await }, if dialing.is_some() => {
                dialing = None;
                let failure = match end.expect("the dialer never panics") {
                    DialEnd::Done => continue,
                    DialEnd::Refused(refusal) => SessionError::Refused(refusal),
                    DialEnd::GaveUp(reason) => SessionError::Unreachable(reason),
                };
                give_up(&mut lanes_tx, sending.take(), receiver.take()).await;
                return Err(failure);
            }
            end = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                sending = None;
                sending_ended = Some(end.expect("the sending task never panics"));
            }
        }
    }
}

/// From now on one connection carries both directions: the hint is off, and the
/// person is told.
fn both_on_one(
    one_way: &mut OneWay,
    events: &mpsc::UnboundedSender<Event>,
    link: &Link,
    we_asked: bool,
) {
    let target = one_way.target().unwrap_or_default();
    *one_way = OneWay::settled();
    let _ = events.send(Event::OneConnectionForBoth {
        peer: link.peer_name.clone(),
        we_asked,
        target,
    });
}

/// Gives the sending half its lane on a new connection, and returns what retires it
/// for a newer one. Once that half has ended, our direction is ended again on a
/// shared connection instead.
async fn hand_over(lanes: &mpsc::Sender<Lane>, send_lane: Lane) -> Option<oneshot::Sender<()>> {
    let (send_lane, retire) = send_lane.retirable();
    match lanes.send(send_lane).await {
        Ok(()) => Some(retire),
        Err(mpsc::error::SendError(lane)) if lane.is_shared() => {
            tokio::spawn(finish_again(lane));
            None
        }
        Err(_) => None,
    }
}

/// Lets the sending half leave its lane for the one handed over next, without
/// reporting a loss.
fn retire(sending_on: &mut Option<oneshot::Sender<()>>) {
    if let Some(retire) = sending_on.take() {
        let _ = retire.send(());
    }
}

/// Ends our direction on a connection made after our sending half finished:
/// `Finish`, then the peer's acknowledgements up to its `FinishAck`.
async fn finish_again(mut lane: Lane) {
    if lane.writer.shutdown().await.is_err() {
        return;
    }
    loop {
        match lane.reader.read_frame().await {
            Ok(Some(Frame::Ack { .. } | Frame::Credit { .. })) => {}
            Ok(None | Some(Frame::Leave)) => return,
            Ok(Some(_)) | Err(_) => return lane.lost(),
        }
    }
}

/// Reports a connection that is authenticated and greeted.
fn connected(
    events: &mpsc::UnboundedSender<Event>,
    link: &Link,
    direction: Direction,
    again: bool,
) {
    let _ = events.send(Event::Connected {
        direction,
        again,
        peer: link.peer_name.clone(),
        fingerprint: link.peer_fingerprint,
        route: link.route.clone(),
        probe: link.probe(),
        tls: link.tls.clone(),
    });
    link.watch_route(events);
}

/// What every receiving half of the session shares.
struct Receiving {
    state: Arc<Mutex<ReceiveState>>,
    shown: ShownWatch,
    limits: ReceiveLimits,
    events: mpsc::UnboundedSender<Event>,
}

impl Receiving {
    fn start(&self, lane: Lane) -> Receiver {
        let peer = lane.peer_name.clone();
        let (close, close_rx) = oneshot::channel();
        let (cancels, cancels_rx) = mpsc::channel(CANCELS_IN_FLIGHT);
        let task = tokio::spawn(receiving_half::receive(
            lane,
            self.state.clone(),
            self.shown.clone(),
            self.limits.clone(),
            self.events.clone(),
            receiving_half::Controls {
                close: close_rx,
                cancels: cancels_rx,
            },
        ));
        Receiver {
            task,
            close,
            cancels,
            peer,
        }
    }
}

/// A newer connection replaces the receiving half of the older one.
fn replace(receiver: &mut Option<Receiver>, new: Receiver) {
    if let Some(old) = receiver.replace(new) {
        old.task.abort();
    }
}

/// No connection will come: the sending half reports what it could not send.
async fn give_up(
    lanes: &mut Option<mpsc::Sender<Lane>>,
    sending: Option<JoinHandle<SendingEnd>>,
    receiver: Option<Receiver>,
) {
    lanes.take();
    if let Some(receiver) = receiver {
        receiver.task.abort();
    }
    if let Some(sending) = sending {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, sending).await;
    }
}

/// Hands a cancel of an arriving file to the connection it arrives on.
fn cancel_arriving(
    receiver: Option<&Receiver>,
    transfer: TransferId,
    keep: bool,
    events: &mpsc::UnboundedSender<Event>,
) {
    let handed =
        receiver.is_some_and(|receiver| receiver.cancels.try_send((transfer.id, keep)).is_ok());
    if !handed {
        let _ = events.send(Event::Note {
            text: format!("nothing to cancel as {transfer}: no file is arriving now"),
        });
    }
}

/// Tells the user that a line or file typed after the sending side ended goes nowhere.
fn not_sent(command: Command, events: &mpsc::UnboundedSender<Event>) {
    match command {
        Command::Send(text) => {
            let _ = events.send(Event::NotSent { text });
        }
        Command::Transfer(path) => {
            let _ = events.send(Event::transfer_not_sent(
                &path,
                "not sent: the peer has left",
            ));
        }
        Command::Cancel { transfer, .. } => {
            let _ = events.send(Event::Note {
                text: format!("nothing to cancel as {transfer}: the peer has left"),
            });
        }
        Command::Finish | Command::Quit => {}
    }
}

/// Closes both directions at once, waiting briefly for each close to go out.
async fn quit(
    outgoing: &mpsc::Sender<Command>,
    sending: Option<JoinHandle<SendingEnd>>,
    receiver: Option<Receiver>,
) {
    let _ = outgoing.send(Command::Quit).await;
    let receiving = receiver.map(|receiver| {
        let _ = receiver.close.send(());
        receiver.task
    });
    let _ = tokio::time::timeout(QUIT_TIMEOUT, async {
        if let Some(task) = sending {
            let _ = task.await;
        }
        if let Some(task) = receiving {
            let _ = task.await;
        }
    })
    .await;
}

/// Stops a background task when the session ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stops the dialer when the session ends, however it ends.
struct AbortDialer(tokio::task::AbortHandle);

impl Drop for AbortDialer {
    fn drop(&mut self) {
        self.0.abort();
    }
}
