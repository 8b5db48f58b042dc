//! The log viewer: init's per-service log rings, read through its socket
//! (the log-socket crate), as a page and as JSON.

use super::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// The sources the page links to: init and the image's services.
pub const SOURCES: &[&str] = &["init", "gatewayd", "rauc", "dbus", "hostapd", "console"];
const DEFAULT_LINES: usize = 200;
const MAX_LINES: usize = 2000;

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    source: String,
    lines: Option<usize>,
}

#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage {
    pub hostname: String,
    pub version: String,
    pub sources: Vec<&'static str>,
    /// Empty: every source.
    pub source: String,
    pub limit: usize,
    pub lines: Vec<String>,
    pub error: Option<String>,
}

/// A source name as init names services (anything else cannot match one).
fn valid_source(s: &str) -> bool {
    s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads the last lines of `source` from the socket at `path`, off the async runtime.
pub async fn fetch(path: String, source: String, lines: usize) -> Result<Vec<String>, String> {
    if !valid_source(&source) {
        return Err(format!("no log source {source:?}"));
    }
    let req = log_socket::Request {
        follow: false,
        lines,
        source: (!source.is_empty()).then_some(source),
    };
    tokio::task::spawn_blocking(move || {
        let mut out = vec![];
        log_socket::read(&path, &req, |l| {
            out.push(l.to_string());
            out.len() < MAX_LINES
        })
        .map(|_| out)
        .map_err(|e| format!("init's log socket {path}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn limit(q: &LogQuery) -> usize {
    q.lines.unwrap_or(DEFAULT_LINES).clamp(1, MAX_LINES)
}

/// GET /logs?source=NAME&lines=N
pub async fn page(State(st): State<AppState>, Query(q): Query<LogQuery>) -> Response {
    let n = limit(&q);
    let (lines, error) = match fetch(st.shared.log_socket.to_string(), q.source.clone(), n).await {
        Ok(l) => (l, None),
        Err(e) => (vec![], Some(e)),
    };
    let page = LogsPage {
        hostname: st.ctx.config.system.hostname.clone(),
        version: st.shared.update.version().to_string(),
        sources: SOURCES.to_vec(),
        source: q.source,
        limit: n,
        lines,
        error,
    };
    super::html(&page, axum::http::StatusCode::OK)
}

/// GET /api/logs?source=NAME&lines=N: {"lines": [...]} or 502 with {"error": ...}.
pub async fn json(State(st): State<AppState>, Query(q): Query<LogQuery>) -> Response {
    match fetch(
        st.shared.log_socket.to_string(),
        q.source.clone(),
        limit(&q),
    )
    .await
    {
        Ok(lines) => Json(serde_json::json!({ "lines": lines })).into_response(),
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_log_lines() {
        let html = LogsPage {
            hostname: "gh".into(),
            version: "1".into(),
            sources: SOURCES.to_vec(),
            source: "gatewayd".into(),
            limit: 5,
            lines: vec!["gatewayd: lease for <script>alert(1)</script>".into()],
            error: None,
        }
        .render()
        .unwrap();
        assert!(
            html.contains("lease for &#60;script&#62;alert(1)"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("href=\"/logs?source=gatewayd\" aria-current=\"page\""));
    }

    #[test]
    fn sources_are_names_not_paths() {
        assert!(valid_source("gatewayd") && valid_source(""));
        assert!(!valid_source("../x") && !valid_source("a b"));
    }
}
