//! The admin web app as the integration tests build it: the default config, a data
//! directory of the test's own, real lease and traffic stores, and the login and update
//! state the test chooses. (A module, not a test target: `tests/common/mod.rs`.)

#![allow(dead_code)] // each test target uses its own subset

use axum::Router;
use gateway::config::Config;
use gateway::context::Context;
use gateway::dhcp::lease_store::LeaseStore;
use gateway::traffic::Traffic;
use gateway::update::fake::FakeInstaller;
use gateway::update::{Paths, Update};
use gateway::web::session::Auth;
use gateway::web::{router, AppState, Shared};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The router over `dir`, with `auth` and `update`; also the traffic state it serves.
pub fn app(dir: &Path, auth: Arc<Auth>, update: Arc<Update>) -> (Router, Arc<Traffic>) {
    let cfg = Config::default();
    let (_tx, rx) = tokio::sync::watch::channel(gateway::wan::WanStatus::default());
    let ctx = Context {
        config: Arc::new(cfg.clone()),
        config_error: None,
        run_dir: dir.to_path_buf(),
        wan: rx,
    };
    let traffic = Arc::new(Traffic::new(&cfg, dir));
    let shared = Shared {
        leases: Arc::new(Mutex::new(
            LeaseStore::open(&dir.join("leases.json"), 16).unwrap(),
        )),
        dhcp: Default::default(),
        dns: Default::default(),
        nat: Default::default(),
        traffic: traffic.clone(),
        auth,
        update,
    };
    (router(AppState { ctx, shared }), traffic)
}

/// Update state for tests that do not exercise updates: a fake RAUC, no reboots.
pub fn idle_update(dir: &Path) -> Arc<Update> {
    Arc::new(Update::new(
        Arc::new(FakeInstaller::new("gatehouse-x86_64", "0.1.0")),
        Paths::new(dir.join("gatehouse.toml"), dir),
        Arc::new(|| Err("no reboots in tests".into())),
    ))
}
