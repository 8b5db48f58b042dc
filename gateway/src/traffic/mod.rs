//! Traffic history and packet capture for every LAN device.
//!
//! The NAT thread notes each forwarded packet on a `tap::Tap` (no locks, no waiting); full
//! batches cross a bounded channel to the collector thread (`collector`), which resolves the
//! inside address to a device (`clients`), feeds the 100 ms history (crate
//! `traffic-history`), the per-device capture rings (crate `packet-capture`) and the live
//! stream. The web server reads all three through `Traffic`.
//!
//! Capture keeps the LAN-side view: inside addresses, before NAT going out and after NAT
//! coming in, so a device's file shows its own address and is comparable to a capture taken
//! on the device itself.

pub mod clients;
pub mod collector;
pub mod tap;

use crate::config;
use packet_capture::Captures;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use traffic_history::{Counts, History, Mac};

/// Live updates queued per subscriber before it counts as lagging (and skips ahead).
const LIVE_BACKLOG: usize = 32;

/// What moved in one 100 ms tick, per (device, remote).
#[derive(Debug, Clone)]
pub struct LiveTick {
    pub t_ms: u64,
    pub flows: Vec<(Mac, IpAddr, Counts)>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Packets whose inside address matched no lease or neighbour entry.
    pub unknown_client_packets: AtomicU64,
    /// Live updates a slow WebSocket subscriber skipped.
    pub live_lagged: AtomicU64,
    /// WebSocket subscribers disconnected because they stopped reading.
    pub live_slow_dropped: AtomicU64,
    pub live_subscribers: AtomicU64,
    pub snapshot_errors: AtomicU64,
}

pub struct Traffic {
    history: Mutex<History>,
    captures: Mutex<Captures>,
    pub live: tokio::sync::broadcast::Sender<Arc<LiveTick>>,
    pub tap: Arc<tap::TapControl>,
    pub counters: Counters,
    /// History recording on/off (from the config; capture has its own switch).
    pub enabled: bool,
    snapshot_path: PathBuf,
    /// Milliseconds a WebSocket send may take before the subscriber is dropped.
    pub live_send_timeout_ms: AtomicU32,
}

pub fn history_config(t: &config::Traffic) -> traffic_history::Config {
    traffic_history::Config {
        memory_limit: t.memory_bytes,
        retention_ms: u64::from(t.retention_hours) * 3_600_000,
    }
}

pub fn capture_config(c: &config::Capture) -> packet_capture::Config {
    packet_capture::Config {
        enabled: c.enabled,
        per_client_bytes: c.per_client_bytes,
        total_bytes: c.total_bytes,
        snaplen: c.snaplen,
    }
}

impl Traffic {
    /// Builds the state from the config, restoring the history a clean shutdown saved in
    /// `data_dir`. A missing or unreadable snapshot starts an empty history.
    pub fn new(cfg: &config::Config, data_dir: &Path) -> Self {
        let snapshot_path = data_dir.join("traffic/history.snap");
        let hcfg = history_config(&cfg.traffic);
        let history = match std::fs::File::open(&snapshot_path) {
            Ok(f) => {
                let mut r = std::io::BufReader::new(f);
                match History::read_snapshot(&mut r, hcfg) {
                    Ok(h) => {
                        eprintln!(
                            "gatewayd: traffic: history restored from {}",
                            snapshot_path.display()
                        );
                        h
                    }
                    Err(e) => {
                        eprintln!(
                            "gatewayd: traffic: ignoring {}: {e}",
                            snapshot_path.display()
                        );
                        History::new(history_config(&cfg.traffic))
                    }
                }
            }
            Err(_) => History::new(hcfg),
        };
        // A snapshot is only good once: after a crash the next start must not bring back
        // older history in place of what came since.
        let _ = std::fs::remove_file(&snapshot_path);
        let mut captures = Captures::new(capture_config(&cfg.capture));
        for m in &cfg.capture.disabled_clients {
            if let Some(mac) = config::parse_mac(m) {
                captures.set_client_enabled(mac, false);
            }
        }
        let tap = Arc::new(tap::TapControl::default());
        let snap = if cfg.capture.enabled {
            cfg.capture.snaplen
        } else {
            0
        };
        tap.snaplen.store(snap, Relaxed);
        Self {
            history: Mutex::new(history),
            captures: Mutex::new(captures),
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
            tap,
            counters: Counters::default(),
            enabled: cfg.traffic.enabled,
            snapshot_path,
            live_send_timeout_ms: AtomicU32::new(5_000),
        }
    }

    /// A poisoned lock means a panic elsewhere mid-update; the data is still usable.
    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn captures(&self) -> MutexGuard<'_, Captures> {
        self.captures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the history to the data partition (temp file, fsync, rename), for the next
    /// start. Called on a clean shutdown.
    pub fn save(&self) -> std::io::Result<usize> {
        let mut bytes = Vec::new();
        self.history().write_snapshot(&mut bytes)?;
        let dir = self
            .snapshot_path
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        std::fs::create_dir_all(&dir)?;
        crate::atomic_file::write(&dir, &self.snapshot_path, &bytes)
            .inspect_err(|_| {
                self.counters.snapshot_errors.fetch_add(1, Relaxed);
            })
            .map(|()| bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use traffic_history::{Dir, Record};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gh-traffic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn capture_switches_come_from_the_config() {
        let d = tmp("switch");
        let mut cfg = config::Config::default();
        cfg.capture.snaplen = 200;
        cfg.capture.disabled_clients = vec!["02:00:00:00:00:09".into()];
        let t = Traffic::new(&cfg, &d);
        assert_eq!(t.tap.snaplen.load(Relaxed), 200);
        assert!(!t.captures().wants(&[2, 0, 0, 0, 0, 9]));
        assert!(t.captures().wants(&[2, 0, 0, 0, 0, 8]));
        cfg.capture.enabled = false;
        let off = Traffic::new(&cfg, &d);
        assert_eq!(
            off.tap.snaplen.load(Relaxed),
            0,
            "capture off: the tap copies nothing"
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn snapshot_is_restored_once_and_garbage_is_ignored() {
        let d = tmp("snap");
        let cfg = config::Config::default();
        let now = crate::clock::unix_ms();
        let t = Traffic::new(&cfg, &d);
        t.history().ingest(&[Record {
            t_ms: now,
            client: [2, 0, 0, 0, 0, 1],
            remote: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            dir: Dir::Up,
            bytes: 1234,
        }]);
        assert!(t.save().unwrap() > 0);
        let totals = |t: &Traffic| t.history().summary(None, None, 0, u64::MAX).counts;
        let back = Traffic::new(&cfg, &d);
        assert_eq!(totals(&back).up_bytes, 1234);
        // Consumed: a crash after this start must not bring the old history back.
        assert!(!d.join("traffic/history.snap").exists());
        assert_eq!(totals(&Traffic::new(&cfg, &d)).up_bytes, 0);

        std::fs::write(d.join("traffic/history.snap"), b"not a snapshot").unwrap();
        let fresh = Traffic::new(&cfg, &d);
        assert_eq!(totals(&fresh).up_packets, 0);
        std::fs::remove_dir_all(&d).ok();
    }
}
