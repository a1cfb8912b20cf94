//! Starting a session by invite code: the pairing before it, on either side, and
//! what it tells the person. The session that follows is the pinned one.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::dialer::Refusal;
use crate::fingerprint::Fingerprint;
use crate::identity::Identity;
use crate::known_peers::KnownPeers;
use crate::pairing::{self, InviteCode, InviteError, InviteReport, JoinError, Paired};
use crate::sanitize::for_terminal;
use crate::target::Target;
use crate::tls::PinMismatch;
use crate::trust;
use crate::ui;

/// How long an invite code works.
pub const INVITE_LIFETIME: Duration = pairing::INVITE_LIFETIME;

/// Prints a fresh code and the joiner's command, which asks for the code rather
/// than taking it as an argument, and waits for the joiner. Returns where to dial
/// it and its pin.
pub async fn invite(
    listener: &TcpListener,
    identity: &Identity,
    known_peers: &Path,
    verbose: bool,
) -> Result<(Target, Fingerprint)> {
    let code = InviteCode::generate()?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let share = pairing::address_to_share(local);
    ui::say(&format!("Invite code: {code}"));
    ui::status(&format!(
        "Give the other person this command; the code works once, for the next {} minutes:",
        INVITE_LIFETIME.as_secs() / 60
    ));
    // Not the code: a command line is readable by every user of the joiner's machine.
    ui::status(&format!("  chat --join --connect {share}"));
    ui::status("  (then type the code at its prompt)");
    if share.ip().is_loopback() && local.ip().is_unspecified() {
        ui::status(
            "(No route out of this machine was found, so that is a loopback address: for \
             another machine, give an address of this one that it can reach.)",
        );
    }
    let report = |report: InviteReport| match report {
        InviteReport::WrongCode { addr, left } => ui::status(&format!(
            "Someone at {} tried a wrong invite code; {left} {} left",
            addr,
            if left == 1 { "try" } else { "tries" }
        )),
        InviteReport::Dropped { addr, reason } if verbose => ui::status(&format!(
            "Pairing connection from {} dropped: {reason}",
            addr
        )),
        InviteReport::Dropped { .. } => {}
    };
    let paired =
        pairing::wait_for_joiner(listener, identity, code, INVITE_LIFETIME, report).await?;
    announce(&paired, known_peers)?;
    let target = paired
        .addr
        .to_string()
        .parse()
        .context("the joiner's address")?;
    Ok((target, paired.fingerprint))
}

/// Pairs with the inviter at `target` by `code`; its pin.
pub async fn join(
    target: &Target,
    identity: &Identity,
    known_peers: &Path,
    code: &InviteCode,
    our_port: u16,
    retry_for: Duration,
) -> Result<Fingerprint> {
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
    Ok(paired.fingerprint)
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
            target: paired.addr.to_string(),
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
    err.is::<NameTaken>()
}
