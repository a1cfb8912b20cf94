//! Finding our endpoints on the local network over mDNS, so that two machines on one
//! network meet without a relay: each endpoint announces its ID and IP addresses, and
//! looks up the endpoint it dials (PROTOCOL.md §14, "On one network").

use iroh_mdns_address_lookup::{MdnsAddressLookup, MdnsAddressLookupBuilder};

/// The DNS-SD service our endpoints announce, as `_chat-iroh._udp.local.`: only
/// `chat` answers to it, so other iroh programs on the network neither see our
/// endpoints nor crowd our lookups with theirs.
pub const SERVICE: &str = "chat-iroh";

/// What an endpoint adds to be found, and to find others, on the local network. It
/// announces IP addresses only: a relay's URL tells a neighbour nothing it needs.
pub fn lookup() -> MdnsAddressLookupBuilder {
    MdnsAddressLookup::builder()
        .service_name(SERVICE)
        .addr_filter(iroh::address_lookup::AddrFilter::ip_only())
}
