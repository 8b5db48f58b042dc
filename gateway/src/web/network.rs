//! The network settings page: LAN, DHCP, static leases, WAN, WLAN.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
