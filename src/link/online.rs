//! Whether a new endpoint is ready to be found: on its home relay, or with no relay
//! it could reach, as on a network without internet, where only the local network
//! (mDNS) finds it and waiting longer for a relay would only delay everything.

use std::time::Duration;

use iroh::endpoint::RelayStatus;
use iroh::{Endpoint, Watcher as _};
use tokio::time::Instant;

/// How long an endpoint may go without choosing a home relay before we take it that
/// none answers: iroh's probes give each relay 3 s. Going on early costs nothing but
/// a first dial that may miss: iroh keeps trying to reach its relays, and every dial
/// of ours is tried again.
const CHOOSING_TIMEOUT: Duration = Duration::from_secs(3);

/// Returns once `endpoint` is connected to a home relay, once every home relay it
/// has chosen has failed, or once it has chosen none within [`CHOOSING_TIMEOUT`].
/// The caller bounds the rest of the wait.
pub async fn online_or_unreachable(endpoint: &Endpoint) {
    let choose_by = Instant::now() + CHOOSING_TIMEOUT;
    let mut statuses = endpoint.home_relay_status();
    let mut now = statuses.get();
    while !settled(&now) {
        let next = match now.is_empty() {
            true => match tokio::time::timeout_at(choose_by, statuses.updated()).await {
                Ok(next) => next,
                Err(_none_chosen) => return,
            },
            false => statuses.updated().await,
        };
        match next {
            Ok(next) => now = next,
            Err(_closed) => return,
        }
    }
}

/// Connected to one, or failed on every one chosen.
fn settled(relays: &[RelayStatus]) -> bool {
    relays.iter().any(RelayStatus::is_connected)
        || (!relays.is_empty() && relays.iter().all(|relay| relay.last_error().is_some()))
}
