//! The records of an A/B update on the data partition, as JSON: written by RAUC's
//! post-install handler (`pending.json`) and init (`last.json`), read by gatewayd's
//! update page. One definition, so the writers and the reader cannot drift apart.

use serde::{Deserialize, Serialize};

/// An install waiting for its first boot: the next boot of `to_slot` is a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub from_slot: String,
    pub from_version: String,
    pub to_slot: String,
    pub to_version: String,
    #[serde(default)]
    pub installed_at: u64,
}

impl Pending {
    /// RAUC's slot name for the target (bootname A is rootfs.0, B rootfs.1).
    pub fn to_slot_name(&self) -> String {
        match self.to_slot.as_str() {
            "A" => "rootfs.0".into(),
            "B" => "rootfs.1".into(),
            other => other.into(),
        }
    }
}

/// How the last trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Last {
    /// "good" or "rolled-back".
    pub result: String,
    pub from_slot: String,
    pub from_version: String,
    pub to_slot: String,
    pub to_version: String,
    /// Why the new slot was given up; empty when good.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub at: u64,
    /// Seconds from power-on to marked good (only when good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_good: Option<f64>,
}

impl Last {
    pub fn good(p: &Pending, at: u64, seconds: f64) -> Self {
        Self::new(p, "good", String::new(), at, Some(seconds))
    }

    pub fn rolled_back(p: &Pending, reason: String, at: u64) -> Self {
        Self::new(p, "rolled-back", reason, at, None)
    }

    fn new(p: &Pending, result: &str, reason: String, at: u64, s: Option<f64>) -> Self {
        Self {
            result: result.into(),
            from_slot: p.from_slot.clone(),
            from_version: p.from_version.clone(),
            to_slot: p.to_slot.clone(),
            to_version: p.to_version.clone(),
            reason,
            at,
            seconds_to_good: s,
        }
    }
}
