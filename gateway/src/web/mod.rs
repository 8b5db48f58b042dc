//! Admin page (placeholder).
use crate::context::Context;
use crate::dhcp::lease_store::SharedStore;
pub async fn run(_ctx: Context, _store: SharedStore) -> anyhow::Result<()> {
    std::future::pending().await
}
