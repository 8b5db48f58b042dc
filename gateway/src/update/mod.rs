//! A/B updates, gatewayd's side: a bundle arrives (upload or download) into the store,
//! RAUC inspects it, we check it is for this machine and not older than what runs (unless
//! the owner says so), and RAUC installs it into the other slot. RAUC's post-install
//! handler and init take it from there (`records`); the owner reboots into it, or switches
//! back to the other slot.
//!
//! ```text
//! upload/URL ──> store (temp, fsync, rename) ──> RAUC Info ──> compatible? newer? ──> InstallBundle
//!      │ refused: counted, file deleted, reason shown       │ refused                   │ Completed
//!      └── one at a time: a second request gets 409         └───────────────────────────┴─> file deleted
//! ```
//!
//! `Update` is the state the web pages share; everything that talks to RAUC goes through
//! the `Installer` trait so the page logic is tested with `fake::FakeInstaller`.

pub mod backup;
mod download;
pub mod fake;
pub mod rauc;
pub mod records;
pub mod store;
pub mod version;

pub use rauc::{BundleInfo, Installer, Progress, Rauc, RaucError, SlotStatus};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use records::{Banner, Last, Pending};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Store, StoreError};

/// The running build's version, written into the image.
pub const VERSION_FILE: &str = "/etc/gatehouse/version";

/// How long `reboot_soon` waits: long enough for the answer page to reach the browser
/// (the page itself waits on RAUC's D-Bus state, slow on a small board).
pub const REBOOT_DELAY: Duration = Duration::from_secs(2);

/// Asks init (PID 1) for a reboot: it takes SIGTERM as "shut down cleanly and reboot".
pub fn request_reboot() -> Result<(), String> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), nix::sys::signal::SIGTERM)
        .map_err(|e| format!("cannot signal init: {e}"))
}

/// How a reboot is asked for: `request_reboot` in gatewayd, a stand-in in tests.
pub type RebootFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Paths {
    /// The config file (backup and restore).
    pub config: PathBuf,
    /// `/data/update`: incoming.raucb, and init's pending.json and last.json.
    pub update_dir: PathBuf,
    /// The running version (`VERSION_FILE`).
    pub version_file: PathBuf,
}

impl Paths {
    pub fn new(config: PathBuf, data_dir: &Path) -> Self {
        Self {
            config,
            update_dir: data_dir.join("update"),
            version_file: PathBuf::from(VERSION_FILE),
        }
    }

    pub fn pending(&self) -> PathBuf {
        self.update_dir.join("pending.json")
    }

    pub fn last(&self) -> PathBuf {
        self.update_dir.join("last.json")
    }

    pub fn incoming(&self) -> PathBuf {
        self.update_dir.join("incoming.raucb")
    }
}

#[derive(Debug, Default)]
pub struct Rejected {
    pub compatible: AtomicU64,
    pub downgrade: AtomicU64,
    pub signature: AtomicU64,
    pub space: AtomicU64,
    pub other: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Bundles received whole, by upload and by download.
    pub uploads: AtomicU64,
    pub downloads: AtomicU64,
    pub rejected: Rejected,
    pub installs_ok: AtomicU64,
    pub installs_failed: AtomicU64,
}

/// The counters as `/api/update` shows them: `rejected` is the total, `rejected_by` says why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersView {
    pub uploads: u64,
    pub downloads: u64,
    pub rejected: u64,
    pub rejected_by: RejectedView,
    pub installs_ok: u64,
    pub installs_failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RejectedView {
    pub compatible: u64,
    pub downgrade: u64,
    pub signature: u64,
    pub space: u64,
    pub other: u64,
}

impl Counters {
    pub fn view(&self) -> CountersView {
        let r = &self.rejected;
        let by = RejectedView {
            compatible: r.compatible.load(Relaxed),
            downgrade: r.downgrade.load(Relaxed),
            signature: r.signature.load(Relaxed),
            space: r.space.load(Relaxed),
            other: r.other.load(Relaxed),
        };
        CountersView {
            uploads: self.uploads.load(Relaxed),
            downloads: self.downloads.load(Relaxed),
            rejected: by.compatible + by.downgrade + by.signature + by.space + by.other,
            rejected_by: by,
            installs_ok: self.installs_ok.load(Relaxed),
            installs_failed: self.installs_failed.load(Relaxed),
        }
    }
}

/// Why a bundle was not installed (or a request not carried out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another update is under way.
    Busy,
    Compatible {
        bundle: String,
        system: String,
    },
    Downgrade {
        bundle: String,
        running: String,
    },
    /// RAUC could not verify the bundle.
    Signature(String),
    Space(String),
    /// RAUC (or the bus) is not there.
    NotRunning(String),
    /// A bad request, a failed transfer, an error from RAUC.
    Other(String),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Self::Busy => "another update is in progress; wait for it to finish".into(),
            Self::Compatible { bundle, system } => format!(
                "bundle is for {bundle:?} but this system is {system:?}; not installed"
            ),
            Self::Downgrade { bundle, running } => format!(
                "bundle {bundle} is older than running {running}; tick 'allow downgrade' to install it"
            ),
            Self::Signature(m) => format!("bundle refused by RAUC: {m}"),
            Self::Space(m) | Self::Other(m) => m.clone(),
            Self::NotRunning(m) => m.clone(),
        }
    }

    fn counter<'a>(&self, c: &'a Rejected) -> Option<&'a AtomicU64> {
        Some(match self {
            Self::Busy => return None,
            Self::Compatible { .. } => &c.compatible,
            Self::Downgrade { .. } => &c.downgrade,
            Self::Signature(_) => &c.signature,
            Self::Space(_) => &c.space,
            Self::NotRunning(_) | Self::Other(_) => &c.other,
        })
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSpace { .. } | StoreError::TooLarge { .. } => Self::Space(e.to_string()),
            StoreError::Io(_) => Self::Other(e.to_string()),
        }
    }
}

/// RAUC's errors, sorted for the counters: a bundle it cannot verify is a signature problem.
fn refusal_of(e: RaucError) -> Refusal {
    match e {
        RaucError::NotRunning(_) => Refusal::NotRunning(e.to_string()),
        RaucError::Failed(m) => {
            let l = m.to_lowercase();
            if ["signature", "verif", "certificate", "keyring", "cms"]
                .iter()
                .any(|w| l.contains(w))
            {
                Refusal::Signature(m)
            } else {
                Refusal::Other(format!("RAUC: {m}"))
            }
        }
    }
}

/// An inspection RAUC refused. RAUC 1.8's `Info` answers every failure (bad signature,
/// damaged file, not a bundle) with the same "rauc info error" and logs the reason, so
/// all of them count as a bundle that could not be verified.
fn unverified(e: RaucError) -> Refusal {
    match e {
        RaucError::NotRunning(_) => Refusal::NotRunning(e.to_string()),
        RaucError::Failed(m) => Refusal::Signature(format!(
            "it could not be verified (not signed with a trusted key, damaged, or not a \
             bundle): {m}"
        )),
    }
}

/// Whether `bundle` may go onto this system: the same compatible, and not older than what
/// runs unless the owner allowed it.
pub fn check_bundle(
    bundle: &BundleInfo,
    system_compatible: &str,
    running: &str,
    allow_downgrade: bool,
) -> Result<(), Refusal> {
    if bundle.compatible != system_compatible {
        return Err(Refusal::Compatible {
            bundle: bundle.compatible.clone(),
            system: system_compatible.into(),
        });
    }
    if !allow_downgrade && version::is_downgrade(&bundle.version, running) {
        return Err(Refusal::Downgrade {
            bundle: bundle.version.clone(),
            running: running.into(),
        });
    }
    Ok(())
}

/// The slot "Switch" would boot: the other one, if the bootloader still trusts it.
pub fn switch_target<'a>(
    slots: &'a [SlotStatus],
    boot_slot: &str,
) -> Result<&'a SlotStatus, String> {
    let other = slots
        .iter()
        .find(|s| !s.bootname.is_empty() && s.bootname != boot_slot && s.state != "booted")
        .ok_or("there is no other slot to switch to")?;
    if other.boot_status != "good" {
        return Err(format!(
            "slot {} is not marked good (boot status {:?}): it failed or was never confirmed",
            other.bootname, other.boot_status
        ));
    }
    Ok(other)
}

/// `rauc.slot=` from a kernel command line: the booted slot when RAUC cannot say.
pub fn cmdline_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .map(str::to_string)
}

/// The value, or its default with the first error kept for the page.
fn noted<T: Default>(r: rauc::Result<T>, first: &mut Option<String>) -> T {
    r.unwrap_or_else(|e| {
        first.get_or_insert(e.to_string());
        T::default()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Idle,
    /// A bundle is arriving.
    Receiving,
    /// RAUC is reading its manifest.
    Inspecting,
    Installing,
}

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub phase: Phase,
    /// Bytes of the arriving bundle so far, and how many are announced (if known).
    pub received: u64,
    pub expected: Option<u64>,
    /// The bundle's version once known.
    pub version: String,
}

/// How the last attempt ended, as we saw it (RAUC's own view is `last_error`).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub ok: bool,
    pub message: String,
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upload,
    Download,
}

pub struct Update {
    installer: Arc<dyn Installer>,
    pub paths: Paths,
    pub store: Store,
    pub counters: Counters,
    version: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    activity: Mutex<Activity>,
    last_attempt: Mutex<Option<Attempt>>,
    reboot: RebootFn,
    /// A transfer that delivers nothing for this long is given up.
    pub idle_timeout: Duration,
    /// The longest a download may take in all.
    pub download_timeout: Duration,
}

/// Holds the one-update-at-a-time lock; back to idle when dropped.
pub struct Busy {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    update: Arc<Update>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.update.set_activity(|a| {
            *a = Activity {
                phase: Phase::Idle,
                received: 0,
                expected: None,
                version: String::new(),
            }
        });
    }
}

/// Everything the update page and `/api/update` show.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: String,
    pub boot_slot: String,
    pub compatible: String,
    pub operation: String,
    pub progress: Progress,
    /// Why the latest attempt failed, whoever refused it: gatewayd (wrong compatible,
    /// older, no space, ...) or RAUC (bad signature, failed write). "" once one succeeds.
    pub last_error: String,
    /// RAUC's own `LastError`.
    pub rauc_last_error: String,
    pub slots: Vec<SlotStatus>,
    pub last: Option<Last>,
    pub pending: Option<Pending>,
    pub counters: CountersView,
    /// "RAUC not running: ..." when it could not be asked.
    pub rauc_error: Option<String>,
    pub activity: Activity,
    pub last_attempt: Option<Attempt>,
    pub banners: Vec<Banner>,
    /// The slot "Switch" would boot, or why there is none.
    pub switch_to: Option<String>,
    pub switch_refused: Option<String>,
}

impl Update {
    /// Clears what an interrupted transfer left and reads the running version (the
    /// package version when the file is missing: a development build).
    pub fn new(installer: Arc<dyn Installer>, paths: Paths, reboot: RebootFn) -> Self {
        let version = std::fs::read_to_string(&paths.version_file)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        let store = Store::new(paths.incoming());
        store.clean();
        Self {
            installer,
            paths,
            store,
            counters: Counters::default(),
            version,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            activity: Mutex::new(Activity {
                phase: Phase::Idle,
                received: 0,
                expected: None,
                version: String::new(),
            }),
            last_attempt: Mutex::new(None),
            reboot,
            idle_timeout: Duration::from_secs(60),
            download_timeout: Duration::from_secs(3600),
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn installer(&self) -> &Arc<dyn Installer> {
        &self.installer
    }

    fn set_activity(&self, f: impl FnOnce(&mut Activity)) {
        f(&mut self.activity.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn activity(&self) -> Activity {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn last_attempt(&self) -> Option<Attempt> {
        self.last_attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, ok: bool, message: String) {
        eprintln!("update: {message}");
        *self.last_attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Attempt {
            ok,
            message,
            at: crate::clock::unix_now(),
        });
    }

    /// Counts and records a refusal, deletes what was received, and hands it back.
    pub fn reject(&self, r: Refusal) -> Refusal {
        if let Some(c) = r.counter(&self.counters.rejected) {
            c.fetch_add(1, Relaxed);
        }
        if r != Refusal::Busy {
            self.store.discard();
            self.record(false, r.message());
        }
        r
    }

    pub fn is_busy(&self) -> bool {
        self.lock.try_lock().is_err()
    }

    /// Takes the one-update-at-a-time lock, or says who has it.
    pub fn begin(self: &Arc<Self>) -> Result<Busy, Refusal> {
        let guard = self
            .lock
            .clone()
            .try_lock_owned()
            .map_err(|_| Refusal::Busy)?;
        Ok(Busy {
            _guard: guard,
            update: self.clone(),
        })
    }

    /// Streams a bundle into the store. `expected` (a Content-Length) lets a bundle that
    /// cannot fit be refused before its first byte.
    pub async fn receive<S, E>(
        &self,
        _busy: &Busy,
        source: Source,
        expected: Option<u64>,
        chunks: S,
    ) -> Result<PathBuf, Refusal>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        self.set_activity(|a| {
            a.phase = Phase::Receiving;
            a.received = 0;
            a.expected = expected;
        });
        let how = match source {
            Source::Upload => "upload",
            Source::Download => "download",
        };
        let result = async {
            let mut w = self.store.begin(expected).await?;
            let mut chunks = std::pin::pin!(chunks);
            loop {
                let next = tokio::time::timeout(self.idle_timeout, chunks.next())
                    .await
                    .map_err(|_| {
                        Refusal::Other(format!(
                            "{how} stalled: nothing arrived for {} s",
                            self.idle_timeout.as_secs()
                        ))
                    })?;
                match next {
                    None => break,
                    Some(Err(e)) => return Err(Refusal::Other(format!("{how} interrupted: {e}"))),
                    Some(Ok(b)) => {
                        w.write(&b).await?;
                        let n = w.written();
                        self.set_activity(|a| a.received = n);
                    }
                }
            }
            if w.written() == 0 {
                return Err(Refusal::Other(format!("{how}: the bundle is empty")));
            }
            Ok(w.finish().await?)
        }
        .await;
        match result {
            Ok(p) => {
                match source {
                    Source::Upload => &self.counters.uploads,
                    Source::Download => &self.counters.downloads,
                }
                .fetch_add(1, Relaxed);
                Ok(p)
            }
            Err(r) => Err(self.reject(r)),
        }
    }

    /// Fetches `url` (http or https) into the store.
    pub async fn download(&self, busy: &Busy, url: &str) -> Result<PathBuf, Refusal> {
        let (len, stream) =
            match download::open(url, self.idle_timeout, self.download_timeout).await {
                Ok(x) => x,
                Err(m) => return Err(self.reject(Refusal::Other(m))),
            };
        self.receive(busy, Source::Download, len, stream).await
    }

    /// Has RAUC check the received bundle, checks it is for us, and starts the install in
    /// the background (which ends by deleting the bundle and releasing `busy`).
    pub async fn install(
        self: &Arc<Self>,
        busy: Busy,
        path: PathBuf,
        allow_downgrade: bool,
    ) -> Result<BundleInfo, Refusal> {
        self.set_activity(|a| a.phase = Phase::Inspecting);
        let checked = async {
            let info = self.installer.inspect(&path).await.map_err(unverified)?;
            let system = self.installer.compatible().await.map_err(refusal_of)?;
            check_bundle(&info, &system, &self.version, allow_downgrade)?;
            Ok(info)
        }
        .await;
        let info = checked.map_err(|r| self.reject(r))?;
        self.set_activity(|a| {
            a.phase = Phase::Installing;
            a.version = info.version.clone();
        });
        eprintln!(
            "update: installing {} from {}",
            info.version,
            path.display()
        );
        let me = self.clone();
        let version = info.version.clone();
        tokio::spawn(async move {
            let result = me.installer.install(&path).await;
            me.store.discard();
            match result {
                Ok(()) => {
                    me.counters.installs_ok.fetch_add(1, Relaxed);
                    me.record(true, format!("installed {version}; reboot to start it"));
                }
                Err(e) => {
                    me.counters.installs_failed.fetch_add(1, Relaxed);
                    me.record(false, format!("install of {version} failed: {e}"));
                }
            }
            drop(busy);
        });
        Ok(info)
    }

    /// Marks the other slot active; the caller then reboots into it.
    pub async fn switch(self: &Arc<Self>) -> Result<String, Refusal> {
        let _busy = self.begin()?;
        let boot = self.installer.boot_slot().await.map_err(refusal_of)?;
        let slots = self.installer.slot_status().await.map_err(refusal_of)?;
        let target = switch_target(&slots, &boot).map_err(Refusal::Other)?;
        let bootname = target.bootname.clone();
        let (name, msg) = self
            .installer
            .mark("active", "other")
            .await
            .map_err(refusal_of)?;
        self.record(
            true,
            format!("switching to slot {bootname} ({name}: {msg}); rebooting"),
        );
        Ok(bootname)
    }

    /// Asks for the reboot a moment from now, so the page saying so gets out first.
    pub fn reboot_soon(&self) {
        let reboot = self.reboot.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REBOOT_DELAY).await;
            eprintln!("update: reboot requested from the admin page");
            if let Err(e) = reboot() {
                eprintln!("update: {e}");
            }
        });
    }

    /// The running slot (from the kernel command line) and the record banners, without
    /// asking RAUC: what the dashboard shows on every view.
    pub fn quick_banners(&self) -> (String, Vec<records::Banner>) {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let slot = cmdline_slot(&cmdline).unwrap_or_default();
        let last: Option<Last> = records::read(&self.paths.last());
        let pending: Option<Pending> = records::read(&self.paths.pending());
        let banners = records::banners(last.as_ref(), pending.as_ref(), &slot);
        (slot, banners)
    }

    /// The state of things, as far as RAUC will say. RAUC not running is not an error
    /// here: the page shows it.
    pub async fn snapshot(&self) -> Snapshot {
        let inst = &self.installer;
        let mut rauc_error = None;
        let compatible = noted(inst.compatible().await, &mut rauc_error);
        // Nothing more to ask if it is not there (each question would fail the same way).
        let up = rauc_error.is_none();
        let (boot_slot, operation, progress, rauc_last_error, slots) = if up {
            (
                noted(inst.boot_slot().await, &mut rauc_error),
                noted(inst.operation().await, &mut rauc_error),
                noted(inst.progress().await, &mut rauc_error),
                noted(inst.last_error().await, &mut rauc_error),
                noted(inst.slot_status().await, &mut rauc_error),
            )
        } else {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            let slot = cmdline_slot(&cmdline).unwrap_or_default();
            (
                slot,
                String::new(),
                Progress::default(),
                String::new(),
                Vec::new(),
            )
        };
        let last: Option<Last> = records::read(&self.paths.last());
        let pending: Option<Pending> = records::read(&self.paths.pending());
        let banners = records::banners(last.as_ref(), pending.as_ref(), &boot_slot);
        let (switch_to, switch_refused) = if up {
            match switch_target(&slots, &boot_slot) {
                Ok(s) => (Some(s.bootname.clone()), None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, rauc_error.clone())
        };
        let last_attempt = self.last_attempt();
        let last_error = match &last_attempt {
            Some(a) if !a.ok => a.message.clone(),
            _ => rauc_last_error.clone(),
        };
        Snapshot {
            version: self.version.clone(),
            boot_slot,
            compatible,
            operation,
            progress,
            last_error,
            rauc_last_error,
            slots,
            last,
            pending,
            counters: self.counters.view(),
            rauc_error,
            activity: self.activity(),
            last_attempt,
            banners,
            switch_to,
            switch_refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{bundle_header, FakeInstaller};
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const RUNNING: &str = "0.2.0+g1a2b3c4.20261122T0512";

    struct Lab {
        update: Arc<Update>,
        fake: Arc<FakeInstaller>,
        reboots: Arc<AtomicUsize>,
        dir: PathBuf,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn lab(tag: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("gh-update-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("version"), format!("{RUNNING}\n")).unwrap();
        let mut paths = Paths::new(dir.join("gatehouse.toml"), &dir);
        paths.version_file = dir.join("version");
        let fake = Arc::new(FakeInstaller::new("gatehouse-x86_64", "0.1.0"));
        let reboots = Arc::new(AtomicUsize::new(0));
        let r = reboots.clone();
        let update = Arc::new(Update::new(
            fake.clone(),
            paths,
            Arc::new(move || {
                r.fetch_add(1, Relaxed);
                Ok(())
            }),
        ));
        Lab {
            update,
            fake,
            reboots,
            dir,
        }
    }

    async fn offer(l: &Lab, bundle: Vec<u8>, allow_downgrade: bool) -> Result<BundleInfo, Refusal> {
        let busy = l.update.begin()?;
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(bundle))]);
        let p = l
            .update
            .receive(&busy, Source::Upload, None, chunks)
            .await?;
        l.update.install(busy, p, allow_downgrade).await
    }

    async fn idle(u: &Update) {
        for _ in 0..500 {
            if !u.is_busy() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the install never finished");
    }

    #[test]
    fn bundle_checks() {
        let b = |c: &str, v: &str| BundleInfo {
            compatible: c.into(),
            version: v.into(),
        };
        assert_eq!(
            check_bundle(
                &b("gatehouse-aarch64", "9.0.0"),
                "gatehouse-x86_64",
                RUNNING,
                true
            ),
            Err(Refusal::Compatible {
                bundle: "gatehouse-aarch64".into(),
                system: "gatehouse-x86_64".into()
            })
        );
        let older = "0.1.0+g1.20261101T0000";
        let r = check_bundle(
            &b("gatehouse-x86_64", older),
            "gatehouse-x86_64",
            RUNNING,
            false,
        )
        .unwrap_err();
        assert_eq!(
            r.message(),
            format!("bundle {older} is older than running {RUNNING}; tick 'allow downgrade' to install it")
        );
        assert!(check_bundle(
            &b("gatehouse-x86_64", older),
            "gatehouse-x86_64",
            RUNNING,
            true
        )
        .is_ok());
        assert!(check_bundle(
            &b("gatehouse-x86_64", "0.3.0"),
            "gatehouse-x86_64",
            RUNNING,
            false
        )
        .is_ok());
    }

    #[test]
    fn switching_needs_a_good_other_slot() {
        let fake = FakeInstaller::new("c", "0.1.0");
        let slots = fake.slots.lock().unwrap().clone();
        assert_eq!(switch_target(&slots, "A").unwrap().bootname, "B");
        fake.set_other_status("bad");
        let slots = fake.slots.lock().unwrap().clone();
        let e = switch_target(&slots, "A").unwrap_err();
        assert!(e.contains("slot B is not marked good"), "{e}");
        assert!(switch_target(&slots[..1], "A").is_err());
    }

    #[test]
    fn slot_from_the_kernel_command_line() {
        assert_eq!(
            cmdline_slot("BOOT_IMAGE=/vmlinuz root=/dev/sda3 rauc.slot=B console=ttyS0").as_deref(),
            Some("B")
        );
        assert_eq!(cmdline_slot("quiet"), None);
    }

    #[tokio::test]
    async fn installs_a_newer_bundle_then_deletes_it() {
        let l = lab("ok");
        l.fake.pause(true);
        let mut bundle = bundle_header("gatehouse-x86_64", "0.3.0+gabc.20270101T0000");
        bundle.extend(vec![7u8; 100_000]);
        let info = offer(&l, bundle.clone(), false).await.unwrap();
        assert_eq!(info.version, "0.3.0+gabc.20270101T0000");
        // A second one meanwhile is turned away, and does not disturb the first.
        assert_eq!(l.update.begin().err(), Some(Refusal::Busy));
        while !l.fake.is_installing() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = l.update.snapshot().await;
        assert_eq!(s.activity.phase, Phase::Installing);
        assert_eq!(s.operation, "installing");
        assert_eq!(std::fs::read(l.update.paths.incoming()).unwrap(), bundle);
        l.fake.pause(false);
        idle(&l.update).await;
        assert!(!l.update.paths.incoming().exists(), "bundle left behind");
        assert_eq!(l.fake.installed.lock().unwrap()[0].len, bundle.len() as u64);
        let c = &l.update.counters;
        assert_eq!(
            (c.uploads.load(Relaxed), c.installs_ok.load(Relaxed)),
            (1, 1)
        );
        assert!(l.update.last_attempt().unwrap().ok);
        assert_eq!(l.update.activity().phase, Phase::Idle);
    }

    #[tokio::test]
    async fn a_failed_install_is_counted_and_cleaned_up() {
        let l = lab("fail");
        *l.fake.install_result.lock().unwrap() = Err("write to /dev/sda4 failed".into());
        offer(&l, bundle_header("gatehouse-x86_64", "0.3.0"), false)
            .await
            .unwrap();
        idle(&l.update).await;
        assert!(!l.update.paths.incoming().exists());
        assert_eq!(l.update.counters.installs_failed.load(Relaxed), 1);
        let a = l.update.last_attempt().unwrap();
        assert!(
            !a.ok && a.message.contains("write to /dev/sda4 failed"),
            "{a:?}"
        );
    }

    #[tokio::test]
    async fn refusals_are_counted_and_leave_nothing() {
        let l = lab("refuse");
        let r = offer(&l, bundle_header("gatehouse-aarch64", "0.3.0"), false)
            .await
            .unwrap_err();
        assert!(matches!(r, Refusal::Compatible { .. }), "{r:?}");
        let r = offer(&l, bundle_header("gatehouse-x86_64", "0.1.0"), false)
            .await
            .unwrap_err();
        assert!(r.message().contains("is older than running"), "{r:?}");
        let r = offer(&l, b"not a bundle".to_vec(), false)
            .await
            .unwrap_err();
        assert!(matches!(r, Refusal::Signature(_)), "{r:?}");
        l.fake.down.store(true, Relaxed);
        let r = offer(&l, bundle_header("gatehouse-x86_64", "0.3.0"), false)
            .await
            .unwrap_err();
        assert!(r.message().starts_with("RAUC not running"), "{r:?}");
        let c = l.update.counters.view();
        assert_eq!(
            (
                c.rejected,
                c.rejected_by.compatible,
                c.rejected_by.downgrade
            ),
            (4, 1, 1)
        );
        assert_eq!((c.rejected_by.signature, c.rejected_by.other), (1, 1));
        assert!(!l.update.paths.incoming().exists());
        assert!(l.fake.installed.lock().unwrap().is_empty());
        assert!(!l.update.is_busy());
        // The API's last_error says why, though RAUC never saw the bundle.
        l.fake.down.store(false, Relaxed);
        let snap = l.update.snapshot().await;
        assert!(
            snap.last_error.starts_with("RAUC not running"),
            "{}",
            snap.last_error
        );
        assert_eq!(snap.rauc_last_error, "");
        // Downgrade allowed: goes through, and the error is cleared.
        offer(&l, bundle_header("gatehouse-x86_64", "0.1.0"), true)
            .await
            .unwrap();
        idle(&l.update).await;
        assert_eq!(l.update.counters.installs_ok.load(Relaxed), 1);
        assert_eq!(l.update.snapshot().await.last_error, "");
    }

    #[tokio::test]
    async fn page_state_with_rauc_down() {
        let l = lab("down");
        l.fake.down.store(true, Relaxed);
        let s = l.update.snapshot().await;
        assert!(s
            .rauc_error
            .as_deref()
            .unwrap()
            .starts_with("RAUC not running"));
        assert_eq!(s.version, RUNNING);
        assert!(s.switch_to.is_none());
    }

    #[tokio::test]
    async fn rolled_back_banner_on_the_page() {
        let l = lab("banner");
        std::fs::create_dir_all(&l.update.paths.update_dir).unwrap();
        std::fs::write(
            l.update.paths.last(),
            r#"{"result":"rolled-back","from_slot":"A","from_version":"0.2.0","to_slot":"B",
               "to_version":"0.3.0","reason":"no network after boot","at":1790000000}"#,
        )
        .unwrap();
        let s = l.update.snapshot().await;
        assert_eq!(
            s.banners[0].text,
            "Update to 0.3.0 failed, rolled back to 0.2.0: no network after boot"
        );
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["last"]["result"], "rolled-back");
        assert!(j["pending"].is_null());
    }

    #[tokio::test]
    async fn switch_is_refused_unless_the_other_slot_is_good() {
        let l = lab("switch");
        l.fake.set_other_status("bad");
        let r = l.update.switch().await.unwrap_err();
        assert!(r.message().contains("not marked good"), "{r:?}");
        assert!(l.fake.marks.lock().unwrap().is_empty());
        assert_eq!(
            l.update
                .snapshot()
                .await
                .switch_refused
                .as_deref()
                .map(|s| s.contains("not marked good")),
            Some(true)
        );
        l.fake.set_other_status("good");
        assert_eq!(l.update.switch().await.unwrap(), "B");
        assert_eq!(
            l.fake.marks.lock().unwrap()[..],
            [("active".to_string(), "other".to_string())]
        );
        assert_eq!(l.reboots.load(Relaxed), 0, "switch itself must not reboot");
        l.update.reboot_soon();
        tokio::time::sleep(REBOOT_DELAY + Duration::from_millis(500)).await;
        assert_eq!(l.reboots.load(Relaxed), 1);
    }
}
