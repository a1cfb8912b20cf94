//! Starting a session by invite code: the pairing before it, on either side, and
//! what it tells the person. The session that follows is the pinned one.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::fingerprint::Fingerprint;
use crate::identity::Identity;
use crate::pairing::{self, InviteCode, InviteError, InviteReport, JoinError, Paired};
use crate::sanitize::for_terminal;
use crate::target::Target;
use crate::ui;

/// How long an invite code works.
pub const INVITE_LIFETIME: Duration = pairing::INVITE_LIFETIME;

/// Prints a fresh code and the joiner's command, and waits for the joiner. Returns
/// where to dial it and its pin.
pub async fn invite(
    listener: &TcpListener,
    identity: &Identity,
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
    ui::status(&format!("  chat --join {code} --connect {share}"));
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
    announce(&paired);
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
    code: &InviteCode,
    our_port: u16,
    retry_for: Duration,
) -> Result<Fingerprint> {
    let paired = pairing::join_inviter(target, identity, code, our_port, retry_for).await?;
    announce(&paired);
    Ok(paired.fingerprint)
}

fn announce(paired: &Paired) {
    ui::status(&format!(
        "Paired with {} ({}) by the invite code",
        for_terminal(&paired.name),
        paired.fingerprint.abbreviated()
    ));
}

/// Whether `err` is a pairing that failed because of the code or the peer (exit
/// status 3), rather than the network or the machine.
pub fn refused(err: &anyhow::Error) -> bool {
    match (
        err.downcast_ref::<JoinError>(),
        err.downcast_ref::<InviteError>(),
    ) {
        (Some(JoinError::Unreachable { .. } | JoinError::Tls(_)), _) => false,
        (Some(_), _) => true,
        (_, Some(InviteError::TooManyWrongGuesses)) => true,
        _ => false,
    }
}
