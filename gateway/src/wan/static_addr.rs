//! Static WAN addressing (`[wan] mode = "static"`): gatewayd sets the WAN's address and
//! default route itself, over rtnetlink, instead of running udhcpc.
//!
//! [`Plan`] is the pure part: the config in, the address to hold, the addresses to drop and
//! the [`WanStatus`] to publish out. [`run`] does the netlink I/O: link up, every other IPv4
//! address on the link removed, the address added, the default route replaced by one via the
//! gateway; then the status is published like a DHCP lease (NAT takes the address, the DNS
//! forwarder the resolvers). It is applied again when the cable comes back, and retried after
//! a delay when it fails: a router that cannot set its WAN still serves its LAN.

use super::WanStatus;
use crate::config::StaticWan;
use crate::context::Context;
use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::AddressFamily;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Wait before trying again after a failure (no such link yet, netlink refused).
const RETRY: Duration = Duration::from_secs(5);

/// What the WAN should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
}

impl From<StaticWan> for Plan {
    fn from(s: StaticWan) -> Self {
        Self {
            address: s.address,
            prefix_len: s.prefix_len,
            gateway: s.gateway,
            dns: s.dns,
        }
    }
}

impl std::fmt::Display for Plan {
    /// "203.0.113.2/24 via 203.0.113.1"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} via {}",
            self.address, self.prefix_len, self.gateway
        )
    }
}

impl Plan {
    /// The plan for `[wan]`, if its mode is "static" (validation guarantees the keys).
    pub fn from_config(wan: &crate::config::Wan) -> Option<Plan> {
        wan.static_addressing().map(Plan::from)
    }

    /// Whether the link already holds our address with our prefix.
    pub fn holds(&self, present: &[(Ipv4Addr, u8)]) -> bool {
        present.contains(&(self.address, self.prefix_len))
    }

    /// The IPv4 addresses on the link that must go: all but ours (ours with another prefix
    /// goes too, and comes back with the right one).
    pub fn stale(&self, present: &[(Ipv4Addr, u8)]) -> Vec<(Ipv4Addr, u8)> {
        present
            .iter()
            .copied()
            .filter(|p| *p != (self.address, self.prefix_len))
            .collect()
    }

    /// Publishes the plan as the WAN's state, as a DHCP lease would be: `since` moves only
    /// when the address changes; the carrier is the link watch's business.
    pub fn publish(&self, s: &mut WanStatus, now: u64) {
        if s.address != Some(self.address) || s.since.is_none() {
            s.since = Some(now);
        }
        s.address = Some(self.address);
        s.prefix_len = self.prefix_len;
        s.gateway = Some(self.gateway);
        s.dns = self.dns.clone();
    }
}

/// Configures the WAN from `[wan]`'s static settings, then again each time `restart` is
/// notified (the cable came back). Failures are logged and retried; it never returns.
pub async fn run(
    ctx: Context,
    tx: watch::Sender<WanStatus>,
    restart: Arc<Notify>,
) -> anyhow::Result<()> {
    let iface = ctx.config.wan.interface.clone();
    let Some(plan) = Plan::from_config(&ctx.config.wan) else {
        // Not reachable with a validated config; leave the WAN alone rather than stop the LAN.
        eprintln!(
            "wan: mode = \"static\" without wan.address and wan.gateway; {iface} left unconfigured"
        );
        return std::future::pending().await;
    };
    loop {
        match apply(&iface, &plan).await {
            Ok(()) => {
                eprintln!("wan: static {plan} on {iface}");
                tx.send_modify(|s| plan.publish(s, crate::clock::unix_now()));
                restart.notified().await;
                eprintln!("wan: re-applying static {plan} on {iface}");
            }
            Err(e) => {
                eprintln!(
                    "wan: static {plan} on {iface} failed: {e:#}; retrying in {} s",
                    RETRY.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = restart.notified() => {}
                }
            }
        }
    }
}

/// One pass of the netlink work, on a connection of its own.
async fn apply(iface: &str, plan: &Plan) -> anyhow::Result<()> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let conn = tokio::spawn(conn);
    let result = apply_with(&handle, iface, plan).await;
    conn.abort();
    result
}

async fn apply_with(handle: &rtnetlink::Handle, iface: &str, plan: &Plan) -> anyhow::Result<()> {
    let mut links = handle.link().get().match_name(iface.to_string()).execute();
    let link = links
        .try_next()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no link {iface}"))?;
    let index = link.header.index;
    handle.link().set(index).up().execute().await?;

    let mut present: Vec<(Ipv4Addr, u8, AddressMessage)> = Vec::new();
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs.try_next().await? {
        if let Some(ip) = ipv4_of(&msg) {
            present.push((ip, msg.header.prefix_len, msg));
        }
    }
    let seen: Vec<(Ipv4Addr, u8)> = present.iter().map(|(a, l, _)| (*a, *l)).collect();
    let stale = plan.stale(&seen);
    for (ip, len, msg) in present {
        if stale.contains(&(ip, len)) {
            eprintln!("wan: removing {ip}/{len} from {iface}");
            handle.address().del(msg).execute().await?;
        }
    }
    if !plan.holds(&seen) {
        handle
            .address()
            .add(index, IpAddr::V4(plan.address), plan.prefix_len)
            .execute()
            .await?;
    }
    handle
        .route()
        .add()
        .v4()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(plan.gateway)
        .output_interface(index)
        .replace()
        .execute()
        .await?;
    Ok(())
}

/// The IPv4 address of an address message (IFA_LOCAL, else IFA_ADDRESS).
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let pick = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) if want_local => Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) if !want_local => Some(*ip),
            _ => None,
        })
    };
    pick(true).or_else(|| pick(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn wan(text: &str) -> config::Wan {
        config::parse(text).unwrap().wan
    }

    fn plan() -> Plan {
        Plan::from_config(&wan(
            "[wan]\nmode = \"static\"\naddress = \"203.0.113.2\"\ngateway = \"203.0.113.1\"\ndns = [\"198.51.100.53\"]\n",
        ))
        .unwrap()
    }

    #[test]
    fn plan_from_config() {
        let p = plan();
        assert_eq!(
            p,
            Plan {
                address: Ipv4Addr::new(203, 0, 113, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(203, 0, 113, 1),
                dns: vec![Ipv4Addr::new(198, 51, 100, 53)],
            }
        );
        assert_eq!(p.to_string(), "203.0.113.2/24 via 203.0.113.1");
        assert_eq!(Plan::from_config(&wan("")), None);
        let p = Plan::from_config(&wan(
            "[wan]\nmode = \"static\"\naddress = \"100.64.0.2\"\nprefix_len = 30\ngateway = \"100.64.0.1\"\n",
        ))
        .unwrap();
        assert_eq!(
            (p.to_string(), p.dns.len()),
            ("100.64.0.2/30 via 100.64.0.1".into(), 0)
        );
    }

    #[test]
    fn other_addresses_go_ours_stays() {
        let p = plan();
        let ours = (Ipv4Addr::new(203, 0, 113, 2), 24);
        let old_lease = (Ipv4Addr::new(10, 99, 0, 120), 24);
        let ours_wrong_len = (Ipv4Addr::new(203, 0, 113, 2), 16);
        assert!(!p.holds(&[]));
        assert!(p.stale(&[]).is_empty());
        assert!(p.holds(&[old_lease, ours]));
        assert_eq!(p.stale(&[old_lease, ours]), [old_lease]);
        assert!(!p.holds(&[ours_wrong_len]));
        assert_eq!(
            p.stale(&[ours_wrong_len, old_lease]),
            [ours_wrong_len, old_lease]
        );
    }

    #[test]
    fn published_like_a_lease() {
        let p = plan();
        let mut s = WanStatus {
            interface: "wan".into(),
            carrier: Some(true),
            ..Default::default()
        };
        p.publish(&mut s, 1000);
        assert_eq!(
            s,
            WanStatus {
                interface: "wan".into(),
                address: Some(Ipv4Addr::new(203, 0, 113, 2)),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(203, 0, 113, 1)),
                dns: vec![Ipv4Addr::new(198, 51, 100, 53)],
                since: Some(1000),
                carrier: Some(true),
            }
        );
        assert_eq!(s.describe(), "203.0.113.2/24");
        // Applied again (cable back): the address has been held since the first time.
        p.publish(&mut s, 2000);
        assert_eq!(s.since, Some(1000));
        // A different address before (an old lease): a new `since`.
        s.address = Some(Ipv4Addr::new(10, 99, 0, 120));
        p.publish(&mut s, 3000);
        assert_eq!((s.address, s.since), (Some(p.address), Some(3000)));
    }

    #[test]
    fn reads_ipv4_of_address_messages() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
            AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        ];
        assert_eq!(ipv4_of(&m), Some(Ipv4Addr::new(10, 0, 0, 2)));
        m.attributes.remove(1);
        assert_eq!(ipv4_of(&m), Some(Ipv4Addr::new(10, 0, 0, 9)));
        m.header.family = AddressFamily::Inet6;
        assert_eq!(ipv4_of(&m), None);
    }
}
