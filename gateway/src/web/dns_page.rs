//! The DNS page: cache, query log, blocklists, upstreams.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
