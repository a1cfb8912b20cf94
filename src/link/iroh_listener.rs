//! The session's accept loop over iroh: connections from the pinned peer's endpoint
//! only (iroh turns away every other endpoint before our TLS), each one's stream
//! through the listening side of the handshake. Started, it calls the peer to dial
//! now ([`wake`]), again and again less often, until the peer's connection comes.

use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;

use super::iroh::{self as transport, Accept, Admit, Node};
use super::wake;
use crate::link::handshake::{self, Greeting, Link};
use crate::session::event::Event;

/// Accepts the peer's connections until the task is dropped or the endpoint
/// closes, sending each authenticated link to `links`.
pub async fn run(
    accept: Accept,
    acceptor: TlsAcceptor,
    greeting: Greeting,
    links: mpsc::Sender<Link>,
    events: mpsc::UnboundedSender<Event>,
) {
    let Accept { node, peer } = accept;
    let reached = Notify::new();
    let accepting = async {
        let admit = Admit::Only(peer);
        loop {
            let stream = match transport::accept(&node.endpoint, &admit, &node.lingering).await {
                Ok(Some((stream, _))) => stream,
                Ok(None) if node.endpoint.is_closed() => return,
                // A stranger turned away, or a connection that failed on its way in.
                Ok(None) | Err(_) => continue,
            };
            reached.notify_one();
            let route = transport::route_of(&stream);
            let (acceptor, greeting, links, events) = (
                acceptor.clone(),
                greeting.clone(),
                links.clone(),
                events.clone(),
            );
            tokio::spawn(async move {
                match handshake::accept(&acceptor, stream, route, &greeting, None, |_| true).await {
                    Ok(link) => {
                        let _ = links.send(link).await;
                    }
                    Err(err) => {
                        let _ = events.send(Event::Note {
                            text: format!("A connection from the peer's endpoint failed: {err}"),
                        });
                    }
                }
            });
        }
    };
    tokio::join!(accepting, wake_until_reached(&node, peer, &reached));
}

/// Calls the peer to dial now, unless its connection arrives within
/// [`wake::CALL_AFTER`], and again after each call while it has not arrived
/// ([`wake::waits_between_calls`]): a call may be lost, and one that was taken may
/// have started a dial that was lost. Stops as soon as the connection arrives.
async fn wake_until_reached(node: &Node, peer: iroh::EndpointId, reached: &Notify) {
    let calling = async {
        for wait in wake::waits_between_calls() {
            tokio::time::sleep(wait).await;
            let _ = wake::call(node, peer).await;
        }
    };
    tokio::select! {
        () = reached.notified() => {}
        () = calling => {}
    }
}
