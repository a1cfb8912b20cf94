//! Starting a session by invite code: the pairing before it, on either side, and
//! what it tells the person. The session that follows is the pinned one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::identity::Identity;
use crate::identity::known_peers::KnownPeers;
use crate::identity::trust;
use crate::link::dialer::Refusal;
use crate::link::iroh as transport;
use crate::link::online;
use crate::link::rendezvous::rendezvous_key;
use crate::link::target::Target;
use crate::link::tls::PinMismatch;
use crate::pairing::inviter::Door;
use crate::pairing::{self, InviteCode, InviteError, InviteReport, JoinError, Paired};
use crate::ui;
use crate::ui::sanitize::for_terminal;

/// How long an invite code works.
pub const INVITE_LIFETIME: Duration = pairing::INVITE_LIFETIME;

/// How many codes one `chat --invite` offers before it gives up.
pub const CODES_PER_RUN: u32 = pairing::CODES_PER_RUN;

/// Where an invite waits for its joiner.
pub enum Rendezvous<'a> {
    /// On our TCP listener (`--listen`): pairing version 1, the joiner dials the
    /// address we print.
    Tcp(&'a TcpListener),
    /// At the code's own iroh endpoint, through the relays: pairing version 2, and
    /// `ours` is the long-term endpoint the session will use.
    Iroh {
        settings: &'a transport::Settings,
        ours: &'a transport::Node,
    },
}

/// Prints a code and the joiner's command, which asks for the code rather than
/// taking it as an argument, and waits for the joiner. A code that dies without a
/// pairing (of wrong tries, or a joiner that broke off after proving it) is
/// followed by a fresh one, up to [`CODES_PER_RUN`] in all: a stranger's junk
/// guesses do not end the invite at once. Returns the joiner as paired.
pub async fn invite(
    rendezvous: Rendezvous<'_>,
    identity: &Identity,
    known_peers: &Path,
    verbose: bool,
) -> Result<Paired> {
    let mut report = |report: InviteReport| match report {
        InviteReport::WrongCode { from, left } => ui::status(&format!(
            "Someone at {from} tried a wrong invite code; {}",
            tries_left(left)
        )),
        InviteReport::BrokeOff { from, left } => ui::status(&format!(
            "Someone at {from} broke off before proving it knew the invite code, which counts \
             as a wrong try; {}",
            tries_left(left)
        )),
        InviteReport::Dropped { from, reason } if verbose => match from {
            Some(from) => ui::status(&format!("Pairing connection from {from} dropped: {reason}")),
            None => ui::status(&format!("A pairing connection dropped: {reason}")),
        },
        InviteReport::Dropped { .. } => {}
        InviteReport::CrowdBegan => ui::status(
            "Strangers are crowding the invite's port; their connections are dropped to keep \
             room for the joiner, who may need a few more tries",
        ),
        InviteReport::Crowded { dropped, window } => ui::status(&format!(
            "… and {dropped} more connections to the invite's port dropped in the last {} s",
            window.as_secs().max(1)
        )),
    };
    let mut offered = 1;
    let paired = loop {
        let code = InviteCode::generate()?;
        let waited = match &rendezvous {
            Rendezvous::Tcp(listener) => {
                let local = listener
                    .local_addr()
                    .context("cannot read the listening address")?;
                show_code(&code, &JoinCommand::Tcp(local));
                let door = Door::Tcp(listener);
                pairing::wait_for_joiner(&door, identity, code, INVITE_LIFETIME, &mut report).await
            }
            Rendezvous::Iroh { settings, ours } => {
                let opened = Instant::now();
                let endpoint = transport::open_endpoint(rendezvous_key(&code), settings, true)
                    .await
                    .context("cannot open the invite code's endpoint")?;
                // The joiner dials the code's endpoint once it has the code, and after
                // the pairing its session meets our long-term one: both wait for a
                // relay, together, and no longer than it takes to see that none answers.
                let relays = settings.relay_urls();
                let (relay, _) = tokio::join!(
                    online::findable(&endpoint, &relays, opened),
                    ours.findable()
                );
                show_code(&code, &JoinCommand::Iroh(settings));
                if relay == online::Relay::NoneAnswers {
                    ui::status(no_relay_answers(settings.mdns));
                }
                let door = Door::Iroh {
                    rendezvous: &endpoint,
                    ours: ours.endpoint.id(),
                    lingering: &ours.lingering,
                };
                let waited =
                    pairing::wait_for_joiner(&door, identity, code, INVITE_LIFETIME, &mut report)
                        .await;
                // The code's endpoint is done with, once the joiner has read our last words.
                // Closing it waits for its connections to drain (about a second), which
                // the session need not wait for.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ours.lingering.finished()).await;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.close()).await;
                });
                waited
            }
        };
        let died = match waited {
            Ok(paired) => break paired,
            Err(died @ (InviteError::TooManyWrongGuesses | InviteError::JoinerVanished(_))) => died,
            Err(err) => return Err(err.into()),
        };
        if offered >= CODES_PER_RUN {
            return Err(OutOfCodes(died).into());
        }
        offered += 1;
        ui::status(&format!(
            "Nobody paired: {died}. Here is fresh code {offered} of at most {CODES_PER_RUN} in \
             this run (when the last one dies, chat gives up):"
        ));
    };
    announce(&paired, known_peers)?;
    Ok(paired)
}

/// How long closing the code's endpoint may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the joiner needs besides the code.
enum JoinCommand<'a> {
    /// Our listening address (`--listen`).
    Tcp(SocketAddr),
    /// Nothing, unless we use relays of our own: then the joiner must use one of them.
    Iroh(&'a transport::Settings),
}

/// Prints `code` and the command to give the joiner.
fn show_code(code: &InviteCode, command: &JoinCommand<'_>) {
    ui::say(&format!("Invite code: {code}"));
    ui::status(&format!(
        "Give the other person this command; the code works once, for the next {} minutes:",
        INVITE_LIFETIME.as_secs() / 60
    ));
    // Not the code: a command line is readable by every user of the joiner's machine.
    match command {
        JoinCommand::Tcp(local) => {
            let share = pairing::address_to_share(*local);
            ui::status(&format!("  chat --join --connect {share}"));
            ui::status("  (then type the code at its prompt)");
            if share.ip().is_loopback() && local.ip().is_unspecified() {
                ui::status(
                    "(No route out of this machine was found, so that is a loopback address: for \
                     another machine, give an address of this one that it can reach.)",
                );
            }
        }
        JoinCommand::Iroh(settings) => {
            let relays = match &settings.relays {
                transport::Relays::Own(urls) => urls
                    .iter()
                    .map(|url| format!(" --relay {url}"))
                    .collect::<String>(),
                transport::Relays::Public => String::new(),
            };
            ui::status(&format!("  chat --join{relays}"));
            ui::status("  (then type the code at its prompt)");
        }
    }
}

/// What the inviter is told when no relay answers: who can use the code now.
fn no_relay_answers(mdns: bool) -> &'static str {
    match mdns {
        true => {
            "No relay answers, so for now the code works only on this network (chat keeps \
             trying the relays)"
        }
        false => {
            "No relay answers, and --no-mdns keeps the code off this network: nobody can use \
             it until a relay answers (chat keeps trying)"
        }
    }
}

/// "2 tries left", "1 try left", "no tries left".
fn tries_left(left: u32) -> String {
    match left {
        0 => "no tries left".to_owned(),
        1 => "1 try left".to_owned(),
        left => format!("{left} tries left"),
    }
}

/// Pairs with the inviter at `target` by `code`, as the joiner's session listens on
/// `our_port`; the inviter as paired.
pub async fn join(
    target: &Target,
    identity: &Identity,
    known_peers: &Path,
    code: &InviteCode,
    our_port: u16,
    retry_for: Duration,
) -> Result<Paired> {
    // Waiting longer than a code lives cannot help.
    let retry_for = retry_for.min(INVITE_LIFETIME);
    let waiting = |reason: &str| {
        ui::status(&format!(
            "Waiting for the inviter at {target} ({reason}); trying for up to {} s",
            retry_for.as_secs()
        ))
    };
    let paired =
        pairing::join_inviter(target, identity, code, our_port, retry_for, waiting).await?;
    announce(&paired, known_peers)?;
    Ok(paired)
}

/// Pairs by `code` with the inviter at the code's iroh endpoint, dialled from our
/// long-term `endpoint` through every relay we know; the inviter as paired.
pub async fn join_over_iroh(
    ours: &transport::Node,
    identity: &Identity,
    known_peers: &Path,
    code: &InviteCode,
    retry_for: Duration,
) -> Result<Paired> {
    let retry_for = retry_for.min(INVITE_LIFETIME);
    // After the pairing, the inviter's session may dial ours through our relay.
    ours.findable().await;
    let waiting = |reason: &str| {
        ui::status(&format!(
            "Waiting for the inviter: nobody answers for this code yet, so check it if this \
             lasts ({reason}); trying for up to {} s",
            retry_for.as_secs()
        ))
    };
    let paired = pairing::joiner::join_over_iroh(
        &ours.endpoint,
        &ours.relays,
        &ours.lingering,
        identity,
        code,
        retry_for,
        waiting,
    )
    .await?;
    announce(&paired, known_peers)?;
    Ok(paired)
}

/// Says whom we paired with, unless its name is saved in known peers with another
/// certificate: then whoever had the code is not the peer of that name, and the
/// pairing is refused as loudly as a changed certificate.
fn announce(paired: &Paired, known_peers: &Path) -> Result<()> {
    let peers = KnownPeers::load(known_peers)?;
    if let Some(entry) = peers
        .find(&paired.name)
        .filter(|entry| entry.peer.fingerprint != paired.fingerprint)
    {
        let refusal = Refusal {
            reason: format!("{} is saved with another certificate", entry.peer.name),
            mismatch: Some(PinMismatch {
                expected: entry.peer.fingerprint,
                presented: paired.fingerprint,
            }),
            target: paired.session.to_string(),
        };
        let warning = trust::changed_certificate(known_peers, &entry, &refusal)
            .unwrap_or_else(|| refusal.reason.clone());
        return Err(NameTaken(warning).into());
    }
    ui::status(&format!(
        "Paired with {} ({}) by the invite code",
        for_terminal(&paired.name),
        paired.fingerprint.abbreviated()
    ));
    Ok(())
}

/// The last code a run offers died without a pairing.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}, and it was the last of {CODES_PER_RUN} codes in this run; run chat --invite again for a new one"
)]
pub struct OutOfCodes(InviteError);

/// A pairing whose peer claims the name of another known peer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NameTaken(String);

/// Whether `err` is a pairing that failed because of the code (wrong, used,
/// expired, out of tries) or the peer (exit status 3), rather than the network or
/// the machine.
pub fn refused(err: &anyhow::Error) -> bool {
    if let Some(join) = err.downcast_ref::<JoinError>() {
        return !matches!(
            join,
            JoinError::Unreachable { .. } | JoinError::Broken { .. } | JoinError::Tls(_)
        );
    }
    if let Some(invite) = err.downcast_ref::<InviteError>() {
        return !matches!(invite, InviteError::Tls(_));
    }
    err.is::<NameTaken>() || err.is::<OutOfCodes>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_how_many_tries_are_left() {
        assert_eq!(tries_left(2), "2 tries left");
        assert_eq!(tries_left(1), "1 try left");
        assert_eq!(tries_left(0), "no tries left");
    }
}
