//! One peer's session: the listener and the receiving direction, the sending
//! direction, and the rules for when the whole thing is over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::event::{Command, Direction, Event, ShownWatch, TransferId};
use crate::handshake::{Greeting, Link};
use crate::identity::Identity;
use crate::inbound::{self, InboundEnd, ReceiveState};
use crate::listener;
use crate::outbound::{self, Dialer, OutboundEnd, Refusal, WrongPin};
use crate::target::Target;
use crate::tls::{self, Pin, TlsConfigError};
use crate::transfer::incoming::ReceiveLimits;

/// Cancels typed ahead of the receiving connection.
const CANCELS_IN_FLIGHT: usize = 16;
/// How long quitting waits for both directions to close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything a session needs, already validated.
pub struct SessionSetup {
    pub listener: TcpListener,
    pub identity: Identity,
    /// The peer's pin, shared with the front end, which may let a person enter it again.
    pub pin: Pin,
    pub wrong_pin: WrongPin,
    pub target: Target,
    pub limits: ReceiveLimits,
    /// How long to keep trying to reach the peer without a connection.
    pub retry_for: Duration,
    /// What `Finish` (the end of input) means: wait for the peer to finish too, or,
    /// once what is queued is delivered, leave.
    pub at_finish: AtFinish,
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

/// The receiving connection currently in use, if any.
struct Receiver {
    task: JoinHandle<InboundEnd>,
    close: oneshot::Sender<()>,
    /// Arriving files the person cancels, with whether to keep their parts.
    cancels: mpsc::Sender<(u64, bool)>,
    peer: String,
}

/// Runs until both directions are finished, the user quits, or the peer refuses us.
pub async fn run(
    setup: SessionSetup,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<SessionEnd, SessionError> {
    let greeting = Greeting::new(setup.identity.name.clone());
    let acceptor = TlsAcceptor::from(tls::server_config(&setup.identity, setup.pin.clone())?);
    let connector = TlsConnector::from(tls::client_config(&setup.identity, setup.pin.clone())?);

    let (links_tx, mut links) = mpsc::channel::<Link>(4);
    let listening = tokio::spawn(listener::run(
        setup.listener,
        acceptor,
        greeting.clone(),
        links_tx,
        events.clone(),
    ));
    let _stop_listening = AbortOnDrop(listening);

    let dialer = Dialer {
        target: setup.target,
        connector,
        greeting,
        retry_for: setup.retry_for,
        pin: setup.pin.clone(),
        wrong_pin: setup.wrong_pin,
    };
    let (outgoing, outgoing_rx) = mpsc::channel(1024);
    let mut sending = Some(tokio::spawn(outbound::run(
        dialer,
        outgoing_rx,
        events.clone(),
    )));
    let mut sending_ended: Option<OutboundEnd> = None;

    let received = Arc::new(Mutex::new(ReceiveState::default()));
    let shown: ShownWatch = Arc::new(watch::channel((0, 0)).0);
    let mut receiver: Option<Receiver> = None;
    let mut peer_finished = false;
    let mut heard_before = false;
    let mut leaving = false;

    loop {
        if let (Some(end), true) = (&sending_ended, peer_finished || leaving) {
            let end = match end {
                OutboundEnd::PeerLeft => SessionEnd::PeerLeft,
                _ => SessionEnd::Finished,
            };
            if !peer_finished {
                quit(&outgoing, sending.take(), receiver.take()).await;
            }
            return Ok(end);
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Quit) => {
                    quit(&outgoing, sending.take(), receiver.take()).await;
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
            Some(link) = links.recv() => {
                if let Some(old) = receiver.take() {
                    old.task.abort();
                }
                let _ = events.send(Event::Connected {
                    direction: Direction::Inbound,
                    again: std::mem::replace(&mut heard_before, true),
                    peer: link.peer_name.clone(),
                    fingerprint: link.peer_fingerprint,
                    addr: link.addr,
                    tls: link.tls.clone(),
                });
                peer_finished = false;
                let peer = link.peer_name.clone();
                let (close, close_rx) = oneshot::channel();
                let (cancels, cancels_rx) = mpsc::channel(CANCELS_IN_FLIGHT);
                let task = tokio::spawn(inbound::receive(
                    link,
                    received.clone(),
                    shown.clone(),
                    setup.limits.clone(),
                    events.clone(),
                    inbound::Controls { close: close_rx, cancels: cancels_rx },
                ));
                receiver = Some(Receiver { task, close, cancels, peer });
            }
            end = async { (&mut receiver.as_mut().expect("guarded").task).await }, if receiver.is_some() => {
                let peer = receiver.take().expect("guarded").peer;
                match end {
                    Ok(InboundEnd::Finished) => {
                        peer_finished = true;
                        let _ = events.send(Event::PeerFinished { peer });
                    }
                    Ok(InboundEnd::Lost(err)) => {
                        let _ = events.send(Event::InboundLost { peer, reason: err.to_string() });
                    }
                    Ok(InboundEnd::Closed) | Err(_) => {}
                }
            }
            end = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                sending = None;
                match end.expect("the sending task never panics") {
                    OutboundEnd::Refused(refusal) => return Err(SessionError::Refused(refusal)),
                    OutboundEnd::GaveUp(reason) => return Err(SessionError::Unreachable(reason)),
                    end => sending_ended = Some(end),
                }
            }
        }
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
    sending: Option<JoinHandle<OutboundEnd>>,
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
