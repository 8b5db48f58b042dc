//! The traffic page: all clients, live and historical, top talkers.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
