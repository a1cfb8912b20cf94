//! Pairing by invite code: two people who have not exchanged fingerprints let their
//! `chat`s learn each other's certificate from a short code read out from one to the
//! other.
//!
//! The inviter makes an [`InviteCode`] and keeps an [`Invite`] that counts guesses
//! at it. Over a TLS 1.3 connection made before either side trusts the other's
//! certificate, the joiner runs [`join`] and the inviter [`answer`]. SPAKE2 over the
//! code gives both sides a key only if both typed the same code, and each proves it
//! holds that key with a MAC over the TLS channel binding and both certificates'
//! fingerprints. When both checks pass, each side knows that the certificate across
//! this very connection belongs to whoever knows the code, and can pin it.
//!
//! A connection tests one guess and the inviter admits at most
//! [`MAX_WRONG_GUESSES`] per code and offers at most [`CODES_PER_RUN`] codes in a
//! run, so the code's 37.7 bits are ample; each code also works only once and only
//! for [`INVITE_LIFETIME`].

pub mod code;
pub mod exchange;
pub mod invitation;
pub mod invite;
pub mod inviter;
pub mod joiner;
pub mod link;

pub use code::{CodeError, InviteCode, RandomnessUnavailable};
pub use exchange::{Answered, Binding, EXPORTER_LABEL, PairError, answer, join};
pub use invite::{
    AfterWrongGuess, Attempt, CODES_PER_RUN, Closed, INVITE_LIFETIME, Invite, MAX_WRONG_GUESSES,
};
pub use inviter::{InviteError, InviteReport, address_to_share, wait_for_joiner};
pub use joiner::{JoinError, join as join_inviter};
pub use link::Paired;
