//! RAUC, the installer that writes a bundle into the other A/B slot, runs as `rauc service`
//! on the system D-Bus. `Installer` is what gatewayd needs of it; `Rauc` is the real one
//! (zbus), `super::fake::FakeInstaller` the one the tests drive.
//!
//! RAUC 1.8 (Debian bookworm) has no `InspectBundle` (that came in 1.9), so bundles are
//! inspected with `Info`, which also checks the signature against the keyring.

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;
use tokio::sync::Mutex;
use zbus::zvariant::{OwnedValue, Value};

/// Where init starts the system bus (zbus's own default is under /var/run, which the
/// appliance does not have).
pub const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaucError {
    /// The bus or the service is not there: nothing was attempted.
    NotRunning(String),
    /// RAUC answered, with an error (a bad signature, a failed install, ...).
    Failed(String),
}

impl fmt::Display for RaucError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning(why) => write!(f, "RAUC not running: {why}"),
            Self::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for RaucError {}

pub type Result<T> = std::result::Result<T, RaucError>;

/// One slot as `GetSlotStatus` reports it, the fields the UI shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// "rootfs.0"
    pub name: String,
    /// "A": what GRUB and `rauc.slot=` call it.
    pub bootname: String,
    /// "booted", "active" or "inactive".
    pub state: String,
    /// "good" or "bad": whether the bootloader will still try it.
    pub boot_status: String,
    /// The version of the bundle last installed into it ("" if none was).
    pub bundle_version: String,
    /// When that was ("2026-11-22T05:12:00Z"), "" if never.
    pub installed_timestamp: String,
}

/// What a bundle's manifest says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub compatible: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub percent: i32,
    pub message: String,
}

#[async_trait]
pub trait Installer: Send + Sync {
    /// The system's compatible string ("gatehouse-x86_64").
    async fn compatible(&self) -> Result<String>;
    /// The booted slot's bootname ("A").
    async fn boot_slot(&self) -> Result<String>;
    async fn slot_status(&self) -> Result<Vec<SlotStatus>>;
    /// Reads the manifest of the bundle at `path` and verifies its signature.
    async fn inspect(&self, path: &Path) -> Result<BundleInfo>;
    /// Installs the bundle at `path` into the other slot; resolves when RAUC reports the
    /// installation complete (`Ok`) or failed (`Failed` with RAUC's `LastError`).
    async fn install(&self, path: &Path) -> Result<()>;
    async fn progress(&self) -> Result<Progress>;
    /// "idle" or "installing".
    async fn operation(&self) -> Result<String>;
    async fn last_error(&self) -> Result<String>;
    /// `state`: good, bad or active; `ident`: booted, other or a slot name. Returns the
    /// slot marked and RAUC's message.
    async fn mark(&self, state: &str, ident: &str) -> Result<(String, String)>;
}

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
trait RaucInstaller {
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn info(&self, bundle: &str) -> zbus::Result<(String, String)>;
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}

/// How long connecting to the bus may take before RAUC counts as not running.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An install that has not completed after this long is given up on (a slot is ~50 MB).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// RAUC over the system bus. Connects on first use, not at startup: gatewayd must come up
/// (and route) whether or not the bus and RAUC are there, and a lost connection is made
/// again on the next call.
pub struct Rauc {
    address: String,
    conn: Mutex<Option<zbus::Connection>>,
}

impl Rauc {
    /// The system bus: `$DBUS_SYSTEM_BUS_ADDRESS` if set, else `SYSTEM_BUS`.
    pub fn system() -> Self {
        Self::at(std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| SYSTEM_BUS.into()))
    }

    pub fn at(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            conn: Mutex::new(None),
        }
    }

    async fn proxy(&self) -> Result<RaucInstallerProxy<'static>> {
        let mut conn = self.conn.lock().await;
        let c = match conn.as_ref() {
            Some(c) => c.clone(),
            None => {
                let builder =
                    zbus::connection::Builder::address(self.address.as_str()).map_err(|e| {
                        RaucError::NotRunning(format!("bus address {}: {e}", self.address))
                    })?;
                let c = tokio::time::timeout(CONNECT_TIMEOUT, builder.build())
                    .await
                    .map_err(|_| {
                        RaucError::NotRunning(format!(
                            "no answer from the system bus at {}",
                            self.address
                        ))
                    })?
                    .map_err(|e| {
                        RaucError::NotRunning(format!(
                            "cannot reach the system bus at {}: {e}",
                            self.address
                        ))
                    })?;
                *conn = Some(c.clone());
                c
            }
        };
        // Uncached: progress and operation change all the time, and nothing is read often.
        RaucInstallerProxy::builder(&c)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.map_err(e, &mut conn))
    }

    fn map_err(&self, e: zbus::Error, conn: &mut Option<zbus::Connection>) -> RaucError {
        let gone = |e: &zbus::fdo::Error| {
            matches!(
                e,
                zbus::fdo::Error::ServiceUnknown(_)
                    | zbus::fdo::Error::NameHasNoOwner(_)
                    | zbus::fdo::Error::Disconnected(_)
            )
        };
        match e {
            zbus::Error::FDO(f) if gone(&f) => {
                RaucError::NotRunning("de.pengutronix.rauc is not on the system bus".into())
            }
            zbus::Error::InputOutput(io) => {
                // The bus went away under us: connect afresh next time.
                *conn = None;
                RaucError::NotRunning(format!("system bus connection lost: {io}"))
            }
            zbus::Error::MethodError(name, msg, _) => {
                RaucError::Failed(msg.unwrap_or_else(|| name.to_string()))
            }
            zbus::Error::FDO(f) => RaucError::Failed(f.to_string()),
            other => RaucError::Failed(other.to_string()),
        }
    }

    /// Runs `f` on a proxy, mapping zbus errors.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(RaucInstallerProxy<'static>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let p = self.proxy().await?;
        match f(p).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.map_err(e, &mut *self.conn.lock().await)),
        }
    }
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| RaucError::Failed(format!("bundle path {} is not UTF-8", path.display())))
}

/// The UI's fields of one `GetSlotStatus` entry (RAUC leaves out what it does not know).
fn slot_of(name: String, dict: &HashMap<String, OwnedValue>) -> SlotStatus {
    let s = |k: &str| {
        dict.get(k)
            .and_then(|v| String::try_from(v.clone()).ok())
            .unwrap_or_default()
    };
    SlotStatus {
        bootname: s("bootname"),
        state: s("state"),
        boot_status: s("boot-status"),
        bundle_version: s("bundle.version"),
        installed_timestamp: s("installed.timestamp"),
        name,
    }
}

#[async_trait]
impl Installer for Rauc {
    async fn compatible(&self) -> Result<String> {
        self.call(|p| async move { p.compatible().await }).await
    }

    async fn boot_slot(&self) -> Result<String> {
        self.call(|p| async move { p.boot_slot().await }).await
    }

    async fn slot_status(&self) -> Result<Vec<SlotStatus>> {
        let raw = self
            .call(|p| async move { p.get_slot_status().await })
            .await?;
        let mut slots: Vec<SlotStatus> = raw.into_iter().map(|(n, d)| slot_of(n, &d)).collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(slots)
    }

    async fn inspect(&self, path: &Path) -> Result<BundleInfo> {
        let path = path_str(path)?;
        let (compatible, version) = self.call(|p| async move { p.info(&path).await }).await?;
        Ok(BundleInfo {
            compatible,
            version,
        })
    }

    async fn install(&self, path: &Path) -> Result<()> {
        let path = path_str(path)?;
        let proxy = self.proxy().await?;
        // Subscribed before the call, so a quick failure's signal is not missed.
        let mut completed = match proxy.receive_completed().await {
            Ok(s) => s,
            Err(e) => return Err(self.map_err(e, &mut *self.conn.lock().await)),
        };
        if let Err(e) = proxy.install_bundle(&path, HashMap::new()).await {
            return Err(self.map_err(e, &mut *self.conn.lock().await));
        }
        let deadline = tokio::time::Instant::now() + INSTALL_TIMEOUT;
        let mut idle_polls = 0;
        let code = loop {
            tokio::select! {
                sig = completed.next() => match sig.map(|s| s.args().map(|a| a.result)) {
                    Some(Ok(code)) => break code,
                    _ => return Err(RaucError::NotRunning("RAUC went away during the install".into())),
                },
                // A missed signal (RAUC restarted, say) must not hang us: once RAUC has
                // been idle for a while the install is over, and LastError says how.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(RaucError::Failed("the install did not complete within an hour".into()));
                    }
                    match proxy.operation().await.as_deref() {
                        Ok("idle") => idle_polls += 1,
                        Ok(_) => idle_polls = 0,
                        Err(_) => return Err(RaucError::NotRunning("RAUC went away during the install".into())),
                    }
                    if idle_polls >= 3 {
                        let err = proxy.last_error().await.unwrap_or_default();
                        break if err.is_empty() { 0 } else { 1 };
                    }
                }
            }
        };
        if code == 0 {
            return Ok(());
        }
        let err = proxy.last_error().await.unwrap_or_default();
        Err(RaucError::Failed(if err.is_empty() {
            format!("the install failed (RAUC result {code})")
        } else {
            err
        }))
    }

    async fn progress(&self) -> Result<Progress> {
        let (percent, message, _depth) = self.call(|p| async move { p.progress().await }).await?;
        Ok(Progress { percent, message })
    }

    async fn operation(&self) -> Result<String> {
        self.call(|p| async move { p.operation().await }).await
    }

    async fn last_error(&self) -> Result<String> {
        self.call(|p| async move { p.last_error().await }).await
    }

    async fn mark(&self, state: &str, ident: &str) -> Result<(String, String)> {
        let (state, ident) = (state.to_string(), ident.to_string());
        self.call(|p| async move { p.mark(&state, &ident).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_fields_are_read_from_the_dict() {
        let mut d = HashMap::new();
        for (k, v) in [
            ("bootname", "B"),
            ("state", "inactive"),
            ("boot-status", "good"),
            ("bundle.version", "0.2.0+g1.20261122T0512"),
            ("installed.timestamp", "2026-11-22T05:20:00Z"),
            ("class", "rootfs"),
        ] {
            d.insert(k.to_string(), OwnedValue::try_from(Value::from(v)).unwrap());
        }
        d.insert("installed.count".into(), OwnedValue::from(3u32));
        let s = slot_of("rootfs.1".into(), &d);
        assert_eq!(
            s,
            SlotStatus {
                name: "rootfs.1".into(),
                bootname: "B".into(),
                state: "inactive".into(),
                boot_status: "good".into(),
                bundle_version: "0.2.0+g1.20261122T0512".into(),
                installed_timestamp: "2026-11-22T05:20:00Z".into(),
            }
        );
        // A slot never installed into lacks the bundle keys.
        let s = slot_of("rootfs.0".into(), &HashMap::new());
        assert_eq!(s.bundle_version, "");
    }

    #[tokio::test]
    async fn no_bus_is_a_clear_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("gh-rauc-{}", std::process::id()));
        let r = Rauc::at(format!("unix:path={}/no-such-socket", dir.display()));
        let e = r.compatible().await.unwrap_err();
        assert!(matches!(e, RaucError::NotRunning(_)), "{e:?}");
        assert!(e.to_string().starts_with("RAUC not running"), "{e}");
        let e = r
            .install(Path::new("/nonexistent.raucb"))
            .await
            .unwrap_err();
        assert!(matches!(e, RaucError::NotRunning(_)), "{e:?}");
    }
}
