//! WAN cable watch: carrier changes of the WAN link, from the kernel's link
//! notifications (rtnetlink, multicast group RTNLGRP_LINK).
//!
//! `Carrier` is the pure part: carrier observations in, what to do out. A lost
//! carrier is shown on the status page and in /api/status (`wan.carrier`); a
//! carrier that comes back restarts the DHCP client, so a new upstream (or the
//! old one after a reboot) hands out a lease at once rather than at udhcpc's
//! next renew. Every change is logged.

use super::WanStatus;
use futures_util::StreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlag, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{AsyncSocket, SocketAddr};
use tokio::sync::{watch, Notify};

/// What a carrier observation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    None,
    /// Cable out: show it.
    Lost,
    /// Cable in again: show it and restart DHCP (or re-apply the static address).
    Restored,
    /// The first observation with a cable: show it; DHCP is already running.
    Present,
}

/// The carrier state machine: unknown, then up or down.
#[derive(Debug, Default)]
pub struct Carrier {
    state: Option<bool>,
}

impl Carrier {
    pub fn observe(&mut self, carrier: bool) -> Action {
        let before = self.state.replace(carrier);
        match (before, carrier) {
            (Some(b), c) if b == c => Action::None,
            (None, true) => Action::Present,
            (_, false) => Action::Lost,
            (Some(false), true) => Action::Restored,
            (Some(true), true) => Action::None,
        }
    }

    pub fn state(&self) -> Option<bool> {
        self.state
    }
}

/// The carrier a link message reports, if it is about link `index`.
pub fn carrier_of(msg: &LinkMessage, index: u32) -> Option<bool> {
    if msg.header.index != index {
        return None;
    }
    let attr = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Carrier(c) => Some(*c != 0),
        _ => None,
    });
    // Old kernels send no IFLA_CARRIER; IFF_LOWER_UP says the same.
    Some(attr.unwrap_or_else(|| msg.header.flags.contains(&LinkFlag::LowerUp)))
}

const RTMGRP_LINK: u32 = 1;

/// What wakes when the cable comes back, and how the log names it ("restarting
/// DHCP", or re-applying a static address).
pub struct OnCableBack {
    pub restart: std::sync::Arc<Notify>,
    pub what: &'static str,
}

/// Watches link `iface` forever: updates `tx`'s `carrier` and wakes
/// `back.restart` when the cable comes back. Never returns an error: a router
/// without the watch still routes, so problems are logged and the watch retried.
pub async fn run(iface: String, tx: watch::Sender<WanStatus>, back: OnCableBack) {
    let mut carrier = Carrier::default();
    loop {
        if let Err(e) = watch_once(&iface, &tx, &back, &mut carrier).await {
            eprintln!("wan: link watch on {iface}: {e}; retrying in 5 s");
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

async fn watch_once(
    iface: &str,
    tx: &watch::Sender<WanStatus>,
    back: &OnCableBack,
    carrier: &mut Carrier,
) -> anyhow::Result<()> {
    let (mut conn, handle, mut messages) = rtnetlink::new_connection()?;
    // Subscribe before reading the current state, so no change falls in between.
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    let conn = tokio::spawn(conn);
    let result = async {
        let mut links = handle.link().get().match_name(iface.to_string()).execute();
        let link = futures_util::TryStreamExt::try_next(&mut links)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no link {iface}"))?;
        let index = link.header.index;
        if let Some(c) = carrier_of(&link, index) {
            apply(iface, carrier.observe(c), c, tx, back);
        }
        while let Some((msg, _)) = messages.next().await {
            if let netlink_packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(l),
            ) = msg.payload
            {
                if let Some(c) = carrier_of(&l, index) {
                    apply(iface, carrier.observe(c), c, tx, back);
                }
            }
        }
        anyhow::bail!("the netlink socket closed")
    }
    .await;
    conn.abort();
    result
}

fn apply(iface: &str, action: Action, c: bool, tx: &watch::Sender<WanStatus>, back: &OnCableBack) {
    tx.send_if_modified(|s| {
        let changed = s.carrier != Some(c);
        s.carrier = Some(c);
        changed
    });
    match action {
        Action::None => {}
        Action::Present => eprintln!("wan: {iface} has a carrier (cable in)"),
        Action::Lost => eprintln!("wan: {iface} lost its carrier (no cable)"),
        Action::Restored => {
            eprintln!("wan: {iface} carrier back (cable in); {}", back.what);
            back.restart.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkHeader;

    #[test]
    fn carrier_changes_to_actions() {
        let mut c = Carrier::default();
        assert_eq!(c.state(), None);
        assert_eq!(c.observe(true), Action::Present);
        assert_eq!(c.observe(true), Action::None);
        assert_eq!(c.observe(false), Action::Lost);
        assert_eq!(c.state(), Some(false));
        assert_eq!(c.observe(false), Action::None);
        assert_eq!(c.observe(true), Action::Restored);
        assert_eq!(c.observe(true), Action::None);
    }

    #[test]
    fn booting_without_a_cable() {
        let mut c = Carrier::default();
        assert_eq!(c.observe(false), Action::Lost);
        // The first cable after boot: DHCP has been failing, start it afresh.
        assert_eq!(c.observe(true), Action::Restored);
    }

    fn msg(index: u32, attrs: Vec<LinkAttribute>, flags: Vec<LinkFlag>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header = LinkHeader {
            index,
            flags,
            ..Default::default()
        };
        m.attributes = attrs;
        m
    }

    #[test]
    fn reads_the_carrier_of_our_link_only() {
        let up = msg(3, vec![LinkAttribute::Carrier(1)], vec![]);
        assert_eq!(carrier_of(&up, 3), Some(true));
        assert_eq!(carrier_of(&up, 4), None);
        let down = msg(3, vec![LinkAttribute::Carrier(0)], vec![LinkFlag::Up]);
        assert_eq!(carrier_of(&down, 3), Some(false));
        let flags_only = msg(3, vec![], vec![LinkFlag::Up, LinkFlag::LowerUp]);
        assert_eq!(carrier_of(&flags_only, 3), Some(true));
    }
}
