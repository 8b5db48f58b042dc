//! NAPT datapath on nfqueue (placeholder until the NAT module lands).

use crate::context::Context;

/// Installs the firewall and runs the queue loop. Blocking: main runs it on its own thread.
pub fn run(_ctx: Context) -> anyhow::Result<()> {
    loop {
        std::thread::park();
    }
}
