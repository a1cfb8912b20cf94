//! What both sides of a pairing connection share: the binding read from TLS, and
//! who the peer turned out to be.

use crate::identity::common_name;
use crate::identity::fingerprint::Fingerprint;
use crate::link::Route;
use crate::link::tls;

use super::exchange::Binding;

/// The peer a pairing authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    pub fingerprint: Fingerprint,
    /// The common name in its certificate (untrusted text).
    pub name: String,
    /// Where its session is: over TCP, for the joiner the inviter's address it
    /// dialled and for the inviter the joiner's address with the port it announced;
    /// over iroh, its long-term endpoint, as the pairing confirmed it.
    pub session: Route,
}

/// The common name in the peer's certificate, as a session shows it.
pub fn peer_name(connection: &rustls::ConnectionCommon<impl Sized>) -> String {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(common_name)
        .unwrap_or_else(|| "peer".to_owned())
}

/// The pairing exchange's binding to the TLS connection it runs in.
pub fn binding_of(
    connection: &rustls::ConnectionCommon<impl Sized>,
    ours: Fingerprint,
    we_dialled: bool,
) -> Result<Binding, rustls::Error> {
    let binding = tls::binding(connection, ours, we_dialled)?;
    Ok(Binding {
        exporter: binding.exporter,
        dialer: binding.client,
        listener: binding.server,
    })
}
