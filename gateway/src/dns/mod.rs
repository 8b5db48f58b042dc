//! DNS forwarder for the LAN (placeholder until the DNS module lands).

use crate::context::Context;

pub async fn run(_ctx: Context) -> anyhow::Result<()> {
    std::future::pending().await
}
