//! What init knows about the last update, on the data partition.
//!
//! - `pending.json` is written by RAUC's post-install handler once a bundle is
//!   in the other slot. Its presence makes the next boot of that slot a trial.
//! - `last.json` is written when a trial ends: the new slot proved healthy, or
//!   it did not and the old slot is back. The admin UI shows it.
//!
//! Boot states (see `classify`):
//!
//! ```text
//!   no pending                      -> Normal      (mark good once gatewayd is up)
//!   pending, booted == to_slot      -> Trial       (health gate: good, or bad + reboot)
//!   pending, booted != to_slot      -> RolledBack  (record why, mark the new slot bad)
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DIR: &str = "/data/update";

pub use update_record::{Last, Pending};

#[derive(Debug, Clone, PartialEq)]
pub enum BootKind {
    Normal,
    Trial(Pending),
    /// The old slot is running again. `recorded` is true when the new slot
    /// already wrote its own reason before it gave up.
    RolledBack {
        pending: Pending,
        recorded: bool,
    },
}

pub fn classify(pending: Option<Pending>, last: Option<&Last>, booted: &str) -> BootKind {
    let Some(p) = pending else {
        return BootKind::Normal;
    };
    if p.to_slot == booted {
        return BootKind::Trial(p);
    }
    let recorded = last.is_some_and(|l| l.to_version == p.to_version && l.at >= p.installed_at);
    BootKind::RolledBack {
        pending: p,
        recorded,
    }
}

/// The reason recorded when the new slot never got as far as its health gate.
pub fn silent_failure_reason(p: &Pending) -> String {
    format!(
        "slot {} never reported healthy (kernel or init failed, or it hung); \
         the bootloader's try counter fell back to slot {}",
        p.to_slot, p.from_slot
    )
}

/// The files, under a directory (tests use a temporary one).
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Option<T> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                crate::log!("update: {}: {e}; ignored", self.path(name).display());
                None
            }
        }
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        crate::atomic_file::write(&self.path(name), &text)
    }

    pub fn pending(&self) -> Option<Pending> {
        self.read("pending.json")
    }

    pub fn last(&self) -> Option<Last> {
        self.read("last.json")
    }

    pub fn set_pending(&self, p: &Pending) -> std::io::Result<()> {
        self.write("pending.json", p)
    }

    pub fn set_last(&self, l: &Last) -> std::io::Result<()> {
        self.write("last.json", l)
    }

    pub fn clear_pending(&self) {
        let _ = std::fs::remove_file(self.path("pending.json"));
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The `version=` of a RAUC manifest.
pub fn manifest_version(manifest: &str) -> Option<String> {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("version="))
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            from_slot: "A".into(),
            from_version: "0.1.0+g1.20260101T0000".into(),
            to_slot: "B".into(),
            to_version: "0.1.1+g2.20260102T0000".into(),
            installed_at: 1000,
        }
    }

    #[test]
    fn boot_kinds() {
        assert_eq!(classify(None, None, "A"), BootKind::Normal);
        assert_eq!(
            classify(Some(pending()), None, "B"),
            BootKind::Trial(pending())
        );
        assert_eq!(
            classify(Some(pending()), None, "A"),
            BootKind::RolledBack {
                pending: pending(),
                recorded: false
            }
        );
        // The new slot wrote its reason before it rebooted.
        let l = Last::rolled_back(&pending(), "gatewayd crash loop".into(), 1200);
        assert!(matches!(
            classify(Some(pending()), Some(&l), "A"),
            BootKind::RolledBack { recorded: true, .. }
        ));
        // A record of an earlier attempt does not count for this one.
        let old = Last::rolled_back(&pending(), "older".into(), 999);
        assert!(matches!(
            classify(Some(pending()), Some(&old), "A"),
            BootKind::RolledBack {
                recorded: false,
                ..
            }
        ));
    }

    #[test]
    fn store_round_trip_and_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("gh-update-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::new(&dir);
        assert_eq!(s.pending(), None);
        s.set_pending(&pending()).unwrap();
        assert_eq!(s.pending(), Some(pending()));
        let l = Last::good(&pending(), 1100, 42.5);
        s.set_last(&l).unwrap();
        assert_eq!(s.last(), Some(l));
        s.clear_pending();
        assert_eq!(s.pending(), None);
        std::fs::write(dir.join("last.json"), b"{not json").unwrap();
        assert_eq!(s.last(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn version_from_manifest() {
        let m = "[update]\ncompatible=gatehouse-x86_64\nversion=0.1.1+gabc.20261122T0512\n";
        assert_eq!(
            manifest_version(m).as_deref(),
            Some("0.1.1+gabc.20261122T0512")
        );
        assert_eq!(manifest_version("[update]\n"), None);
    }
}
