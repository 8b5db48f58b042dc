//! WAN uplink state: what the DHCP client learned (or the static settings applied), shared
//! through a watch channel.

pub mod link;
pub mod static_addr;
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
    /// Unix time the lease was obtained (static: the address was first applied).
    pub since: Option<u64>,
    /// Whether the WAN port has a carrier (a cable to a live device); None: not known.
    pub carrier: Option<bool>,
}

impl WanStatus {
    /// For the status page: "no cable", the address, or "no address".
    pub fn describe(&self) -> String {
        match (self.carrier, self.address) {
            (Some(false), Some(a)) => format!("no cable (last address {a}/{})", self.prefix_len),
            (Some(false), None) => "no cable".into(),
            (_, Some(a)) => format!("{a}/{}", self.prefix_len),
            (_, None) => "no address".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_cable_and_address() {
        let mut s = WanStatus::default();
        assert_eq!(s.describe(), "no address");
        s.carrier = Some(false);
        assert_eq!(s.describe(), "no cable");
        s.address = Some(Ipv4Addr::new(10, 99, 0, 120));
        s.prefix_len = 24;
        assert_eq!(s.describe(), "no cable (last address 10.99.0.120/24)");
        s.carrier = Some(true);
        assert_eq!(s.describe(), "10.99.0.120/24");
    }
}
