//! gatehouse-init's parts, shared by PID 1 (`gatehouse-init`) and the serial
//! recovery console (`gatehouse-console`).

pub mod atomic_file;
pub mod bootslot;
pub mod clock;
pub mod console;
pub mod data;
pub mod dhcp_probe;
pub mod ext4_super;
pub mod grow;
pub mod health;
pub mod hotplug;
pub mod lan_probe;
pub mod log;
pub mod logring;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod prefetch;
pub mod priority;
pub mod process;
pub mod rauc;
pub mod services;
pub mod settings;
pub mod shutdown;
pub mod supervise;
pub mod sysctl;
pub mod update_record;
pub mod wake;
pub mod watchdog;
pub mod wlan;
