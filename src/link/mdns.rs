//! Finding our endpoints on the local network over mDNS, so that two machines on one
//! network meet without a relay: each endpoint announces its ID and IP addresses, and
//! looks up the endpoint it dials (PROTOCOL.md §14, "On one network").

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use futures_core::Stream as _;
use iroh::{Endpoint, EndpointId};
use iroh_mdns_address_lookup::{MdnsAddressLookup, MdnsAddressLookupBuilder};

/// The DNS-SD service our endpoints announce, as `_chat-iroh._udp.local.`: only
/// `chat` answers to it, so other iroh programs on the network neither see our
/// endpoints nor crowd our lookups with theirs.
pub const SERVICE: &str = "chat-iroh";

/// How long a dial waits for what the local network already knows of its peer: an
/// answer from the lookup's own memory takes well under a millisecond.
const ALREADY_KNOWN_WITHIN: Duration = Duration::from_millis(50);

/// What an endpoint adds to be found, and to find others, on the local network. It
/// announces IP addresses only: a relay's URL tells a neighbour nothing it needs.
pub fn lookup() -> MdnsAddressLookupBuilder {
    MdnsAddressLookup::builder()
        .service_name(SERVICE)
        .addr_filter(iroh::address_lookup::AddrFilter::ip_only())
}

/// The IP addresses that `endpoint` has already heard `peer` announce on the local
/// network, if any. A dial that names them sends its first packet there too; one
/// that names only relays learns them from the lookup just after that packet has
/// gone, and sends there only when QUIC first sends again, about a second later.
pub async fn already_known(endpoint: &Endpoint, peer: EndpointId) -> Vec<SocketAddr> {
    tokio::time::timeout(ALREADY_KNOWN_WITHIN, found(endpoint, peer))
        .await
        .unwrap_or_default()
}

/// The IP addresses of `peer` on the local network, once the lookup finds it; never
/// if it does not, or there is no lookup (`--no-mdns`).
pub async fn found(endpoint: &Endpoint, peer: EndpointId) -> Vec<SocketAddr> {
    let Ok(lookups) = endpoint.address_lookup() else {
        return std::future::pending().await;
    };
    let mut answers = pin!(lookups.resolve(peer));
    while let Some(answer) = poll_fn(|cx| answers.as_mut().poll_next(cx)).await {
        let Ok(Ok(item)) = answer else {
            continue;
        };
        let addresses: Vec<SocketAddr> = item.into_endpoint_addr().ip_addrs().copied().collect();
        if !addresses.is_empty() {
            return addresses;
        }
    }
    std::future::pending().await
}
