//! What `/status` says: whether the peer is connected, on which path and with what
//! round trip, and how fast each running transfer moves now. Kept from the events,
//! shared by both front ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::HumanBytes;

use crate::link::Probe;
use crate::link::route::{Path, Route};
use crate::session::event::{Event, Phase};
use crate::ui::sanitize::for_terminal;

/// How far back a transfer's current rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// The connection and the running transfers, as the events told them.
#[derive(Debug, Default)]
pub struct StatusBoard {
    link: Option<Linked>,
    /// Running transfers by id and phase: recent positions, oldest first.
    moving: HashMap<(u64, Phase), Vec<Sample>>,
}

/// Where a transfer stood, and when.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    done: u64,
    total: u64,
}

#[derive(Debug)]
struct Linked {
    peer: String,
    route: Route,
    probe: Probe,
    connected: bool,
}

impl StatusBoard {
    /// Follows one event.
    pub fn observe(&mut self, event: &Event) {
        self.observe_at(event, Instant::now());
    }

    fn observe_at(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Connected {
                peer, route, probe, ..
            } => {
                self.link = Some(Linked {
                    peer: peer.clone(),
                    route: route.clone(),
                    probe: probe.clone(),
                    connected: true,
                });
            }
            Event::PathChanged { to, .. } => {
                if let Some(Linked {
                    route: Route::Iroh { path, .. },
                    ..
                }) = &mut self.link
                {
                    *path = to.clone();
                }
            }
            Event::InboundLost { .. } | Event::OutboundLost { .. } | Event::PeerLeft => {
                if let Some(link) = &mut self.link {
                    link.connected = false;
                }
            }
            Event::TransferProgress {
                id,
                phase,
                done,
                total,
                ..
            } if *phase != Phase::Hashing => {
                let samples = self.moving.entry((*id, *phase)).or_default();
                samples.push(Sample {
                    at: now,
                    done: *done,
                    total: *total,
                });
                samples.retain(|sample| now.saturating_duration_since(sample.at) <= RATE_WINDOW);
                if done >= total {
                    self.moving.remove(&(*id, *phase));
                }
            }
            Event::TransferSaved { id, .. } | Event::TransferDelivered { id, .. } => {
                self.moving.retain(|(moving, _), _| moving != id);
            }
            Event::TransferFailed { id, .. }
            | Event::TransferCancelled { id, .. }
            | Event::TransferInterrupted { id, .. } => {
                self.moving.retain(|(moving, _), _| moving != id);
            }
            _ => {}
        }
    }

    /// The `/status` lines.
    pub fn report(&self) -> Vec<String> {
        let mut lines = vec!["Status:".to_owned()];
        match &self.link {
            None => lines.push("  not connected yet".into()),
            Some(link) => {
                let peer = for_terminal(&link.peer);
                if !link.connected {
                    lines.push(format!(
                        "  {peer}: connection lost; waiting for it to come back"
                    ));
                } else {
                    let route = match &link.route {
                        Route::Tcp(addr) => format!("over TCP with {addr}"),
                        Route::Iroh {
                            path: Path::Relay(url),
                            ..
                        } => format!(
                            "over iroh, through relay {}",
                            crate::link::route::relay_host(url)
                        ),
                        Route::Iroh {
                            path: Path::Direct(addr),
                            ..
                        } => {
                            format!("over iroh, directly at {addr}")
                        }
                        Route::Iroh { .. } => "over iroh".to_owned(),
                    };
                    let rtt = match link.probe.round_trip() {
                        Some(rtt) => format!(", round trip {} ms", rtt.as_millis()),
                        None => String::new(),
                    };
                    lines.push(format!("  {peer}: connected {route}{rtt}"));
                }
            }
        }
        let mut moving: Vec<_> = self.moving.iter().collect();
        moving.sort_by_key(|((id, phase), _)| (*id, *phase == Phase::Receiving));
        for ((id, phase), samples) in moving {
            let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
                continue;
            };
            let seconds = last.at.saturating_duration_since(first.at).as_secs_f64();
            let rate = match last.done.checked_sub(first.done) {
                // Under a byte a second it would read `0 B/s`.
                Some(moved) if seconds > 0.0 && moved as f64 >= seconds => {
                    format!(", {}/s", HumanBytes((moved as f64 / seconds) as u64))
                }
                _ => String::new(),
            };
            let (what, letter) = match phase {
                Phase::Receiving => ("receiving", 'r'),
                _ => ("sending", 's'),
            };
            lines.push(format!(
                "  {letter}{id} {what}: {} of {}{rate}",
                HumanBytes(last.done),
                HumanBytes(last.total)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(id: u64, phase: Phase, done: u64) -> Event {
        Event::TransferProgress {
            id,
            phase,
            done,
            total: 100 << 20,
            files: None,
            run_start: 0,
        }
    }

    #[test]
    fn a_running_transfer_shows_its_rate_over_the_last_seconds() {
        let mut board = StatusBoard::default();
        let start = Instant::now();
        board.observe_at(&progress(1, Phase::Sending, 10 << 20), start);
        board.observe_at(
            &progress(1, Phase::Sending, 20 << 20),
            start + Duration::from_secs(1),
        );
        // Older than the window: only the last 3 s count.
        board.observe_at(
            &progress(1, Phase::Sending, 30 << 20),
            start + Duration::from_secs(5),
        );
        board.observe_at(
            &progress(1, Phase::Sending, 32 << 20),
            start + Duration::from_secs(6),
        );
        board.observe_at(
            &progress(2, Phase::Receiving, 1 << 20),
            start + Duration::from_secs(6),
        );
        assert_eq!(
            board.report(),
            [
                "Status:",
                "  not connected yet",
                "  s1 sending: 32.00 MiB of 100.00 MiB, 2.00 MiB/s",
                "  r2 receiving: 1.00 MiB of 100.00 MiB",
            ]
        );
    }

    #[test]
    fn an_ended_transfer_leaves_the_status() {
        let mut board = StatusBoard::default();
        let start = Instant::now();
        board.observe_at(&progress(3, Phase::Sending, 1), start);
        board.observe_at(
            &Event::TransferDelivered {
                id: 3,
                name: "a".into(),
                peer: "bob".into(),
            },
            start,
        );
        assert_eq!(board.report(), ["Status:", "  not connected yet"]);
    }
}
