//! The inviter's account of one [`Invite`]: how long its code works and how many
//! guesses at it are left. Pure bookkeeping, no I/O or clock; the caller passes the
//! time in, so that every rule is unit-tested.
//!
//! Each joiner whose first message is admitted gets one guess at the code, and that
//! guess counts as wrong unless it is later settled as a success: a joiner that hangs
//! up before proving anything has still used it. Guesses still under way count too,
//! so however many joiners arrive at once, at most [`MAX_WRONG_GUESSES`] guesses are
//! ever made.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::code::InviteCode;

/// Wrong guesses after which the code stops working.
pub const MAX_WRONG_GUESSES: u32 = 3;

/// Codes one inviter offers in a run. When a code dies of wrong guesses (three junk
/// guesses or three joiners that hang up are enough, and anyone who can reach the
/// port can make them), the inviter offers a fresh one rather than giving up; at
/// most this many, so that the guesses made against one run stay at most
/// `CODES_PER_RUN * MAX_WRONG_GUESSES` and no stranger keeps an inviter waiting
/// for ever.
pub const CODES_PER_RUN: u32 = 3;

/// How long a code works unless given another lifetime.
pub const INVITE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Why the invite takes no more guesses. Its `Display` is for the inviter.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    #[error("the invite code has expired")]
    Expired,
    /// Three guesses were wrong, or, counting those still under way, three have been
    /// made.
    #[error("the invite code has had its {MAX_WRONG_GUESSES} tries")]
    TooManyWrongGuesses,
    /// A joiner paired with it; a code pairs once.
    #[error("the invite code has been used")]
    Used,
}

/// One admitted guess, still under way. Settle it exactly once, with
/// [`Invite::succeeded`] or [`Invite::failed`], on the invite that admitted it; one
/// never settled keeps counting as a guess in flight.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "settle the attempt with Invite::succeeded or Invite::failed"]
pub struct Attempt(());

/// What a wrong guess left of the invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWrongGuess {
    /// The code still works, for this many more wrong guesses (fewer can be admitted
    /// while others are under way).
    GuessesLeft(u32),
    /// That was the last wrong guess allowed: the code no longer works.
    CodeDied,
    /// Another joiner paired with the code meanwhile; it no longer works anyway.
    CodeAlreadyUsed,
}

/// A code the inviter handed out, and what has been tried with it.
#[derive(Debug)]
pub struct Invite {
    code: InviteCode,
    expires_at: Instant,
    wrong_guesses: u32,
    in_flight: u32,
    used: bool,
}

impl Invite {
    /// An invite for `code` that works for [`INVITE_LIFETIME`] from `now`.
    pub fn new(code: InviteCode, now: Instant) -> Self {
        Invite::with_lifetime(code, now, INVITE_LIFETIME)
    }

    /// An invite for `code` that works for `lifetime` from `now`.
    pub fn with_lifetime(code: InviteCode, now: Instant, lifetime: Duration) -> Self {
        Invite {
            code,
            expires_at: now + lifetime,
            wrong_guesses: 0,
            in_flight: 0,
            used: false,
        }
    }

    pub fn code(&self) -> &InviteCode {
        &self.code
    }

    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Wrong guesses settled so far.
    pub fn wrong_guesses(&self) -> u32 {
        self.wrong_guesses
    }

    /// Why the code no longer works at `now`, if it does not: used, out of guesses or
    /// expired. Guesses still under way do not close it for good, so they are not
    /// counted here.
    pub fn closed(&self, now: Instant) -> Option<Closed> {
        if self.used {
            Some(Closed::Used)
        } else if self.wrong_guesses >= MAX_WRONG_GUESSES {
            Some(Closed::TooManyWrongGuesses)
        } else if now >= self.expires_at {
            Some(Closed::Expired)
        } else {
            None
        }
    }

    /// Takes a joiner's guess, before any byte derived from the code goes back to it.
    /// Refused when the code no longer works, and while the wrong guesses so far and
    /// the guesses under way already add up to [`MAX_WRONG_GUESSES`].
    pub fn admit(&mut self, now: Instant) -> Result<Attempt, Closed> {
        if let Some(reason) = self.closed(now) {
            return Err(reason);
        }
        if self.wrong_guesses + self.in_flight >= MAX_WRONG_GUESSES {
            return Err(Closed::TooManyWrongGuesses);
        }
        self.in_flight += 1;
        Ok(Attempt(()))
    }

    /// The joiner proved it knows the code, which is now used up; this holds even if
    /// the code expired meanwhile, since the guess was admitted in time. Refused with
    /// [`Closed::Used`] if another joiner succeeded first: the caller must then not
    /// pair with this one.
    pub fn succeeded(&mut self, attempt: Attempt) -> Result<(), Closed> {
        self.settle(attempt);
        if self.used {
            return Err(Closed::Used);
        }
        self.used = true;
        Ok(())
    }

    /// The guess was wrong, or the joiner left before proving anything.
    pub fn failed(&mut self, attempt: Attempt) -> AfterWrongGuess {
        self.settle(attempt);
        self.wrong_guesses += 1;
        if self.used {
            AfterWrongGuess::CodeAlreadyUsed
        } else if self.wrong_guesses >= MAX_WRONG_GUESSES {
            AfterWrongGuess::CodeDied
        } else {
            AfterWrongGuess::GuessesLeft(MAX_WRONG_GUESSES - self.wrong_guesses)
        }
    }

    fn settle(&mut self, Attempt(()): Attempt) {
        debug_assert!(self.in_flight > 0, "an attempt settled on another invite");
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(now: Instant) -> Invite {
        Invite::new("7-acid-acorn-acre".parse().unwrap(), now)
    }

    #[test]
    fn three_wrong_guesses_kill_the_code() {
        let now = Instant::now();
        let mut invite = invite(now);
        let first = invite.admit(now).unwrap();
        assert_eq!(invite.failed(first), AfterWrongGuess::GuessesLeft(2));
        let second = invite.admit(now).unwrap();
        assert_eq!(invite.failed(second), AfterWrongGuess::GuessesLeft(1));
        let third = invite.admit(now).unwrap();
        assert_eq!(invite.failed(third), AfterWrongGuess::CodeDied);
        assert_eq!(invite.admit(now), Err(Closed::TooManyWrongGuesses));
        assert_eq!(invite.closed(now), Some(Closed::TooManyWrongGuesses));
        assert_eq!(invite.wrong_guesses(), MAX_WRONG_GUESSES);
    }

    #[test]
    fn guesses_under_way_count_against_the_limit() {
        let now = Instant::now();
        let mut invite = invite(now);
        let in_flight: Vec<Attempt> = (0..3).map(|_| invite.admit(now).unwrap()).collect();
        assert_eq!(invite.admit(now), Err(Closed::TooManyWrongGuesses));
        assert_eq!(invite.closed(now), None);
        let mut in_flight = in_flight.into_iter();
        assert_eq!(
            invite.failed(in_flight.next().unwrap()),
            AfterWrongGuess::GuessesLeft(2)
        );
        assert_eq!(invite.admit(now), Err(Closed::TooManyWrongGuesses));
        invite.succeeded(in_flight.next().unwrap()).unwrap();
        assert_eq!(
            invite.failed(in_flight.next().unwrap()),
            AfterWrongGuess::CodeAlreadyUsed
        );
        assert_eq!(invite.admit(now), Err(Closed::Used));
    }

    #[test]
    fn a_success_burns_the_code() {
        let now = Instant::now();
        let mut invite = invite(now);
        let wrong = invite.admit(now).unwrap();
        let right = invite.admit(now).unwrap();
        assert_eq!(invite.failed(wrong), AfterWrongGuess::GuessesLeft(2));
        assert_eq!(invite.succeeded(right), Ok(()));
        assert_eq!(invite.admit(now), Err(Closed::Used));
        assert_eq!(invite.closed(now), Some(Closed::Used));
    }

    #[test]
    fn only_the_first_of_two_right_guesses_pairs() {
        let now = Instant::now();
        let mut invite = invite(now);
        let first = invite.admit(now).unwrap();
        let second = invite.admit(now).unwrap();
        assert_eq!(invite.succeeded(first), Ok(()));
        assert_eq!(invite.succeeded(second), Err(Closed::Used));
    }

    #[test]
    fn the_code_expires_but_a_guess_under_way_may_finish() {
        let now = Instant::now();
        let mut invite = invite(now);
        assert_eq!(invite.expires_at(), now + INVITE_LIFETIME);
        let late = invite.admit(now + INVITE_LIFETIME - Duration::from_secs(1));
        let late = late.unwrap();
        assert_eq!(invite.admit(now + INVITE_LIFETIME), Err(Closed::Expired));
        assert_eq!(invite.closed(now + INVITE_LIFETIME), Some(Closed::Expired));
        assert_eq!(invite.succeeded(late), Ok(()));
    }

    #[test]
    fn a_joiner_that_hangs_up_has_used_a_guess() {
        let now = Instant::now();
        let mut invite = Invite::with_lifetime(
            "0-zoom-zoom-zoom".parse().unwrap(),
            now,
            Duration::from_secs(60),
        );
        let hung_up = invite.admit(now).unwrap();
        assert_eq!(invite.failed(hung_up), AfterWrongGuess::GuessesLeft(2));
        let never_settled: Vec<Attempt> = (0..2).map(|_| invite.admit(now).unwrap()).collect();
        drop(never_settled);
        assert_eq!(invite.admit(now), Err(Closed::TooManyWrongGuesses));
    }

    #[test]
    fn debug_hides_the_code() {
        let shown = format!("{:?}", invite(Instant::now()));
        assert!(shown.contains("InviteCode(..)"), "{shown}");
        assert!(!shown.contains("acid"), "{shown}");
    }
}
