//! The clients pages: every device, its detail, rename, static lease, capture.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
