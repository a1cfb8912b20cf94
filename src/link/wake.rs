//! The wake-up call over iroh (PROTOCOL.md, "The wake-up call"): a session's
//! accepting side, freshly started, tells the dialing side to dial now. Without it a
//! dialer that still holds its connection to the accepting side's previous run would
//! wait for iroh's idle timeouts to find that connection dead.
//!
//! A call can be lost (the dialer out of reach for a while, asleep, between
//! networks): it is made again, less and less often, until the dialer's connection
//! comes.
//!
//! The call is a QUIC connection for its own ALPN that carries nothing: iroh has
//! authenticated the caller's endpoint ID by the time it is taken, so only the pinned
//! peer's endpoint can make us dial. A call only makes us dial: the connection it
//! starts is authenticated by the pinned TLS like any other, and replaces the old one
//! only then.

use std::time::Duration;

use iroh::endpoint::{Connection, ConnectionError, VarInt};
use iroh::{Endpoint, EndpointId};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::iroh::{DIAL_TIMEOUT, IrohError, Node, REFUSED};

/// The ALPN of a wake-up call.
pub const WAKE_ALPN: &[u8] = b"chat-iroh-wake/1";

/// How long a freshly started accepting side waits for the dialer's own connection
/// before it calls: a dialer that starts at the same time dials without being told.
pub const CALL_AFTER: Duration = Duration::from_secs(1);

/// The wait after the first call before the next, while the dialer's connection has
/// not come: a lost call (the dialer was out of reach for a while) is made again.
const FIRST_REPEAT_AFTER: Duration = Duration::from_secs(2);

/// The longest wait between calls: each wait doubles up to it, so that a dialer that
/// is not running costs its relay one small handshake every half minute or so.
const LONGEST_REPEAT_AFTER: Duration = Duration::from_secs(16);

/// The waits of a freshly started accepting side before each of its calls: the
/// first from the session's start, each other from the end of the call before.
/// 1 s, 2 s, 4 s, 8 s, then 16 s for good.
pub fn waits_between_calls() -> impl Iterator<Item = Duration> {
    let repeats = std::iter::successors(Some(FIRST_REPEAT_AFTER), |wait| {
        Some((*wait * 2).min(LONGEST_REPEAT_AFTER))
    });
    std::iter::once(CALL_AFTER).chain(repeats)
}

/// How long a caller waits for the call to be answered once connected.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The QUIC close code of a call that was taken: the callee dials.
const DIALING: VarInt = VarInt::from_u32(0);

/// The QUIC close code of a dialer's connection to the peer's previous run, which it
/// closes when the peer calls.
pub const STALE: VarInt = VarInt::from_u32(2);

/// Calls `peer` from `node`'s endpoint and waits until the peer has taken the
/// call (it closes the connection), or [`ANSWER_TIMEOUT`] has passed.
pub async fn call(node: &Node, peer: EndpointId) -> Result<(), IrohError> {
    let failed = |reason: String| IrohError::Connect {
        peer: peer.fmt_short().to_string(),
        reason,
    };
    let calling = super::iroh::connect_to(&node.endpoint, peer, &node.relays, WAKE_ALPN);
    let connection = tokio::time::timeout(DIAL_TIMEOUT, calling)
        .await
        .map_err(|_| failed(format!("no answer within {} s", DIAL_TIMEOUT.as_secs())))?
        .map_err(|err| failed(format!("{err:#}")))?;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, connection.closed()).await;
    match answer {
        Ok(ConnectionError::ApplicationClosed(close)) if close.error_code == DIALING => Ok(()),
        Ok(other) => Err(failed(format!("the call was not taken: {other}"))),
        Err(_) => Err(failed(format!(
            "the call was not taken within {} s",
            ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

/// The calls a dialing side has taken from its peer. Dropping it stops taking them.
#[derive(Debug)]
pub struct WakeUps {
    taken: watch::Receiver<u64>,
    answering: JoinHandle<()>,
}

impl WakeUps {
    /// Takes calls at `endpoint` from `peer`, and turns away every other endpoint's.
    /// `endpoint` must offer [`WAKE_ALPN`] (see [`super::iroh::Node::role_with`]).
    pub fn answer(endpoint: Endpoint, peer: EndpointId) -> WakeUps {
        let (taken_tx, taken) = watch::channel(0);
        let answering = tokio::spawn(answer(endpoint, peer, taken_tx));
        WakeUps { taken, answering }
    }

    /// Waits for a call not yet seen; never returns once no call can come.
    pub async fn next(&mut self) {
        if self.taken.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Forgets the calls taken so far: the connection just made answers them.
    pub fn seen(&mut self) {
        self.taken.mark_unchanged();
    }
}

impl Drop for WakeUps {
    fn drop(&mut self) {
        self.answering.abort();
    }
}

/// Accepts connections until the endpoint closes, each finished on a task of its
/// own so that a slow stranger delays no call.
async fn answer(endpoint: Endpoint, peer: EndpointId, taken: watch::Sender<u64>) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                handshakes.spawn(async move { incoming.await.ok() });
            }
            Some(done) = handshakes.join_next() => {
                if let Ok(Some(connection)) = done {
                    take(&connection, peer, &taken);
                }
            }
        }
    }
}

/// Takes one call: the pinned peer's is counted and closed with [`DIALING`], any
/// other endpoint's refused as the session's accept loop refuses it.
fn take(connection: &Connection, peer: EndpointId, taken: &watch::Sender<u64>) {
    if connection.remote_id() != peer || connection.alpn() != WAKE_ALPN {
        connection.close(REFUSED, b"not expected");
        return;
    }
    taken.send_modify(|calls| *calls += 1);
    connection.close(DIALING, b"dialing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_come_less_and_less_often_but_never_stop() {
        let waits: Vec<u64> = waits_between_calls()
            .take(8)
            .map(|wait| wait.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16, 16]);
    }
}
