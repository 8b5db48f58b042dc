//! gatewayd's services as a library, so the daemon, the tests and the fuzz
//! targets share one implementation.

pub mod atomic_file;
pub mod clock;
pub mod config;
pub mod context;
pub mod dhcp;
pub mod dns;
pub mod nat;
pub mod oui;
pub mod readiness;
pub mod traffic;
pub mod update;
pub mod wan;
pub mod web;
