//! The knock: a proof, inside a TCP dialer's ClientHello, that it knows the
//! certificates of both ends of a pinned pair, checked before any public-key work
//! (PROTOCOL.md, "The knock").
//!
//! It plays the part of WireGuard's `mac1`. A listener sheds unauthenticated
//! handshakes to make room for newcomers, and the pinned peer's is unauthenticated
//! for one round trip after its ClientHello; a crowd fast enough could shed it every
//! time. A handshake that knocks correctly is shed only for another that knocks, so
//! strangers can no longer push the pinned peer out, however far away it is.
//!
//! The knock travels as one extra ALPN protocol name, which a listener that does not
//! know it ignores, so peers with and without it work together. It authenticates
//! nothing: both certificates' fingerprints are needed to forge it, but they are not
//! secrets, and TLS still decides who the peer is. What it proves is knowledge, and
//! what it buys is a place in the queue.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use thiserror::Error;

use crate::identity::fingerprint::Fingerprint;
use crate::link::tls::{self, Pin};

/// The start of the ALPN name that carries a knock; never one a listener selects.
pub const PREFIX: &[u8] = b"chat-knock/1";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// The ALPN name: [`PREFIX`], the dialer's clock in Unix seconds (u64, big-endian),
/// a random nonce, and the HMAC-SHA256 of those under the pair's key.
pub const LEN: usize = PREFIX.len() + 8 + NONCE_LEN + TAG_LEN;
/// How far the two clocks may disagree before a knock no longer counts. A peer
/// whose clock is further off still gets in as it did before knocks existed; it
/// only loses its place ahead of strangers.
pub const CLOCK_SKEW_SECS: u64 = 600;
/// Nonces remembered against replays. Only a holder of both fingerprints adds to
/// them; replays of a recorded knock add nothing.
const REMEMBERED: usize = 4096;

type Nonce = [u8; NONCE_LEN];

/// Why a knock does not count.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KnockError {
    #[error("the knock is {0} bytes, not {LEN}")]
    Length(usize),
    #[error("the knock was made with other certificates")]
    WrongKey,
    #[error("the knock's clock is {0} s away from ours")]
    Skewed(u64),
    #[error("the knock was seen before")]
    Replayed,
}

/// The HMAC key of one pair, as the listener (`to`) and the dialer (`from`) both
/// derive it: the two fingerprints, listener first, as HMAC-SHA256's 64-byte key.
struct PairKey(hmac::Key);

impl PairKey {
    fn new(to: &Fingerprint, from: &Fingerprint) -> PairKey {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(to.as_bytes());
        key[32..].copy_from_slice(from.as_bytes());
        PairKey(hmac::Key::new(hmac::HMAC_SHA256, &key))
    }

    fn knock(&self, unix_secs: u64, nonce: &Nonce) -> Vec<u8> {
        let mut knock = Vec::with_capacity(LEN);
        knock.extend_from_slice(PREFIX);
        knock.extend_from_slice(&unix_secs.to_be_bytes());
        knock.extend_from_slice(nonce);
        let tag = hmac::sign(&self.0, &knock);
        knock.extend_from_slice(tag.as_ref());
        knock
    }

    /// The knock's nonce, if its tag is right (compared in constant time) and its
    /// clock within [`CLOCK_SKEW_SECS`] of `now`.
    fn check(&self, knock: &[u8], now: u64) -> Result<Nonce, KnockError> {
        if knock.len() != LEN || !knock.starts_with(PREFIX) {
            return Err(KnockError::Length(knock.len()));
        }
        let (signed, tag) = knock.split_at(LEN - TAG_LEN);
        hmac::verify(&self.0, signed, tag).map_err(|_| KnockError::WrongKey)?;
        let clock = &signed[PREFIX.len()..PREFIX.len() + 8];
        let then = u64::from_be_bytes(clock.try_into().expect("8 bytes"));
        let skew = then.abs_diff(now);
        if skew > CLOCK_SKEW_SECS {
            return Err(KnockError::Skewed(skew));
        }
        Ok(signed[PREFIX.len() + 8..]
            .try_into()
            .expect("the nonce's length"))
    }
}

/// The knock a dialer with certificate `own` sends to the listener it pins.
pub fn knock(own: &Fingerprint, pin: &Pin) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    tls::crypto_provider()
        .secure_random
        .fill(&mut nonce)
        .expect("the system random number generator failed");
    PairKey::new(&pin.current(), own).knock(unix_now(), &nonce)
}

/// The listener's side: tells whether a ClientHello's ALPN names carry a knock
/// from the pinned peer that has not been seen before.
#[derive(Debug)]
pub struct Doorman {
    own: Fingerprint,
    pin: Pin,
    seen: Mutex<Seen>,
}

impl Doorman {
    pub fn new(own: Fingerprint, pin: Pin) -> Doorman {
        Doorman {
            own,
            pin,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Whether one of `alpn` is a fresh knock from the pinned peer.
    pub fn admits<'a>(&self, alpn: impl IntoIterator<Item = &'a [u8]>) -> bool {
        self.check(alpn, unix_now()).is_ok()
    }

    fn check<'a>(
        &self,
        alpn: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> Result<(), KnockError> {
        let Some(knock) = alpn.into_iter().find(|name| name.starts_with(PREFIX)) else {
            return Err(KnockError::Length(0));
        };
        let nonce = PairKey::new(&self.own, &self.pin.current()).check(knock, now)?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if seen.first_time(nonce) {
            Ok(())
        } else {
            Err(KnockError::Replayed)
        }
    }
}

/// The nonces of the last [`REMEMBERED`] valid knocks.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<Nonce>,
    order: VecDeque<Nonce>,
}

impl Seen {
    fn first_time(&mut self, nonce: Nonce) -> bool {
        if !self.set.insert(nonce) {
            return false;
        }
        self.order.push_back(nonce);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(byte: u8) -> Fingerprint {
        hex::encode([byte; 32]).parse().unwrap()
    }

    const NOW: u64 = 1_796_000_000;

    fn alice() -> Fingerprint {
        fingerprint(0xa1)
    }

    fn bob() -> Fingerprint {
        fingerprint(0xb0)
    }

    /// Alice listens and pins bob; bob dials and pins alice.
    fn alice_s_doorman() -> Doorman {
        Doorman::new(alice(), Pin::new(bob()))
    }

    fn bob_s_knock(now: u64, nonce: u8) -> Vec<u8> {
        PairKey::new(&alice(), &bob()).knock(now, &[nonce; NONCE_LEN])
    }

    #[test]
    fn the_pinned_peer_s_knock_is_admitted_once() {
        let doorman = alice_s_doorman();
        let knock = bob_s_knock(NOW, 1);
        assert_eq!(knock.len(), LEN);
        let alpn = [b"chat/4".as_slice(), &knock];
        assert_eq!(doorman.check(alpn, NOW), Ok(()));
        assert_eq!(doorman.check(alpn, NOW), Err(KnockError::Replayed));
        assert_eq!(doorman.check([bob_s_knock(NOW, 2).as_slice()], NOW), Ok(()));
    }

    #[test]
    fn a_knock_for_another_pair_or_the_other_direction_is_refused() {
        let doorman = alice_s_doorman();
        let stranger = PairKey::new(&alice(), &fingerprint(0x55)).knock(NOW, &[3; NONCE_LEN]);
        assert_eq!(
            doorman.check([stranger.as_slice()], NOW),
            Err(KnockError::WrongKey)
        );
        let reversed = PairKey::new(&bob(), &alice()).knock(NOW, &[4; NONCE_LEN]);
        assert_eq!(
            doorman.check([reversed.as_slice()], NOW),
            Err(KnockError::WrongKey)
        );
    }

    #[test]
    fn a_changed_pin_changes_whose_knock_counts() {
        let pin = Pin::new(fingerprint(0x55));
        let doorman = Doorman::new(alice(), pin.clone());
        assert_eq!(
            doorman.check([bob_s_knock(NOW, 5).as_slice()], NOW),
            Err(KnockError::WrongKey)
        );
        pin.replace(bob());
        assert_eq!(doorman.check([bob_s_knock(NOW, 6).as_slice()], NOW), Ok(()));
    }

    #[test]
    fn a_knock_from_a_clock_too_far_off_does_not_count() {
        let doorman = alice_s_doorman();
        let early = NOW - CLOCK_SKEW_SECS;
        assert_eq!(
            doorman.check([bob_s_knock(early, 7).as_slice()], NOW),
            Ok(())
        );
        let late = NOW + CLOCK_SKEW_SECS + 1;
        assert_eq!(
            doorman.check([bob_s_knock(late, 8).as_slice()], NOW),
            Err(KnockError::Skewed(CLOCK_SKEW_SECS + 1))
        );
    }

    #[test]
    fn a_changed_byte_anywhere_spoils_the_knock() {
        let doorman = alice_s_doorman();
        let knock = bob_s_knock(NOW, 9);
        for at in PREFIX.len()..LEN {
            let mut bent = knock.clone();
            bent[at] ^= 0x01;
            assert_eq!(
                doorman.check([bent.as_slice()], NOW),
                Err(KnockError::WrongKey),
                "byte {at}"
            );
        }
        let short = &knock[..LEN - 1];
        assert_eq!(
            doorman.check([short], NOW),
            Err(KnockError::Length(LEN - 1))
        );
        assert!(doorman.check([b"chat/4".as_slice()], NOW).is_err());
    }

    #[test]
    fn the_oldest_nonces_are_forgotten_beyond_the_limit() {
        let mut seen = Seen::default();
        let nonce = |i: usize| {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            nonce
        };
        for i in 0..=REMEMBERED {
            assert!(seen.first_time(nonce(i)));
        }
        assert_eq!(seen.set.len(), REMEMBERED);
        assert!(seen.first_time(nonce(0)), "forgotten");
        assert!(!seen.first_time(nonce(REMEMBERED)), "remembered");
    }

    /// The knock of PROTOCOL.md's example, byte for byte (computed independently
    /// with Python's `hmac`).
    #[test]
    fn the_protocol_s_example_knock() {
        let knock = bob_s_knock(NOW, 0x42);
        assert_eq!(
            hex::encode(knock),
            "636861742d6b6e6f636b2f31000000006b0cc900\
             42424242424242424242424242424242\
             cb4a04cd083f5833fc246f87aafd0ca45bf5a68852d7f6111263cbedb02ff756"
        );
    }
}
