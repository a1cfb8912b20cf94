//! Two-connection mode needs each side to reach the other. When only one of the
//! two connections comes up, the user is told so, and what to run instead: behind a
//! NAT or a firewall, one connection for both directions.

use std::time::Duration;

use tokio::time::Instant;

use crate::link::handshake::Link;
use crate::session::event::Event;

/// How long one connection may stand alone before the user is told.
pub const HINT_AFTER: Duration = Duration::from_secs(10);

/// Watches the first connection each way (in two-connection mode only).
#[derive(Debug)]
pub struct OneWay {
    /// The peer we dial; `None` in single-connection mode, where nothing is watched.
    target: Option<String>,
    dialed: bool,
    accepted: bool,
    hint_at: Option<Instant>,
    peer: String,
}

impl OneWay {
    pub fn new(target: Option<String>) -> Self {
        OneWay {
            target,
            dialed: false,
            accepted: false,
            hint_at: None,
            peer: String::new(),
        }
    }

    /// Our connection to the peer is up.
    pub fn dialed(&mut self, link: &Link) {
        self.first(link, true);
    }

    /// The peer's connection to us is up.
    pub fn accepted(&mut self, link: &Link) {
        self.first(link, false);
    }

    fn first(&mut self, link: &Link, dialed: bool) {
        let before = (self.dialed, self.accepted);
        if dialed {
            self.dialed = true;
        } else {
            self.accepted = true;
        }
        if before == (false, false) && self.target.is_some() {
            self.hint_at = Some(Instant::now() + HINT_AFTER);
        } else if self.dialed && self.accepted {
            self.hint_at = None;
        }
        self.peer = link.peer_name.clone();
    }

    pub fn is_due(&self) -> bool {
        self.hint_at.is_some()
    }

    /// Waits until the hint is due (forever when none is).
    pub async fn due(&self) {
        match self.hint_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// The hint, once: only one of the two connections came up in time.
    pub fn hint(&mut self) -> Option<Event> {
        self.hint_at.take()?;
        let target = self.target.clone()?;
        Some(Event::OnlyOneWay {
            peer: self.peer.clone(),
            we_reached_them: self.dialed,
            target,
            after: HINT_AFTER,
        })
    }
}
