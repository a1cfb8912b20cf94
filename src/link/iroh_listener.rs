//! The session's accept loop over iroh: connections from the pinned peer's endpoint
//! only (iroh turns away every other endpoint before our TLS), each one's stream
//! through the listening side of the handshake.

use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::iroh::{self as transport, Accept, Admit};
use crate::event::Event;
use crate::handshake::{self, Greeting, Link};

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
    let (endpoint, lingering) = (node.endpoint, node.lingering);
    let admit = Admit::Only(peer);
    loop {
        let stream = match transport::accept(&endpoint, &admit, &lingering).await {
            Ok(Some((stream, _))) => stream,
            Ok(None) if endpoint.is_closed() => return,
            // A stranger turned away, or a connection that failed on its way in.
            Ok(None) | Err(_) => continue,
        };
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
}
