//! The router's own load for the dashboard: CPU, memory, load average, data partition.
//!
//! CPU use is a difference between two readings, so one `sysinfo::System` is kept between
//! page views; each view reads the use since the previous one.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

pub struct HostStats {
    sys: Mutex<sysinfo::System>,
}

impl Default for HostStats {
    fn default() -> Self {
        let mut sys = sysinfo::System::new();
        sys.refresh_cpu_usage();
        Self {
            sys: Mutex::new(sys),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HostSample {
    /// Since the previous sample (0 on the first).
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_used: u64,
    pub memory_total: u64,
    pub load: [f64; 3],
}

impl HostStats {
    pub fn sample(&self) -> HostSample {
        let mut sys = self.sys.lock().unwrap_or_else(PoisonError::into_inner);
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let l = sysinfo::System::load_average();
        HostSample {
            cpu_percent: sys.global_cpu_usage(),
            cpus: sys.cpus().len(),
            memory_used: sys.used_memory(),
            memory_total: sys.total_memory(),
            load: [l.one, l.five, l.fifteen],
        }
    }
}

/// Free and total bytes of the filesystem holding `dir`.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let v = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = v.fragment_size() as u64;
    Some((v.blocks_available() as u64 * frag, v.blocks() as u64 * frag))
}

/// The dashboard's warning for a data partition close to full: under 5 % or 64 MiB free
/// (leases, config edits and traffic snapshots all need room to be written safely).
pub fn disk_warning(free: u64, total: u64) -> Option<String> {
    if total == 0 {
        return None;
    }
    let low = free < 64 << 20 || free.saturating_mul(20) < total;
    low.then(|| {
        format!(
            "The data partition is nearly full: {} free of {}. Settings and leases may fail \
             to save.",
            super::format_bytes(free),
            super::format_bytes(total)
        )
    })
}

/// One step of init's boot timeline (/run/gatehouse/boot.json).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BootStep {
    pub step: String,
    /// Seconds since the kernel started.
    pub t: f64,
}

pub fn boot_timeline(run_dir: &Path) -> Vec<BootStep> {
    std::fs::read(run_dir.join("boot.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_warning_thresholds() {
        assert_eq!(disk_warning(0, 0), None);
        assert_eq!(disk_warning(10 << 30, 100 << 30), None);
        assert!(disk_warning(4 << 30, 100 << 30)
            .unwrap()
            .contains("4.0 GiB free of 100.0 GiB"));
        assert!(disk_warning(60 << 20, 200 << 20).is_some());
    }

    #[test]
    fn timeline_reads_inits_file() {
        let dir = std::env::temp_dir().join(format!("gh-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(boot_timeline(&dir).is_empty());
        std::fs::write(
            dir.join("boot.json"),
            r#"[{"step":"init","t":0.512},{"step":"mounts","t":0.9}]"#,
        )
        .unwrap();
        let t = boot_timeline(&dir);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[1],
            BootStep {
                step: "mounts".into(),
                t: 0.9
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn samples_are_plausible() {
        let h = HostStats::default();
        let s = h.sample();
        assert!(s.memory_total > 0 && s.memory_used <= s.memory_total);
        assert!(s.cpus > 0);
    }
}
