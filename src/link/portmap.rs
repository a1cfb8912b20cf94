//! `--map-port`: asking the router to forward our listening port, with PCP and
//! UPnP-IGD, through `portmapper` (which renews the mapping while it lives).
//!
//! NAT-PMP is left off: portmapper's NAT-PMP release removes a UDP mapping, so a
//! TCP one would stay on the router for its whole two-hour lifetime after we exit.

use std::net::SocketAddrV4;
use std::num::NonZeroU16;
use std::time::Duration;

use thiserror::Error;

/// How long to wait for the router's answer before going on without a mapping.
pub const MAPPING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long exit waits for the request that removes the mapping to go out.
const RELEASE_TIME: Duration = Duration::from_millis(1500);

/// A mapping on the router, renewed until [`PortMapping::remove`].
pub struct PortMapping {
    client: portmapper::Client,
    pub external: SocketAddrV4,
}

/// Why no mapping was made; never fatal.
#[derive(Debug, Error)]
pub enum MapError {
    #[error("the listening port is 0")]
    NoPort,
    #[error("no router to ask: {0} (tried PCP and UPnP-IGD)")]
    NoGateway(String),
    #[error(
        "no mapping within {} s; tried PCP ({}) and UPnP-IGD ({})",
        MAPPING_TIMEOUT.as_secs(),
        answered(*.pcp),
        answered(*.upnp)
    )]
    Refused { pcp: bool, upnp: bool },
}

fn answered(available: bool) -> &'static str {
    if available {
        "the router answered but made no mapping"
    } else {
        "no answer"
    }
}

/// Asks the router to forward `port` (TCP) to us; the external address to give the
/// peer, or why there is none.
pub async fn map(port: u16) -> Result<PortMapping, MapError> {
    let port = NonZeroU16::new(port).ok_or(MapError::NoPort)?;
    let client = portmapper::Client::new(portmapper::Config {
        enable_upnp: true,
        enable_pcp: true,
        enable_nat_pmp: false,
        protocol: portmapper::Protocol::Tcp,
    });
    let mut external = client.watch_external_address();
    client.update_local_port(port);
    let probe = client.probe();
    let mapped = tokio::time::timeout(MAPPING_TIMEOUT, external.wait_for(Option::is_some)).await;
    if let Ok(Ok(address)) = mapped
        && let Some(external) = *address
    {
        return Ok(PortMapping { client, external });
    }
    client.deactivate();
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(Err(err))) => Err(MapError::NoGateway(err.to_string())),
        Ok(Ok(Ok(found))) => Err(MapError::Refused {
            pcp: found.pcp,
            upnp: found.upnp,
        }),
        _ => Err(MapError::Refused {
            pcp: false,
            upnp: false,
        }),
    }
}

impl PortMapping {
    /// Asks the router to remove the mapping, and waits briefly for that to go out.
    pub async fn remove(self) {
        self.client.deactivate();
        tokio::time::sleep(RELEASE_TIME).await;
    }
}
