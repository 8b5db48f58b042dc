//! What the other side of an update leaves on /data/update, read only here (JSON):
//!
//! - `pending.json`: written by RAUC's post-install handler once a bundle is in the other
//!   slot; init removes it when that slot's first boot is decided.
//! - `last.json`: written by init when a trial boot of a newly installed slot ends, good or
//!   rolled back.
//!
//! And the lines the update page shows about them.

use serde::Serialize;
use std::path::Path;

pub use update_record::{Last, Pending};

/// Reads one record: absent is `None`, quietly; unreadable or malformed is `None` with a
/// log line (init writes these atomically, so that means someone else wrote it).
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            eprintln!("update: {}: {e}", path.display());
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| eprintln!("update: {}: {e}", path.display()))
        .ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Good,
    Bad,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Banner {
    pub tone: Tone,
    pub text: String,
    /// The page offers the reboot button with it.
    pub reboot: bool,
}

/// What the page says about the last trial boot and an install waiting for a reboot.
/// `boot_slot` is the slot running now ("" if unknown).
pub fn banners(last: Option<&Last>, pending: Option<&Pending>, boot_slot: &str) -> Vec<Banner> {
    let mut out = Vec::new();
    if let Some(l) = last {
        match l.result.as_str() {
            "rolled-back" => out.push(Banner {
                tone: Tone::Bad,
                text: format!(
                    "Update to {} failed, rolled back to {}: {}",
                    l.to_version,
                    l.from_version,
                    if l.reason.is_empty() {
                        "no reason given"
                    } else {
                        &l.reason
                    }
                ),
                reboot: false,
            }),
            "good" => out.push(Banner {
                tone: Tone::Good,
                text: match l.seconds_to_good {
                    Some(s) => format!(
                        "Updated to {} ({} before), healthy after {s:.1} s",
                        l.to_version, l.from_version
                    ),
                    None => format!("Updated to {} ({} before)", l.to_version, l.from_version),
                },
                reboot: false,
            }),
            other => out.push(Banner {
                tone: Tone::Info,
                text: format!("Last update to {}: {other}", l.to_version),
                reboot: false,
            }),
        }
    }
    if let Some(p) = pending {
        if !boot_slot.is_empty() && p.from_slot == boot_slot {
            out.push(Banner {
                tone: Tone::Info,
                text: format!(
                    "Version {} installed in slot {}; reboot to start it",
                    p.to_version, p.to_slot
                ),
                reboot: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(result: &str, reason: &str, secs: Option<f64>) -> Last {
        Last {
            result: result.into(),
            from_slot: "A".into(),
            from_version: "0.1.0+g1.20261101T0000".into(),
            to_slot: "B".into(),
            to_version: "0.2.0+g2.20261122T0512".into(),
            reason: reason.into(),
            at: 1_790_000_000,
            seconds_to_good: secs,
        }
    }

    fn pending() -> Pending {
        Pending {
            from_slot: "A".into(),
            from_version: "0.1.0".into(),
            to_slot: "B".into(),
            to_version: "0.2.0+g2.20261122T0512".into(),
            installed_at: 1_790_000_000,
        }
    }

    #[test]
    fn rolled_back_banner() {
        let b = banners(
            Some(&last(
                "rolled-back",
                "gatewayd did not come up within 120 s",
                None,
            )),
            None,
            "A",
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].tone, Tone::Bad);
        assert_eq!(
            b[0].text,
            "Update to 0.2.0+g2.20261122T0512 failed, rolled back to 0.1.0+g1.20261101T0000: \
             gatewayd did not come up within 120 s"
        );
    }

    #[test]
    fn good_banner() {
        let b = banners(Some(&last("good", "", Some(12.34))), None, "B");
        assert_eq!(
            b[0].text,
            "Updated to 0.2.0+g2.20261122T0512 (0.1.0+g1.20261101T0000 before), healthy after 12.3 s"
        );
        assert_eq!(b[0].tone, Tone::Good);
    }

    #[test]
    fn pending_banner_only_before_the_reboot() {
        let p = pending();
        let b = banners(None, Some(&p), "A");
        assert_eq!(
            b,
            [Banner {
                tone: Tone::Info,
                text: "Version 0.2.0+g2.20261122T0512 installed in slot B; reboot to start it"
                    .into(),
                reboot: true,
            }]
        );
        // Booted into B already (its trial is running): nothing to reboot for.
        assert!(banners(None, Some(&p), "B").is_empty());
        assert!(banners(None, Some(&p), "").is_empty());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_ignored() {
        let d = std::env::temp_dir().join(format!("gh-records-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("last.json");
        assert_eq!(read::<Last>(&p), None);
        std::fs::write(
            &p,
            r#"{"result":"good","from_slot":"A","from_version":"0.1.0","to_slot":"B",
                "to_version":"0.2.0","reason":"","at":1790000000,"seconds_to_good":12.3}"#,
        )
        .unwrap();
        let l: Last = read(&p).unwrap();
        assert_eq!(l.seconds_to_good, Some(12.3));
        assert_eq!(l.to_slot, "B");
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(read::<Last>(&p), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
