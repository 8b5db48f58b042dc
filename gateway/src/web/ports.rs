//! The ports page: what listens on the router, static port forwards, NAT mappings.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
