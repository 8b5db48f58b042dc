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
pub mod tls;
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

/// A rendered page with `status`; a template that fails to render is a 500 saying so.
pub(crate) fn html(
    page: &impl askama::Template,
    status: axum::http::StatusCode,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match page.render() {
        Ok(h) => (status, axum::response::Html(h)).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("render: {e}"),
        )
            .into_response(),
    }
}

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
    /// The ports page's last reading of the router's sockets.
    pub listeners: Arc<listeners::Cache>,
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
    let https = ctx.config.ui.https_port;
    let data_dir = shared
        .update
        .paths
        .update_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| "/data".into());
    let names = cert_names(&ctx.config);
    let app = router(AppState { ctx, shared });
    if https != 0 {
        let tls_addr = SocketAddr::from((addr.ip(), https));
        let app = app.clone();
        tokio::spawn(async move {
            // A failure here costs HTTPS only, never the plain page.
            let made =
                tokio::task::spawn_blocking(move || tls::load_or_create(&data_dir, &names)).await;
            let id = match made {
                Ok(Ok((id, new))) => {
                    let how = if new { "made a new" } else { "using the" };
                    eprintln!(
                        "web: {how} HTTPS certificate, SHA-256 fingerprint {}",
                        id.fingerprint
                    );
                    id
                }
                Ok(Err(e)) => return eprintln!("web: no HTTPS: {e}"),
                Err(e) => return eprintln!("web: no HTTPS: {e}"),
            };
            let listener = bind_retrying(tls_addr).await;
            eprintln!("web: listening on https://{tls_addr}/");
            if let Err(e) = tls::serve(listener, app, &id).await {
                eprintln!("web: HTTPS stopped: {e:#}");
            }
        });
    }
    let listener = bind_retrying(addr).await;
    eprintln!("web: listening on http://{addr}/");
    // Peer addresses feed the login throttle.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The LAN address may not exist yet while init builds the bridge: retry.
async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                eprintln!("web: bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What the certificate is valid for: the router's names on the LAN and its LAN address.
fn cert_names(cfg: &crate::config::Config) -> Vec<String> {
    let host = &cfg.system.hostname;
    let mut names = vec![host.clone(), cfg.lan.address.to_string()];
    let domain = cfg.system.domain.trim_matches('.');
    if !domain.is_empty() {
        names.push(format!("{host}.{domain}"));
    }
    names
}
