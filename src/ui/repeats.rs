//! The same connection rejected again and again: a peer that keeps dialling with a
//! certificate that is not the pinned one, or that refuses ours, while a person
//! enters the fingerprint again. The first rejection is shown; the ones like it
//! after it are counted on one row that changes in place, so that they do not push
//! the comparison of the two fingerprints off the screen. Pure: the interactive
//! front end draws the row.

use std::net::{IpAddr, SocketAddr};

/// The rejection being repeated, if any.
#[derive(Debug, Default)]
pub struct Repeats {
    current: Option<Repeat>,
}

#[derive(Debug)]
struct Repeat {
    from: IpAddr,
    reason: String,
    times: u64,
    /// Rejections the core counted without telling them one by one (a flood's
    /// summary) while this one repeated.
    untold: u64,
}

/// Whether a rejection is new, or one more of the one repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Again,
}

impl Repeats {
    /// Takes in a rejection of a connection from `addr` for `reason`. The source
    /// port is left out: each attempt comes from a new one.
    pub fn rejected(&mut self, addr: SocketAddr, reason: &str) -> Seen {
        let from = addr.ip().to_canonical();
        if let Some(repeat) = &mut self.current
            && repeat.from == from
            && repeat.reason == reason
        {
            repeat.times += 1;
            return Seen::Again;
        }
        self.current = Some(Repeat {
            from,
            reason: reason.to_owned(),
            times: 1,
            untold: 0,
        });
        Seen::First
    }

    /// Takes in `count` rejections the core did not tell one by one; true if they
    /// were counted on the row of a repeating one.
    pub fn untold(&mut self, count: u64) -> bool {
        match &mut self.current {
            Some(repeat) => {
                repeat.untold = repeat.untold.saturating_add(count);
                true
            }
            None => false,
        }
    }

    /// The repetition is over: a connection came up, or the pin changed.
    pub fn end(&mut self) {
        self.current = None;
    }

    /// The row that counts the repetitions, once there are any.
    pub fn row(&self) -> Option<String> {
        let repeat = self.current.as_ref().filter(|repeat| repeat.times > 1)?;
        let untold = match repeat.untold {
            0 => String::new(),
            n => format!(", and {n} more connections not told one by one"),
        };
        Some(format!(
            "Rejected again from {}, for the same reason ({} times in all{untold})",
            repeat.from, repeat.times
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_same_rejection_from_new_ports_is_counted_on_one_row() {
        let mut repeats = Repeats::default();
        assert_eq!(repeats.rejected(addr("127.0.0.1:5001"), "bad"), Seen::First);
        assert_eq!(repeats.row(), None);
        assert_eq!(repeats.rejected(addr("127.0.0.1:5002"), "bad"), Seen::Again);
        assert!(repeats.untold(2));
        assert_eq!(
            repeats.rejected(addr("[::ffff:127.0.0.1]:5003"), "bad"),
            Seen::Again
        );
        assert_eq!(
            repeats.row().as_deref(),
            Some(
                "Rejected again from 127.0.0.1, for the same reason \
                 (3 times in all, and 2 more connections not told one by one)"
            )
        );
    }

    #[test]
    fn another_reason_or_address_or_an_end_starts_afresh() {
        let mut repeats = Repeats::default();
        repeats.rejected(addr("127.0.0.1:5001"), "bad");
        assert_eq!(
            repeats.rejected(addr("127.0.0.1:5002"), "worse"),
            Seen::First
        );
        assert_eq!(
            repeats.rejected(addr("10.0.0.2:5002"), "worse"),
            Seen::First
        );
        repeats.end();
        assert!(!repeats.untold(5));
        assert_eq!(
            repeats.rejected(addr("10.0.0.2:5003"), "worse"),
            Seen::First
        );
        assert_eq!(repeats.row(), None);
    }
}
