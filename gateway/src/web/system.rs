//! The system page: slots, update, reboot, backup, factory reset, logs, password.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
