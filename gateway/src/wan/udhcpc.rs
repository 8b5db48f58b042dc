//! WAN DHCP client (placeholder).
use super::WanStatus;
use crate::context::Context;
pub async fn run(_ctx: Context, _tx: tokio::sync::watch::Sender<WanStatus>) -> anyhow::Result<()> {
    std::future::pending().await
}
