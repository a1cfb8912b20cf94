//! The pairing exchange, run over a TLS 1.3 connection that is already established,
//! so that each side learns that the other knows the invite code and holds the
//! certificate it presented.
//!
//! The dialer (TLS client) is the joiner and the listener (TLS server) the inviter.
//! Both bring the code and a [`Binding`]: the TLS exporter value for the label
//! `EXPORTER-Channel-Binding` with no context, 32 bytes, and the SHA-256
//! fingerprints of the dialer's and the listener's certificate DER.
//!
//! # Messages, in order
//!
//! 1. dialer → listener, JOIN, 36 bytes: `0x01` (pairing version 1), the 33-byte
//!    SPAKE2 message A, and the dialer's listening port as a big-endian u16, never
//!    0. A listener that reads another first byte answers `0x03` (unsupported
//!    version) at once and closes; so it does for port 0, after reading all 36.
//! 2. listener → dialer, one status byte: `0x00` followed by the 33-byte SPAKE2
//!    message B; or `0x01`, the invite is closed (expired, used, or dead after wrong
//!    guesses), and the listener closes.
//! 3. dialer → listener: the 32-byte MAC_d.
//! 4. listener → dialer: `0x00` followed by the 32-byte MAC_l if MAC_d verified;
//!    else `0x02` (wrong code), and the listener closes. `0x01` here means MAC_d
//!    verified but the invite closed meanwhile (another joiner with the code paired
//!    first), and the listener closes: only one joiner ever receives MAC_l.
//!
//! # Keys
//!
//! SPAKE2 over Ed25519 with the code's canonical text as the password, identity A
//! `chat-pair/1 dialer` and identity B `chat-pair/1 listener`; message A comes from
//! the dialer's side A, message B from the listener's side B. K is SPAKE2's 32-byte
//! output.
//!
//! - PRK = HKDF-SHA256-Extract(salt = exporter, IKM = K)
//! - kd = HKDF-SHA256-Expand(PRK, info = `chat-pair/1 dialer confirmation`, 32 bytes)
//! - kl = HKDF-SHA256-Expand(PRK, info = `chat-pair/1 listener confirmation`, 32 bytes)
//!
//! The transcript T is the concatenation of these fields, each preceded by its
//! length as a big-endian u16: `chat-pair/1` (11 bytes), the exporter value (32),
//! the dialer's fingerprint (32), the listener's fingerprint (32), message A (33),
//! message B (33), the port from JOIN (2, big-endian). T is 189 bytes.
//!
//! MAC_d = HMAC-SHA256(kd, T) and MAC_l = HMAC-SHA256(kl, T); each side checks the
//! other's in constant time.
//!
//! A wrong code and a relay between two TLS connections look the same: through a
//! relay the two sides see different exporter values and fingerprints, so MAC_d
//! fails and the listener answers `0x02`. A SPAKE2 message that is not a valid point
//! is treated as a wrong code: the listener still answers `0x00` with message B,
//! reads MAC_d and answers `0x02`; the dialer stops without sending MAC_d.
//!
//! # Version 2, over iroh
//!
//! Where the session that follows runs over iroh, the joiner has no port to
//! announce but a long-term endpoint ID, and the inviter has one too, which the
//! joiner dialled no more than a code-derived stand-in of. Version 2 differs from
//! version 1 in exactly these points:
//!
//! - JOIN is 66 bytes: `0x02`, message A, the joiner's endpoint ID (32 bytes).
//! - The accepting reply is `0x00`, message B, the inviter's endpoint ID (32 bytes).
//! - Every label says `chat-pair/2` where version 1's says `chat-pair/1` (the SPAKE2
//!   identities, both HKDF infos and the transcript's first field).
//! - The transcript ends with the joiner's and then the inviter's endpoint ID (32
//!   bytes each) instead of the port: T is 253 bytes.
//!
//! So both endpoint IDs are confirmed by both MACs, and a relay operator who sees
//! the stream cannot point either side at another endpoint. A listener answers
//! `0x03` to a JOIN of the version it does not take on its transport: version 1 over
//! TCP, version 2 over iroh.
//!
//! Every read has a fixed size, and each byte is checked before it is used. Neither
//! function has a deadline of its own: the caller bounds the exchange.

use std::fmt;
use std::io;

use aws_lc_rs::{hkdf, hmac};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::code::InviteCode;
use super::invite::Closed;
use crate::identity::fingerprint::Fingerprint;

/// The TLS exporter label whose 32-byte value, with no context, goes in [`Binding`].
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The first byte of JOIN in version 1, where the joiner announces a port.
pub const PAIRING_VERSION: u8 = 0x01;
/// The first byte of JOIN in version 2, where both sides announce endpoint IDs.
pub const PAIRING_VERSION_2: u8 = 0x02;

const ACCEPTED: u8 = 0x00;
const INVITE_CLOSED: u8 = 0x01;
const WRONG_CODE: u8 = 0x02;
const UNSUPPORTED_VERSION: u8 = 0x03;

const SPAKE2_MESSAGE_LEN: usize = 33;
const MAC_LEN: usize = 32;
const ENDPOINT_ID_LEN: usize = 32;
const JOIN_2_LEN: usize = 1 + SPAKE2_MESSAGE_LEN + ENDPOINT_ID_LEN;

/// The labels of one version of the exchange.
struct Labels {
    dialer_identity: &'static [u8],
    listener_identity: &'static [u8],
    dialer_confirmation: &'static [u8],
    listener_confirmation: &'static [u8],
    transcript: &'static [u8],
}

const LABELS_1: Labels = Labels {
    dialer_identity: b"chat-pair/1 dialer",
    listener_identity: b"chat-pair/1 listener",
    dialer_confirmation: b"chat-pair/1 dialer confirmation",
    listener_confirmation: b"chat-pair/1 listener confirmation",
    transcript: b"chat-pair/1",
};

const LABELS_2: Labels = Labels {
    dialer_identity: b"chat-pair/2 dialer",
    listener_identity: b"chat-pair/2 listener",
    dialer_confirmation: b"chat-pair/2 dialer confirmation",
    listener_confirmation: b"chat-pair/2 listener confirmation",
    transcript: b"chat-pair/2",
};

/// An iroh endpoint ID: an Ed25519 public key.
pub type EndpointIdBytes = [u8; ENDPOINT_ID_LEN];

/// Where each side's session can be reached, as the version of the exchange says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// Version 1: the joiner's listening port (the inviter is where it was dialled).
    Port(u16),
    /// Version 2: the side's long-term endpoint ID.
    Endpoint(EndpointIdBytes),
}

impl Whereabouts {
    fn labels(&self) -> &'static Labels {
        match self {
            Whereabouts::Port(_) => &LABELS_1,
            Whereabouts::Endpoint(_) => &LABELS_2,
        }
    }

    fn version(&self) -> u8 {
        match self {
            Whereabouts::Port(_) => PAIRING_VERSION,
            Whereabouts::Endpoint(_) => PAIRING_VERSION_2,
        }
    }
}

const RELAYED: &str = "the inviter's confirmation failed: the connection is not \
                       end-to-end; a relay may be in the middle";

type SpakeMessage = [u8; SPAKE2_MESSAGE_LEN];

/// What ties the exchange to one TLS connection. `Debug` leaves out the exporter
/// value, which is derived from the connection's secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// The TLS exporter value for [`EXPORTER_LABEL`], no context, 32 bytes.
    pub exporter: [u8; 32],
    /// The fingerprint of the TLS client's certificate.
    pub dialer: Fingerprint,
    /// The fingerprint of the TLS server's certificate.
    pub listener: Fingerprint,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("dialer", &self.dialer)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// What the listener learns from a joiner that knew the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// Where the joiner's session can be reached.
    pub joiner: Whereabouts,
}

/// Why a pairing exchange did not succeed.
#[derive(Debug, Error)]
pub enum PairError {
    /// Dialer: the inviter said the code is wrong. Listener: the joiner's
    /// confirmation failed. Also what a relay in the middle looks like.
    #[error("the invite code did not match")]
    WrongCode,
    /// Dialer: the inviter no longer takes this code.
    #[error(
        "the invite is closed: it expired, was used, or had too many wrong tries; \
         ask for a new code"
    )]
    InviteClosed,
    /// Listener: the invite took no more guesses, and the joiner was told so.
    #[error("refused a joiner: {0}")]
    Refused(Closed),
    /// Listener: the connection lost its place to a newer one before it could guess,
    /// and was closed without a word, so that the joiner tries again.
    #[error("dropped for a newer connection before it guessed")]
    Shed,
    /// The other side speaks another version of the pairing exchange.
    #[error("the other side speaks another version of the pairing exchange")]
    Unsupported,
    /// The other side sent what the exchange does not allow.
    #[error("{0}")]
    PeerMisbehaved(&'static str),
    /// The connection failed or ended early.
    #[error("the connection failed during pairing: {0}")]
    Io(#[from] io::Error),
}

/// Why the listener takes no guess on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoGuess {
    /// The invite takes no more: the joiner is told so.
    Closed(Closed),
    /// The connection has lost its place to a newer one.
    Shed,
}

impl From<Closed> for NoGuess {
    fn from(closed: Closed) -> Self {
        NoGuess::Closed(closed)
    }
}

/// The dialer's side: proves to the listener that we know `code` and tells it
/// where our session is (`ours`, which picks the version). `Ok` means the listener
/// proved it knows the code too, on this very connection; in version 2 it carries
/// the listener's endpoint ID, confirmed by both MACs.
pub async fn join<S>(
    stream: &mut S,
    code: &InviteCode,
    binding: &Binding,
    ours: Whereabouts,
) -> Result<Option<EndpointIdBytes>, PairError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let labels = ours.labels();
    let (spake, message_a) = Spake2::<Ed25519Group>::start_a(
        &Password::new(code.as_password()),
        &Identity::new(labels.dialer_identity),
        &Identity::new(labels.listener_identity),
    );
    let message_a = spake_message(message_a);
    let mut join = Vec::with_capacity(JOIN_2_LEN);
    join.push(ours.version());
    join.extend_from_slice(&message_a);
    match &ours {
        Whereabouts::Port(port) => join.extend_from_slice(&port.to_be_bytes()),
        Whereabouts::Endpoint(id) => join.extend_from_slice(id),
    }
    send(stream, &join).await?;

    match read_byte(stream).await? {
        ACCEPTED => {}
        INVITE_CLOSED => return Err(PairError::InviteClosed),
        UNSUPPORTED_VERSION => return Err(PairError::Unsupported),
        _ => {
            return Err(PairError::PeerMisbehaved(
                "the inviter answered our join with an unknown status",
            ));
        }
    }
    let mut message_b = [0u8; SPAKE2_MESSAGE_LEN];
    stream.read_exact(&mut message_b).await?;
    let (joiner, listener) = match ours {
        Whereabouts::Port(_) => (ours, None),
        Whereabouts::Endpoint(_) => {
            let mut id = [0u8; ENDPOINT_ID_LEN];
            stream.read_exact(&mut id).await?;
            (ours, Some(Whereabouts::Endpoint(id)))
        }
    };
    let Ok(shared_key) = spake.finish(&message_b) else {
        return Err(PairError::WrongCode);
    };
    let keys = ConfirmationKeys::derive(labels, &shared_key, &binding.exporter);
    let transcript = transcript(labels, binding, &message_a, &message_b, joiner, listener);
    send(stream, hmac::sign(&keys.dialer, &transcript).as_ref()).await?;

    match read_byte(stream).await? {
        ACCEPTED => {}
        WRONG_CODE => return Err(PairError::WrongCode),
        INVITE_CLOSED => return Err(PairError::InviteClosed),
        _ => {
            return Err(PairError::PeerMisbehaved(
                "the inviter answered our confirmation with an unknown status",
            ));
        }
    }
    let mut listener_mac = [0u8; MAC_LEN];
    stream.read_exact(&mut listener_mac).await?;
    hmac::verify(&keys.listener, &transcript, &listener_mac)
        .map_err(|_| PairError::PeerMisbehaved(RELAYED))?;
    Ok(match listener {
        Some(Whereabouts::Endpoint(id)) => Some(id),
        _ => None,
    })
}

/// The listener's side: checks that the joiner knows `code` and proves that we do.
///
/// `admit` is called once JOIN has been read, before anything derived from the code
/// is sent; its refusal goes back to the joiner as "closed" and comes out as
/// [`PairError::Refused`], or, for [`NoGuess::Shed`], closes the connection without
/// a word as [`PairError::Shed`]. When it admits, the joiner has had a guess, whatever
/// happens next. With an [`Invite`](super::invite::Invite), let `admit` keep the
/// [`Attempt`](super::invite::Attempt) from `Invite::admit` where the caller can
/// reach it, and settle that attempt once this returns or is dropped: `Ok` with
/// `Invite::succeeded`, anything else with `Invite::failed`.
///
/// `confirm` is called once MAC_d has verified, before MAC_l is sent: with an
/// `Invite`, settle the attempt there with `Invite::succeeded`, whose refusal (another
/// joiner paired first) goes back as "closed", so that only one joiner ever learns
/// it paired.
pub async fn answer<S>(
    stream: &mut S,
    code: &InviteCode,
    binding: &Binding,
    ours: Option<EndpointIdBytes>,
    admit: impl FnOnce() -> Result<(), NoGuess>,
    confirm: impl FnOnce() -> Result<(), Closed>,
) -> Result<Answered, PairError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The version first: each version's JOIN has its own length.
    let version = read_byte(stream).await?;
    let expected = match ours {
        None => PAIRING_VERSION,
        Some(_) => PAIRING_VERSION_2,
    };
    if version != expected {
        refuse(stream, UNSUPPORTED_VERSION).await;
        return Err(PairError::Unsupported);
    }
    let mut message_a = [0u8; SPAKE2_MESSAGE_LEN];
    stream.read_exact(&mut message_a).await?;
    let joiner = match ours {
        None => {
            let mut port = [0u8; 2];
            stream.read_exact(&mut port).await?;
            // A joiner that does not listen needs version 2, which sends both
            // directions over one iroh connection.
            match u16::from_be_bytes(port) {
                0 => {
                    refuse(stream, UNSUPPORTED_VERSION).await;
                    return Err(PairError::Unsupported);
                }
                port => Whereabouts::Port(port),
            }
        }
        Some(_) => {
            let mut id = [0u8; ENDPOINT_ID_LEN];
            stream.read_exact(&mut id).await?;
            Whereabouts::Endpoint(id)
        }
    };
    let labels = joiner.labels();
    let listener = ours.map(Whereabouts::Endpoint);

    match admit() {
        Ok(()) => {}
        Err(NoGuess::Closed(reason)) => {
            refuse(stream, INVITE_CLOSED).await;
            return Err(PairError::Refused(reason));
        }
        Err(NoGuess::Shed) => return Err(PairError::Shed),
    }
    let (spake, message_b) = Spake2::<Ed25519Group>::start_b(
        &Password::new(code.as_password()),
        &Identity::new(labels.dialer_identity),
        &Identity::new(labels.listener_identity),
    );
    let message_b = spake_message(message_b);
    let mut reply = Vec::with_capacity(1 + SPAKE2_MESSAGE_LEN + ENDPOINT_ID_LEN);
    reply.push(ACCEPTED);
    reply.extend_from_slice(&message_b);
    if let Some(id) = &ours {
        reply.extend_from_slice(id);
    }
    send(stream, &reply).await?;

    let keys = spake
        .finish(&message_a)
        .ok()
        .map(|shared_key| ConfirmationKeys::derive(labels, &shared_key, &binding.exporter));
    let mut dialer_mac = [0u8; MAC_LEN];
    stream.read_exact(&mut dialer_mac).await?;
    let transcript = transcript(labels, binding, &message_a, &message_b, joiner, listener);
    let Some(keys) =
        keys.filter(|keys| hmac::verify(&keys.dialer, &transcript, &dialer_mac).is_ok())
    else {
        refuse(stream, WRONG_CODE).await;
        return Err(PairError::WrongCode);
    };
    if let Err(reason) = confirm() {
        refuse(stream, INVITE_CLOSED).await;
        return Err(PairError::Refused(reason));
    }
    let mut confirmation = [0u8; 1 + MAC_LEN];
    confirmation[0] = ACCEPTED;
    confirmation[1..].copy_from_slice(hmac::sign(&keys.listener, &transcript).as_ref());
    send(stream, &confirmation).await?;
    Ok(Answered { joiner })
}

/// kd and kl; aws-lc-rs keeps their bytes out of `Debug`.
struct ConfirmationKeys {
    dialer: hmac::Key,
    listener: hmac::Key,
}

impl ConfirmationKeys {
    fn derive(labels: &Labels, shared_key: &[u8], exporter: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, exporter).extract(shared_key);
        let expand = |info: &[u8]| {
            let info = [info];
            let okm = prk
                .expand(&info, hmac::HMAC_SHA256)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            hmac::Key::from(okm)
        };
        ConfirmationKeys {
            dialer: expand(labels.dialer_confirmation),
            listener: expand(labels.listener_confirmation),
        }
    }
}

/// T: each field preceded by its length as a big-endian u16. The last fields say
/// where each side is: version 1's port, or version 2's two endpoint IDs.
fn transcript(
    labels: &Labels,
    binding: &Binding,
    message_a: &SpakeMessage,
    message_b: &SpakeMessage,
    joiner: Whereabouts,
    listener: Option<Whereabouts>,
) -> Vec<u8> {
    let port;
    let mut fields: Vec<&[u8]> = vec![
        labels.transcript,
        &binding.exporter,
        binding.dialer.as_bytes(),
        binding.listener.as_bytes(),
        message_a,
        message_b,
    ];
    match &joiner {
        Whereabouts::Port(joiner_port) => {
            port = joiner_port.to_be_bytes();
            fields.push(&port);
        }
        Whereabouts::Endpoint(id) => fields.push(id),
    }
    if let Some(Whereabouts::Endpoint(id)) = &listener {
        fields.push(id);
    }
    let mut transcript = Vec::with_capacity(fields.iter().map(|field| 2 + field.len()).sum());
    for field in fields {
        let len = u16::try_from(field.len()).expect("every field is a few bytes");
        transcript.extend_from_slice(&len.to_be_bytes());
        transcript.extend_from_slice(field);
    }
    transcript
}

fn spake_message(message: Vec<u8>) -> SpakeMessage {
    message
        .try_into()
        .expect("a SPAKE2 message over Ed25519 is a side byte and a 32-byte point")
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_byte<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(byte[0])
}

/// Tells the dialer `status` and closes our side. Best effort: the refusal stands
/// whether or not the dialer is still there to read it.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: u8) {
    if send(stream, &[status]).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::{Duration, Instant};

    use tokio::io::{DuplexStream, duplex};

    use super::*;
    use crate::pairing::invite::{AfterWrongGuess, Attempt, Invite};

    const CODE: &str = "7-acid-acorn-acre";
    /// A version 1 JOIN: the version, message A and a port.
    const JOIN_LEN: usize = 1 + SPAKE2_MESSAGE_LEN + 2;

    async fn within<F: Future>(exchange: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the exchange hung")
    }

    fn code(text: &str) -> InviteCode {
        text.parse().unwrap()
    }

    fn binding(exporter: u8, dialer: &[u8], listener: &[u8]) -> Binding {
        Binding {
            exporter: [exporter; 32],
            dialer: Fingerprint::of(dialer),
            listener: Fingerprint::of(listener),
        }
    }

    fn direct() -> Binding {
        binding(0x5a, b"dialer", b"listener")
    }

    fn admit_all<E>() -> Result<(), E> {
        Ok(())
    }

    fn never_admit() -> Result<(), NoGuess> {
        panic!("admission asked for before a valid JOIN")
    }

    /// Carries bytes between `dialer` and `listener`, handing the JOIN to `tamper`
    /// on the way.
    async fn relay(
        mut dialer: DuplexStream,
        mut listener: DuplexStream,
        tamper: impl FnOnce(&mut [u8; JOIN_LEN]),
    ) {
        let mut join = [0u8; JOIN_LEN];
        if dialer.read_exact(&mut join).await.is_err() {
            return;
        }
        tamper(&mut join);
        if listener.write_all(&join).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut dialer, &mut listener).await;
    }

    #[tokio::test]
    async fn the_same_code_pairs_and_the_listener_learns_the_port() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, answered) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                answer(&mut listener, &right, &binding, None, admit_all, admit_all),
            )
        })
        .await;
        joined.unwrap();
        assert_eq!(
            answered.unwrap(),
            Answered {
                joiner: Whereabouts::Port(40123)
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_code_fails_on_both_sides_and_costs_a_guess() {
        let right = code(CODE);
        let wrong = code("7-acid-acorn-aged");
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let mut invite = Invite::new(code(CODE), Instant::now());
        let mut attempt: Option<Attempt> = None;
        let (joined, answered) = within(async {
            tokio::join!(
                join(&mut dialer, &wrong, &binding, Whereabouts::Port(40123)),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    None,
                    || {
                        attempt = Some(invite.admit(Instant::now())?);
                        Ok(())
                    },
                    admit_all
                ),
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
        assert_eq!(
            invite.failed(attempt.unwrap()),
            AfterWrongGuess::GuessesLeft(2)
        );
    }

    /// Runs both sides, with the right code, through [`relay`]; both results.
    async fn relayed(
        dialer_side: Binding,
        listener_side: Binding,
        tamper: impl FnOnce(&mut [u8; JOIN_LEN]) + Send + 'static,
    ) -> (
        Result<Option<EndpointIdBytes>, PairError>,
        Result<Answered, PairError>,
    ) {
        let right = code(CODE);
        let (mut dialer, dialer_relay) = duplex(1024);
        let (relay_listener, mut listener) = duplex(1024);
        let relaying = tokio::spawn(relay(dialer_relay, relay_listener, tamper));
        let results = within(async {
            tokio::join!(
                join(&mut dialer, &right, &dialer_side, Whereabouts::Port(40123)),
                answer(
                    &mut listener,
                    &right,
                    &listener_side,
                    None,
                    admit_all,
                    admit_all
                ),
            )
        })
        .await;
        relaying.abort();
        results
    }

    #[tokio::test]
    async fn a_relay_in_the_middle_fails_even_with_the_right_code() {
        let dialer_side = binding(0x11, b"dialer", b"relay as listener");
        let listener_side = binding(0x22, b"relay as dialer", b"listener");
        let (joined, answered) = relayed(dialer_side, listener_side, |_| {}).await;
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
    }

    #[tokio::test]
    async fn the_confirmations_fail_when_only_the_exporter_differs() {
        let dialer_side = binding(0x11, b"dialer", b"listener");
        let listener_side = binding(0x22, b"dialer", b"listener");
        let (joined, answered) = relayed(dialer_side, listener_side, |_| {}).await;
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
    }

    #[tokio::test]
    async fn a_joiner_that_does_not_listen_is_refused_before_admission() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, answered) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(0)),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    None,
                    never_admit,
                    admit_all
                ),
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::Unsupported)), "{joined:?}");
        assert!(
            matches!(answered, Err(PairError::Unsupported)),
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn the_dialers_confirmation_fails_when_only_the_port_was_changed() {
        let (joined, answered) = relayed(direct(), direct(), |join| {
            join[JOIN_LEN - 2..].copy_from_slice(&40124u16.to_be_bytes());
        })
        .await;
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
    }

    #[tokio::test]
    async fn a_closed_invite_is_refused_before_message_b() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let mut invite = Invite::new(code(CODE), Instant::now());
        let earlier = invite.admit(Instant::now()).unwrap();
        invite.succeeded(earlier).unwrap();
        let (joined, answered) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    None,
                    || {
                        invite
                            .admit(Instant::now())
                            .map(drop)
                            .map_err(NoGuess::from)
                    },
                    admit_all
                ),
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::InviteClosed)), "{joined:?}");
        assert!(
            matches!(answered, Err(PairError::Refused(Closed::Used))),
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn a_second_joiner_with_the_code_is_told_the_invite_closed() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let invite = std::cell::RefCell::new(Invite::new(code(CODE), Instant::now()));
        let first = invite.borrow_mut().admit(Instant::now()).unwrap();
        let second = std::cell::RefCell::new(None);
        let (joined, answered) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    None,
                    || {
                        *second.borrow_mut() = Some(invite.borrow_mut().admit(Instant::now())?);
                        Ok(())
                    },
                    || {
                        invite.borrow_mut().succeeded(first)?;
                        let second = second.borrow_mut().take().unwrap();
                        invite.borrow_mut().succeeded(second)
                    }
                ),
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::InviteClosed)), "{joined:?}");
        assert!(
            matches!(answered, Err(PairError::Refused(Closed::Used))),
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn the_listener_refuses_another_version() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let mut join = [0u8; JOIN_LEN];
        join[0] = 0x02;
        let (answered, reply) = within(async {
            tokio::join!(
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    None,
                    never_admit,
                    admit_all
                ),
                async {
                    dialer.write_all(&join).await.unwrap();
                    let mut reply = Vec::new();
                    dialer.read_to_end(&mut reply).await.unwrap();
                    reply
                },
            )
        })
        .await;
        assert!(
            matches!(answered, Err(PairError::Unsupported)),
            "{answered:?}"
        );
        assert_eq!(reply, [UNSUPPORTED_VERSION]);
    }

    #[tokio::test]
    async fn the_dialer_understands_unsupported_version() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, ()) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                async {
                    let mut join = [0u8; JOIN_LEN];
                    listener.read_exact(&mut join).await.unwrap();
                    listener.write_all(&[UNSUPPORTED_VERSION]).await.unwrap();
                }
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::Unsupported)), "{joined:?}");
    }

    #[tokio::test]
    async fn the_dialer_rejects_an_unknown_status() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, ()) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                async {
                    let mut join = [0u8; JOIN_LEN];
                    listener.read_exact(&mut join).await.unwrap();
                    listener.write_all(&[WRONG_CODE]).await.unwrap();
                }
            )
        })
        .await;
        assert!(
            matches!(joined, Err(PairError::PeerMisbehaved(_))),
            "{joined:?}"
        );
    }

    #[tokio::test]
    async fn a_joiner_that_hangs_up_after_join_has_used_a_guess() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let mut invite = Invite::new(code(CODE), Instant::now());
        let mut attempt: Option<Attempt> = None;
        let answered = within(async {
            let mut join = [0u8; JOIN_LEN];
            join[0] = PAIRING_VERSION;
            join[JOIN_LEN - 1] = 1;
            dialer.write_all(&join).await.unwrap();
            drop(dialer);
            answer(
                &mut listener,
                &right,
                &binding,
                None,
                || {
                    attempt = Some(invite.admit(Instant::now())?);
                    Ok(())
                },
                admit_all,
            )
            .await
        })
        .await;
        assert!(matches!(answered, Err(PairError::Io(_))), "{answered:?}");
        assert_eq!(
            invite.failed(attempt.unwrap()),
            AfterWrongGuess::GuessesLeft(2)
        );
    }

    #[tokio::test]
    async fn a_changed_listener_confirmation_is_reported_as_a_relay() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut dialer_relay) = duplex(1024);
        let (mut relay_listener, mut listener) = duplex(1024);
        let relaying = async {
            let forward = async |from: &mut DuplexStream, to: &mut DuplexStream, len| {
                let mut bytes = vec![0u8; len];
                from.read_exact(&mut bytes).await.unwrap();
                if len == 1 + MAC_LEN {
                    bytes[len - 1] ^= 1;
                }
                to.write_all(&bytes).await.unwrap();
            };
            forward(&mut dialer_relay, &mut relay_listener, JOIN_LEN).await;
            forward(
                &mut relay_listener,
                &mut dialer_relay,
                1 + SPAKE2_MESSAGE_LEN,
            )
            .await;
            forward(&mut dialer_relay, &mut relay_listener, MAC_LEN).await;
            forward(&mut relay_listener, &mut dialer_relay, 1 + MAC_LEN).await;
        };
        let (joined, answered, ()) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                answer(&mut listener, &right, &binding, None, admit_all, admit_all),
                relaying,
            )
        })
        .await;
        assert_eq!(
            answered.unwrap(),
            Answered {
                joiner: Whereabouts::Port(40123)
            }
        );
        assert!(
            matches!(joined, Err(PairError::PeerMisbehaved(RELAYED))),
            "{joined:?}"
        );
    }

    #[tokio::test]
    async fn a_bad_spake2_message_from_the_dialer_counts_as_a_wrong_code() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let mut join = [0u8; JOIN_LEN];
        join[0] = PAIRING_VERSION;
        join[JOIN_LEN - 1] = 1;
        let (answered, replies) = within(async {
            tokio::join!(
                answer(&mut listener, &right, &binding, None, admit_all, admit_all),
                async {
                    dialer.write_all(&join).await.unwrap();
                    let mut accepted = [0u8; 1 + SPAKE2_MESSAGE_LEN];
                    dialer.read_exact(&mut accepted).await.unwrap();
                    dialer.write_all(&[0u8; MAC_LEN]).await.unwrap();
                    let mut verdict = Vec::new();
                    dialer.read_to_end(&mut verdict).await.unwrap();
                    (accepted[0], verdict)
                }
            )
        })
        .await;
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
        assert_eq!(replies, (ACCEPTED, vec![WRONG_CODE]));
    }

    #[tokio::test]
    async fn a_bad_spake2_message_from_the_listener_counts_as_a_wrong_code() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, ()) = within(async {
            tokio::join!(
                join(&mut dialer, &right, &binding, Whereabouts::Port(40123)),
                async {
                    let mut join = [0u8; JOIN_LEN];
                    listener.read_exact(&mut join).await.unwrap();
                    let mut reply = [0u8; 1 + SPAKE2_MESSAGE_LEN];
                    reply[0] = ACCEPTED;
                    reply[1..].copy_from_slice(&join[1..=SPAKE2_MESSAGE_LEN]);
                    listener.write_all(&reply).await.unwrap();
                }
            )
        })
        .await;
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
    }

    #[test]
    fn the_transcript_frames_every_field() {
        let transcript = transcript(
            &LABELS_1,
            &direct(),
            &[0xaa; 33],
            &[0xbb; 33],
            Whereabouts::Port(0x1234),
            None,
        );
        assert_eq!(transcript.len(), 189);
        assert_eq!(&transcript[..13], b"\x00\x0bchat-pair/1");
        assert_eq!(&transcript[13..15], [0, 32]);
        assert_eq!(&transcript[185..], [0, 2, 0x12, 0x34]);
    }

    #[test]
    fn confirmations_match_the_documented_key_schedule() {
        let keys = ConfirmationKeys::derive(&LABELS_1, &[0x4b; 32], &[0x5a; 32]);
        let transcript = transcript(
            &LABELS_1,
            &direct(),
            &[0xaa; 33],
            &[0xbb; 33],
            Whereabouts::Port(40123),
            None,
        );
        assert_eq!(
            hex::encode(hmac::sign(&keys.dialer, &transcript)),
            EXPECTED_DIALER_MAC
        );
        assert_eq!(
            hex::encode(hmac::sign(&keys.listener, &transcript)),
            EXPECTED_LISTENER_MAC
        );
    }

    #[test]
    fn the_version_2_transcript_ends_with_both_endpoint_ids() {
        let transcript = transcript(
            &LABELS_2,
            &direct(),
            &[0xaa; 33],
            &[0xbb; 33],
            Whereabouts::Endpoint([0xd1; 32]),
            Some(Whereabouts::Endpoint([0x11; 32])),
        );
        assert_eq!(transcript.len(), 253);
        assert_eq!(&transcript[..13], b"\x00\x0bchat-pair/2");
        assert_eq!(&transcript[185..187], [0, 32]);
        assert_eq!(&transcript[187..219], [0xd1; 32]);
        assert_eq!(&transcript[219..221], [0, 32]);
        assert_eq!(&transcript[221..], [0x11; 32]);
    }

    #[test]
    fn version_2_confirmations_match_the_documented_key_schedule() {
        let keys = ConfirmationKeys::derive(&LABELS_2, &[0x4b; 32], &[0x5a; 32]);
        let transcript = transcript(
            &LABELS_2,
            &direct(),
            &[0xaa; 33],
            &[0xbb; 33],
            Whereabouts::Endpoint([0xd1; 32]),
            Some(Whereabouts::Endpoint([0x11; 32])),
        );
        assert_eq!(
            hex::encode(hmac::sign(&keys.dialer, &transcript)),
            EXPECTED_DIALER_MAC_2
        );
        assert_eq!(
            hex::encode(hmac::sign(&keys.listener, &transcript)),
            EXPECTED_LISTENER_MAC_2
        );
    }

    #[tokio::test]
    async fn version_2_pairs_and_each_side_learns_the_others_endpoint() {
        let (right, binding) = (code(CODE), direct());
        let (mut dialer, mut listener) = duplex(1024);
        let (joined, answered) = within(async {
            tokio::join!(
                join(
                    &mut dialer,
                    &right,
                    &binding,
                    Whereabouts::Endpoint([0xd1; 32])
                ),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    Some([0x11; 32]),
                    admit_all,
                    admit_all
                ),
            )
        })
        .await;
        assert_eq!(joined.unwrap(), Some([0x11; 32]));
        assert_eq!(
            answered.unwrap(),
            Answered {
                joiner: Whereabouts::Endpoint([0xd1; 32])
            }
        );
    }

    #[tokio::test]
    async fn each_transport_refuses_the_other_versions_join() {
        let right = code(CODE);
        for (ours, listener_id) in [
            (Whereabouts::Port(40123), Some([0x11; 32])),
            (Whereabouts::Endpoint([0xd1; 32]), None),
        ] {
            let binding = direct();
            let (mut dialer, mut listener) = duplex(1024);
            let (joined, answered) = within(async {
                tokio::join!(
                    join(&mut dialer, &right, &binding, ours),
                    answer(
                        &mut listener,
                        &right,
                        &binding,
                        listener_id,
                        never_admit,
                        admit_all
                    ),
                )
            })
            .await;
            assert!(matches!(joined, Err(PairError::Unsupported)), "{joined:?}");
            assert!(
                matches!(answered, Err(PairError::Unsupported)),
                "{answered:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_joiners_endpoint_id_changed_on_the_way_fails_the_confirmation() {
        let right = code(CODE);
        let binding = direct();
        let (mut dialer, dialer_relay) = duplex(1024);
        let (relay_listener, mut listener) = duplex(1024);
        let relaying = tokio::spawn(async move {
            let (mut from, mut to) = (dialer_relay, relay_listener);
            let mut join = [0u8; JOIN_2_LEN];
            if from.read_exact(&mut join).await.is_err() {
                return;
            }
            join[JOIN_2_LEN - 1] ^= 1;
            if to.write_all(&join).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
            }
        });
        let (joined, answered) = within(async {
            tokio::join!(
                join(
                    &mut dialer,
                    &right,
                    &binding,
                    Whereabouts::Endpoint([0xd1; 32])
                ),
                answer(
                    &mut listener,
                    &right,
                    &binding,
                    Some([0x11; 32]),
                    admit_all,
                    admit_all
                ),
            )
        })
        .await;
        relaying.abort();
        assert!(matches!(joined, Err(PairError::WrongCode)), "{joined:?}");
        assert!(
            matches!(answered, Err(PairError::WrongCode)),
            "{answered:?}"
        );
    }

    /// Computed from the module's description by another implementation.
    const EXPECTED_DIALER_MAC: &str =
        "c0dfa6b76bc353af96b469cd8ecb55b36158d536d62e3aea147eaf4ec035f20f";
    const EXPECTED_LISTENER_MAC: &str =
        "50b956c02c7ff86f8fced8a413f0eb04b8f13f8a75687f1ec670413216ae8579";
    const EXPECTED_DIALER_MAC_2: &str =
        "18c93d43c96fc62451a9c14717ae7a8339c96568c0d0f80a7c984335eacbc00d";
    const EXPECTED_LISTENER_MAC_2: &str =
        "b472ee9cfc969e63c0ec65e2840ecdcb70c861d37c753c5412952ae1f3799c95";
}
