//! The system page: slots, update, reboot, configuration backup and restore (all served by
//! `update`), plus factory reset, and the ways to the log viewer and the password form.
//!
//! A factory reset is init's job: gatewayd leaves init's marker on the data partition and
//! reboots; init then re-creates the filesystem before anything mounts it (as the serial
//! console's reset does), so no half-erased state is ever served.

use super::auth::{parse_form, SessionInfo};
use super::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Json, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::path::{Path, PathBuf};

/// What the owner types to confirm a factory reset.
pub const CONFIRM_WORD: &str = "ERASE";
/// init's marker (init::data::RESET_MARKER), relative to the data directory.
const RESET_MARKER: &str = ".factory-reset";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system", get(super::update::page))
        .route("/api/system", get(json))
        .route("/system/factory-reset", post(factory_reset))
}

fn data_dir(st: &AppState) -> PathBuf {
    st.shared
        .update
        .paths
        .update_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/data"))
}

/// Leaves init's marker, durably (a reboot follows at once).
pub fn request_reset(data_dir: &Path) -> std::io::Result<()> {
    crate::atomic_file::write(
        data_dir,
        &data_dir.join(RESET_MARKER),
        b"requested from the admin page\n",
    )
}

/// POST /system/factory-reset: field `confirm` must be `ERASE`.
async fn factory_reset(
    State(st): State<AppState>,
    Extension(s): Extension<SessionInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = parse_form(&body);
    let typed = form.get("confirm").map(|v| v.trim()).unwrap_or_default();
    let result = if typed != CONFIRM_WORD {
        Err((
            StatusCode::BAD_REQUEST,
            format!(
                "Nothing was erased: type {CONFIRM_WORD} in capitals to confirm a factory reset."
            ),
        ))
    } else if st.shared.update.is_busy() {
        Err((
            StatusCode::CONFLICT,
            "Nothing was erased: an update is being installed. Try again when it is done.".into(),
        ))
    } else {
        let dir = data_dir(&st);
        match tokio::task::spawn_blocking(move || request_reset(&dir)).await {
            Ok(Ok(())) => {
                eprintln!("web: factory reset requested; rebooting");
                st.shared.update.reboot_soon();
                Ok(
                    "Factory reset: the router restarts now and comes back with default \
                    settings, no leases and no admin password. Set a new password on the first \
                    visit."
                        .into(),
                )
            }
            Ok(Err(e)) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Nothing was erased: the request could not be saved: {e}"),
            )),
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Nothing was erased: {e}"),
            )),
        }
    };
    super::update::answer(&st, &s, &headers, result).await
}

/// GET /api/system: the host's facts, and whether a reset is pending.
async fn json(State(st): State<AppState>) -> Json<serde_json::Value> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let load = sysinfo::System::load_average();
    Json(serde_json::json!({
        "hostname": st.shared.config.current().system.hostname,
        "version": st.shared.update.version(),
        "uptime_secs": sysinfo::System::uptime(),
        "load": [load.one, load.five, load.fifteen],
        "memory": { "total": sys.total_memory(), "available": sys.available_memory() },
        "factory_reset_pending": data_dir(&st).join(RESET_MARKER).exists(),
        "config_edits": &st.shared.config.stats,
    }))
}
