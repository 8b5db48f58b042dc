//! DHCPv4 server for the LAN (placeholder until the DHCP module lands).

use crate::context::Context;

pub mod lease_store;

pub async fn run(_ctx: Context, _store: lease_store::SharedStore) -> anyhow::Result<()> {
    std::future::pending().await
}
