//! Whether a new endpoint is ready to be found: on its home relay, or with no relay
//! it could reach, as on a network without internet, where only the local network
//! (mDNS) finds it and waiting longer for a relay would only delay everything.

use std::net::IpAddr;
use std::time::Duration;

use iroh::dns::DnsResolver;
use iroh::endpoint::RelayStatus;
use iroh::{Endpoint, RelayUrl, Watcher as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a new endpoint waits to reach its home relay before going on without.
pub const ONLINE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an endpoint may go without choosing a home relay before we take it that
/// none answers: iroh's probes give each relay 3 s. Going on early costs nothing but
/// a first dial that may miss: iroh keeps trying to reach its relays, and every dial
/// of ours is tried again.
const CHOOSING_TIMEOUT: Duration = Duration::from_secs(3);

/// How long looking up a relay's name may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the wait for a relay found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// The endpoint is connected to its home relay, or still connecting to one that
    /// answered when [`ONLINE_TIMEOUT`] ran out.
    Answers,
    /// No relay answers: only the local network can find the endpoint for now.
    /// iroh keeps trying them in the background.
    NoneAnswers,
}

/// Waits until `endpoint`, opened at `opened`, can be found: once it is connected to
/// a home relay, or it is clear that no relay in `relays` (those it knows) answers,
/// and at most until [`ONLINE_TIMEOUT`] after `opened`. Called again later, it does
/// not wait again for what is settled: the deadlines count from `opened`.
pub async fn findable(endpoint: &Endpoint, relays: &[RelayUrl], opened: Instant) -> Relay {
    let settled = async {
        match tokio::time::timeout_at(
            opened + ONLINE_TIMEOUT,
            online_or_unreachable(endpoint, opened),
        )
        .await
        {
            Ok(relay) => relay,
            Err(_still_connecting) => Relay::Answers,
        }
    };
    tokio::select! {
        // Settled already (called again): nothing to ask the relays.
        biased;
        relay = settled => relay,
        () = every_relay_refuses(endpoint, relays) => Relay::NoneAnswers,
    }
}

/// Whether `endpoint` is connected to a home relay now.
pub fn on_a_relay(endpoint: &Endpoint) -> bool {
    (endpoint.home_relay_status().get().iter()).any(RelayStatus::is_connected)
}

/// Returns once `endpoint` is connected to a home relay, once every home relay it
/// has chosen has failed, or once it has chosen none within [`CHOOSING_TIMEOUT`] of
/// `opened`.
async fn online_or_unreachable(endpoint: &Endpoint, opened: Instant) -> Relay {
    let choose_by = opened + CHOOSING_TIMEOUT;
    let mut statuses = endpoint.home_relay_status();
    let mut now = statuses.get();
    loop {
        if now.iter().any(RelayStatus::is_connected) {
            return Relay::Answers;
        }
        if !now.is_empty() && now.iter().all(|relay| relay.last_error().is_some()) {
            return Relay::NoneAnswers;
        }
        let next = match now.is_empty() {
            true => match tokio::time::timeout_at(choose_by, statuses.updated()).await {
                Ok(next) => next,
                Err(_none_chosen) => return Relay::NoneAnswers,
            },
            false => statuses.updated().await,
        };
        match next {
            Ok(next) => now = next,
            Err(_closed) => return Relay::NoneAnswers,
        }
    }
}

/// Returns once every relay in `relays` has refused a connection (or has no address),
/// as a relay on a network without internet does at once; never if one answers or
/// stays silent, which only iroh's own probes can settle. iroh reaches its relays
/// over TCP, so a refused TCP connection is a relay iroh cannot reach either.
async fn every_relay_refuses(endpoint: &Endpoint, relays: &[RelayUrl]) {
    let Ok(resolver) = endpoint.dns_resolver() else {
        return std::future::pending().await;
    };
    let mut asking = JoinSet::new();
    for relay in relays {
        asking.spawn(refuses(resolver.clone(), relay.clone()));
    }
    while let Some(refused) = asking.join_next().await {
        if !matches!(refused, Ok(true)) {
            // One answers: the others need not be asked.
            drop(asking);
            return std::future::pending().await;
        }
    }
}

/// Whether `relay` refuses a TCP connection on every address its name has, or its
/// name has none.
async fn refuses(resolver: DnsResolver, relay: RelayUrl) -> bool {
    let (Some(host), Some(port)) = (relay.host_str(), relay.port_or_known_default()) else {
        return true;
    };
    let addresses: Vec<IpAddr> = match host.trim_matches(['[', ']']).parse() {
        Ok(address) => vec![address],
        Err(_name) => match resolver.lookup_ipv4_ipv6(host, LOOKUP_TIMEOUT).await {
            Ok(addresses) => addresses.collect(),
            Err(_no_address) => return true,
        },
    };
    for address in addresses {
        if TcpStream::connect((address, port)).await.is_ok() {
            return false;
        }
    }
    true
}
