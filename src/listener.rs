//! The accept loop: every connection gets its own bounded, time-limited handshake,
//! so a stranger that sends nothing or garbage never keeps the real peer out.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::event::Event;
use crate::handshake::{self, Greeting, Link};

/// Handshakes allowed in flight at once; connections beyond it are closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 128;

/// Accepts connections until the task is dropped, sending each authenticated link to `links`.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    greeting: Greeting,
    links: mpsc::Sender<Link>,
    events: mpsc::UnboundedSender<Event>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let greeting = Arc::new(greeting);
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept:
                // pause briefly rather than spin, and keep serving.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            let _ = events.send(Event::Rejected {
                addr,
                reason: format!("more than {MAX_PENDING_HANDSHAKES} handshakes in progress"),
            });
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, greeting, links, events) = (
            acceptor.clone(),
            greeting.clone(),
            links.clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let result = handshake::accept(&acceptor, tcp, addr, &greeting, |_| true).await;
            drop(permit);
            match result {
                Ok(link) => {
                    let _ = links.send(link).await;
                }
                Err(err) => {
                    let _ = events.send(Event::Rejected {
                        addr,
                        reason: err.to_string(),
                    });
                }
            }
        });
    }
}
