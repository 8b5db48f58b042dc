//! Admin web server: the status page and its JSON twin, served on the LAN address only.
//!
//! Binding to the LAN address keeps the listener off the WAN address; the
//! firewall's input chain additionally drops anything arriving on the WAN port.

pub mod apply;
pub mod auth;
pub mod clients;
pub mod dns_page;
pub mod host;
pub mod listeners;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod password;
pub mod ports;
pub mod session;
pub(crate) mod status;
pub mod system;
pub mod traffic;
pub mod traffic_page;
pub mod update;

pub use status::format_bytes;

use crate::context::Context;
use crate::dhcp::lease_store::SharedStore;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The live views the other services share with the UI.
#[derive(Clone)]
pub struct Shared {
    pub leases: SharedStore,
    pub dhcp: Arc<crate::dhcp::Counters>,
    pub dns: Arc<crate::dns::Counters>,
    pub nat: Arc<crate::nat::Table>,
    pub traffic: Arc<crate::traffic::Traffic>,
    pub auth: Arc<session::Auth>,
    pub update: Arc<crate::update::Update>,
    /// init's log socket (log_socket::SOCKET; tests use their own).
    pub log_socket: Arc<str>,
    /// The config file the settings pages edit, and the config in force.
    pub config: Arc<crate::config::edit::ConfigFile>,
    /// CPU and memory readings for the dashboard.
    pub host: Arc<host::HostStats>,
}

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub shared: Shared,
}

/// Every route; all but /login and /setup sit behind `auth::require` (which lets a
/// scraper read /metrics with HTTP Basic credentials instead of a session).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login_submit))
        .route("/setup", get(auth::setup_form).post(auth::setup_submit))
        .route("/logout", post(auth::logout))
        .route("/api/session", get(auth::session_json))
        .route("/password", get(password::form).post(password::change))
        .route("/", get(status::page))
        .route("/api/status", get(status::json))
        .route("/api/nat", get(status::nat_json))
        .route("/metrics", get(metrics::metrics))
        .route("/api/traffic", get(traffic::series))
        .route("/api/traffic/top", get(traffic::top))
        .route("/api/traffic/summary", get(traffic::summary))
        .route("/api/traffic/stats", get(traffic::stats))
        .route("/api/traffic/live", get(traffic::live))
        .route("/api/capture", get(traffic::capture_list))
        .route(
            "/api/capture/{mac}",
            get(traffic::capture_download).post(traffic::capture_toggle),
        )
        .route("/logs", get(logs::page))
        .route("/api/logs", get(logs::json))
        .route("/update", get(update::page))
        .route("/api/update", get(update::json))
        // Bundles are streamed to disk, bounded by the store (size cap, free space), not
        // by the request body limit.
        .route(
            "/update/upload",
            post(update::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/update/url", post(update::url))
        .route("/update/switch", post(update::switch))
        .route("/update/reboot", post(update::reboot))
        .route("/config/backup", get(update::backup))
        .route("/config/restore", post(update::restore))
        // Each page module registers its own page, form and /api routes.
        .merge(clients::routes())
        .merge(traffic_page::routes())
        .merge(ports::routes())
        .merge(dns_page::routes())
        .merge(network::routes())
        .merge(system::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

pub async fn run(ctx: Context, shared: Shared) -> anyhow::Result<()> {
    let addr = SocketAddr::from((ctx.config.lan.address, ctx.config.ui.port));
    let app = router(AppState { ctx, shared });
    // The LAN address may not exist yet while init builds the bridge: retry.
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                eprintln!("web: bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    eprintln!("web: listening on http://{addr}/");
    // Peer addresses feed the login throttle.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
