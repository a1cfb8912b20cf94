//! Two-connection mode needs each side to reach the other. When only our connection
//! comes up, we ask to carry both directions on it instead (the peer restarted on a
//! new port, or sits behind a NAT or a firewall); only when that cannot be done is
//! the user told, and what to run instead.

use std::time::Duration;

use tokio::time::Instant;

use crate::link::handshake::Link;
use crate::session::event::Event;

/// How long our connection may stand alone before we ask to carry both directions
/// on it: the peer, which has just seen us, dials at once if it can.
pub const ASK_AFTER: Duration = Duration::from_secs(3);
/// How long one connection may stand alone before the user is told.
pub const HINT_AFTER: Duration = Duration::from_secs(10);

/// What is due when one connection has stood alone for long enough.
#[derive(Debug)]
pub enum Step {
    /// Dial once more for one connection that carries both directions.
    CarryBoth,
    /// Tell the user.
    Hint(Box<Event>),
}

/// Watches the first connection each way (in two-connection mode only).
#[derive(Debug)]
pub struct OneWay {
    /// The peer we dial; `None` where nothing is watched.
    target: Option<String>,
    dialed: bool,
    accepted: bool,
    ask_at: Option<Instant>,
    hint_at: Option<Instant>,
    peer: String,
}

impl OneWay {
    pub fn new(target: Option<String>) -> Self {
        OneWay {
            target,
            dialed: false,
            accepted: false,
            ask_at: None,
            hint_at: None,
            peer: String::new(),
        }
    }

    /// Nothing to watch any more: one connection carries both directions.
    pub fn settled() -> Self {
        OneWay::new(None)
    }

    /// The peer we dial, where it is watched.
    pub fn target(&self) -> Option<String> {
        self.target.clone()
    }

    /// Our connection to the peer is up.
    pub fn dialed(&mut self, link: &Link) {
        self.first(&link.peer_name, true);
    }

    /// The peer's connection to us is up.
    pub fn accepted(&mut self, link: &Link) {
        self.first(&link.peer_name, false);
    }

    fn first(&mut self, peer: &str, dialed: bool) {
        let before = (self.dialed, self.accepted);
        if dialed {
            self.dialed = true;
        } else {
            self.accepted = true;
        }
        if before == (false, false) && self.target.is_some() {
            let now = Instant::now();
            self.hint_at = Some(now + HINT_AFTER);
            self.ask_at = dialed.then_some(now + ASK_AFTER);
        } else if self.dialed && self.accepted {
            self.ask_at = None;
            self.hint_at = None;
        }
        self.peer = peer.to_owned();
    }

    pub fn is_due(&self) -> bool {
        self.ask_at.is_some() || self.hint_at.is_some()
    }

    /// Waits until the next step is due (forever when none is).
    pub async fn due(&self) {
        match self.ask_at.or(self.hint_at) {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// The step that is due, once: asking first, then, if nothing changed, the hint.
    pub fn step(&mut self) -> Option<Step> {
        if self.ask_at.take().is_some() {
            return Some(Step::CarryBoth);
        }
        self.hint_at.take()?;
        let target = self.target.clone()?;
        Some(Step::Hint(Box::new(Event::OnlyOneWay {
            peer: self.peer.clone(),
            we_reached_them: self.dialed,
            target,
            after: HINT_AFTER,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watching() -> OneWay {
        OneWay::new(Some("127.0.0.1:7002".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn our_connection_alone_asks_for_one_connection_then_tells_the_user() {
        let mut one_way = watching();
        one_way.first("bob", true);
        let started = Instant::now();
        one_way.due().await;
        assert_eq!(started.elapsed(), ASK_AFTER);
        assert!(matches!(one_way.step(), Some(Step::CarryBoth)));
        one_way.due().await;
        assert_eq!(started.elapsed(), HINT_AFTER);
        let Some(Step::Hint(hint)) = one_way.step() else {
            panic!("the hint is due");
        };
        assert!(matches!(
            *hint,
            Event::OnlyOneWay {
                we_reached_them: true,
                ..
            }
        ));
        assert!(!one_way.is_due());
    }

    #[tokio::test(start_paused = true)]
    async fn the_peers_connection_alone_waits_for_its_question_and_only_tells() {
        let mut one_way = watching();
        one_way.first("bob", false);
        let started = Instant::now();
        one_way.due().await;
        assert_eq!(started.elapsed(), HINT_AFTER);
        assert!(matches!(one_way.step(), Some(Step::Hint(_))));
    }

    #[test]
    fn both_connections_up_leave_nothing_due() {
        let mut one_way = watching();
        one_way.first("bob", true);
        one_way.first("bob", false);
        assert!(!one_way.is_due());
        assert!(one_way.step().is_none());
    }

    #[test]
    fn a_session_that_watches_nothing_never_asks() {
        let mut one_way = OneWay::settled();
        one_way.first("bob", true);
        assert!(!one_way.is_due());
    }
}
