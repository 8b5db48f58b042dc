//! Placeholder: persistent lease store.
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub type SharedStore = Arc<Mutex<LeaseStore>>;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    /// Unix seconds.
    pub expires: u64,
}

pub struct LeaseStore {}

impl LeaseStore {
    pub fn open(_path: &Path, _max: usize) -> anyhow::Result<Self> {
        Ok(Self {})
    }
    pub fn snapshot(&self) -> Vec<Lease> {
        Vec::new()
    }
}
