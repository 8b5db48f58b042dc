//! An `Installer` without RAUC, for the tests (unit and integration) and for running the
//! UI on a development machine. A "bundle" is any file that starts with
//! `FAKE-BUNDLE compatible=<c> version=<v>\n` (see `bundle_header`); anything else fails
//! inspection the way a bad signature does.

use super::rauc::{BundleInfo, Installer, Progress, RaucError, Result, SlotStatus};
use async_trait::async_trait;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use tokio::sync::watch;

pub fn bundle_header(compatible: &str, version: &str) -> Vec<u8> {
    format!("FAKE-BUNDLE compatible={compatible} version={version}\n").into_bytes()
}

/// An install as the fake saw it when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    pub len: u64,
}

pub struct FakeInstaller {
    pub compatible: String,
    pub boot_slot: Mutex<String>,
    pub slots: Mutex<Vec<SlotStatus>>,
    /// Set: every call fails as if RAUC were not running.
    pub down: AtomicBool,
    /// What installs end with: `Err(LastError)` for a failure.
    pub install_result: Mutex<std::result::Result<(), String>>,
    pub installed: Mutex<Vec<Installed>>,
    pub marks: Mutex<Vec<(String, String)>>,
    last_error: Mutex<String>,
    installing: AtomicBool,
    /// While true, installs wait (a test looks at the bundle on disk meanwhile).
    paused: watch::Sender<bool>,
}

fn slot(name: &str, bootname: &str, state: &str, boot_status: &str, version: &str) -> SlotStatus {
    SlotStatus {
        name: name.into(),
        bootname: bootname.into(),
        state: state.into(),
        boot_status: boot_status.into(),
        bundle_version: version.into(),
        installed_timestamp: String::new(),
    }
}

impl FakeInstaller {
    /// Booted from A; B is good and holds `other_version`.
    pub fn new(compatible: &str, other_version: &str) -> Self {
        Self {
            compatible: compatible.into(),
            boot_slot: Mutex::new("A".into()),
            slots: Mutex::new(vec![
                slot("rootfs.0", "A", "booted", "good", ""),
                slot("rootfs.1", "B", "inactive", "good", other_version),
            ]),
            down: AtomicBool::new(false),
            install_result: Mutex::new(Ok(())),
            installed: Mutex::new(Vec::new()),
            marks: Mutex::new(Vec::new()),
            last_error: Mutex::new(String::new()),
            installing: AtomicBool::new(false),
            paused: watch::channel(false).0,
        }
    }

    /// Sets the other slot's boot status ("good" or "bad").
    pub fn set_other_status(&self, status: &str) {
        let boot = self.boot_slot.lock().unwrap().clone();
        for s in self.slots.lock().unwrap().iter_mut() {
            if s.bootname != boot {
                s.boot_status = status.into();
            }
        }
    }

    pub fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub fn is_installing(&self) -> bool {
        self.installing.load(Relaxed)
    }

    fn up(&self) -> Result<()> {
        if self.down.load(Relaxed) {
            Err(RaucError::NotRunning(
                "de.pengutronix.rauc is not on the system bus".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Installer for FakeInstaller {
    async fn compatible(&self) -> Result<String> {
        self.up()?;
        Ok(self.compatible.clone())
    }

    async fn boot_slot(&self) -> Result<String> {
        self.up()?;
        Ok(self.boot_slot.lock().unwrap().clone())
    }

    async fn slot_status(&self) -> Result<Vec<SlotStatus>> {
        self.up()?;
        Ok(self.slots.lock().unwrap().clone())
    }

    async fn inspect(&self, path: &Path) -> Result<BundleInfo> {
        self.up()?;
        let mut head = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(|e| RaucError::Failed(format!("{}: {e}", path.display())))?;
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let bad = || RaucError::Failed("signature verification failed: not a bundle".into());
        let rest = line.strip_prefix("FAKE-BUNDLE ").ok_or_else(bad)?;
        let mut compatible = None;
        let mut version = None;
        for kv in rest.split(' ') {
            match kv.split_once('=') {
                Some(("compatible", c)) => compatible = Some(c.to_string()),
                Some(("version", v)) => version = Some(v.to_string()),
                _ => return Err(bad()),
            }
        }
        Ok(BundleInfo {
            compatible: compatible.ok_or_else(bad)?,
            version: version.ok_or_else(bad)?,
        })
    }

    async fn install(&self, path: &Path) -> Result<()> {
        self.up()?;
        let len = std::fs::metadata(path)
            .map_err(|e| RaucError::Failed(format!("{}: {e}", path.display())))?
            .len();
        self.installed.lock().unwrap().push(Installed {
            path: path.to_path_buf(),
            len,
        });
        self.installing.store(true, Relaxed);
        let mut paused = self.paused.subscribe();
        let _ = paused.wait_for(|p| !p).await;
        self.installing.store(false, Relaxed);
        let result = self.install_result.lock().unwrap().clone();
        *self.last_error.lock().unwrap() = result.clone().err().unwrap_or_default();
        result.map_err(RaucError::Failed)
    }

    async fn progress(&self) -> Result<Progress> {
        self.up()?;
        Ok(if self.is_installing() {
            Progress {
                percent: 40,
                message: "Copying image to rootfs.1".into(),
            }
        } else {
            Progress {
                percent: 100,
                message: "Installing done.".into(),
            }
        })
    }

    async fn operation(&self) -> Result<String> {
        self.up()?;
        Ok(if self.is_installing() {
            "installing"
        } else {
            "idle"
        }
        .into())
    }

    async fn last_error(&self) -> Result<String> {
        self.up()?;
        Ok(self.last_error.lock().unwrap().clone())
    }

    async fn mark(&self, state: &str, ident: &str) -> Result<(String, String)> {
        self.up()?;
        self.marks
            .lock()
            .unwrap()
            .push((state.to_string(), ident.to_string()));
        let boot = self.boot_slot.lock().unwrap().clone();
        let target = self
            .slots
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                if ident == "other" {
                    s.bootname != boot
                } else {
                    s.name == ident
                }
            })
            .map(|s| s.name.clone())
            .ok_or_else(|| RaucError::Failed(format!("no slot {ident}")))?;
        Ok((target.clone(), format!("marked slot {target} as {state}")))
    }
}
