//! What every gatewayd task is handed: configuration, paths and shared views.
//! There is no global state; main builds one `Context` and passes clones down.

use crate::config::Config;
use crate::wan::WanStatus;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    /// Why the config file was rejected, if it was (defaults are then in force).
    pub config_error: Option<String>,
    /// Volatile state (/run): WAN lease, status files.
    pub run_dir: PathBuf,
    pub wan: watch::Receiver<WanStatus>,
}
