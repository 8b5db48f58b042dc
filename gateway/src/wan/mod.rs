//! WAN uplink state: what the DHCP client learned, shared through a watch channel.

pub mod udhcpc;

use std::net::Ipv4Addr;

/// The WAN as gatewayd currently sees it. `address == None` means no lease yet.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WanStatus {
    pub interface: String,
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Unix time the lease was obtained.
    pub since: Option<u64>,
}
