//! DHCP leases: held in memory, mirrored to one JSON file on the data partition.
//!
//! The file is rewritten whole and atomically (temp file, fsync, rename, fsync of
//! the directory), so a power cut leaves either the old or the new lease set,
//! never a torn file. Expired leases are kept as history so a returning client
//! gets its old address back; they are the first to go when the table is full.
//!
//! Besides the persisted leases the store holds two short-lived, memory-only
//! tables the allocator needs: addresses reserved by an outstanding OFFER, and
//! addresses quarantined after a DECLINE.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub type SharedStore = Arc<Mutex<LeaseStore>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Serialized as "aa:bb:cc:dd:ee:ff" so the file and the web API stay readable.
    #[serde(with = "mac_text")]
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Unix seconds.
    pub expires: u64,
    /// DHCP client identifier (option 61) as lowercase hex, if the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Lease {
    pub fn is_active(&self, now: u64) -> bool {
        self.expires > now
    }

    pub fn belongs_to(&self, client: &ClientKey) -> bool {
        match (&client.id, &self.client_id) {
            (Some(a), Some(b)) => a == b,
            // One side did not send option 61 (e.g. udhcpc then dhclient on the
            // same interface): the hardware address is all we have.
            _ => self.mac == client.mac,
        }
    }
}

/// Who a DHCP client is: RFC 2131 says the client identifier, when present,
/// takes precedence over chaddr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub mac: [u8; 6],
    pub id: Option<String>,
}

/// The lease table is at `max` entries and none of them has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFull;

#[derive(Debug, Clone)]
struct Offer {
    client: ClientKey,
    until: u64,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    leases: Vec<Lease>,
}

pub struct LeaseStore {
    path: PathBuf,
    max: usize,
    /// One record per address; also at most one per client (see `bind`).
    leases: HashMap<Ipv4Addr, Lease>,
    offers: HashMap<Ipv4Addr, Offer>,
    /// Address -> unix time the quarantine ends.
    declined: HashMap<Ipv4Addr, u64>,
    /// Persisted state changed since the last successful save.
    dirty: bool,
}

impl LeaseStore {
    /// Loads `path` (creating its directory), and proves the location is
    /// writable by saving once, so the caller can fall back elsewhere now rather
    /// than discover a read-only data partition at the first ACK.
    pub fn open(path: &Path, max: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut store = LeaseStore {
            path: path.to_path_buf(),
            max: max.max(1),
            leases: HashMap::new(),
            offers: HashMap::new(),
            declined: HashMap::new(),
            dirty: false,
        };
        match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<FileFormat>(&bytes) {
                Ok(file) => store.load(file.leases),
                Err(e) => {
                    // A bad file must not take DHCP down: keep it for a human and
                    // start empty (clients will re-request their addresses).
                    let aside = with_suffix(path, ".corrupt");
                    match fs::rename(path, &aside) {
                        Ok(()) => eprintln!(
                            "dhcp: lease file {} is corrupt ({e}); moved to {}, starting empty",
                            path.display(),
                            aside.display()
                        ),
                        Err(re) => eprintln!(
                            "dhcp: lease file {} is corrupt ({e}) and could not be moved aside ({re}); starting empty",
                            path.display()
                        ),
                    }
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        store
            .save()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(store)
    }

    fn load(&mut self, leases: Vec<Lease>) {
        for l in leases {
            // Duplicates can only come from hand edits; the longest-lived wins.
            match self.leases.get(&l.ip) {
                Some(old) if old.expires >= l.expires => {}
                _ => {
                    self.leases.insert(l.ip, l);
                }
            }
        }
        // A lowered max_leases: drop the leases that expire soonest.
        while self.leases.len() > self.max {
            let Some(ip) = self.leases.values().min_by_key(|l| l.expires).map(|l| l.ip) else {
                break;
            };
            self.leases.remove(&ip);
        }
    }

    /// All lease records (expired ones included), sorted by address.
    pub fn snapshot(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.leases.values().cloned().collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The record for `client`, preferring an exact client-identifier match.
    pub fn find(&self, client: &ClientKey) -> Option<&Lease> {
        if let Some(id) = &client.id {
            if let Some(l) = self
                .leases
                .values()
                .find(|l| l.client_id.as_deref() == Some(id))
            {
                return Some(l);
            }
        }
        self.leases.values().find(|l| l.belongs_to(client))
    }

    /// The record holding `ip`, active or expired.
    pub fn at(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Whether `bind` for this client could succeed capacity-wise.
    pub fn has_room(&self, client: &ClientKey, now: u64) -> bool {
        self.leases.len() < self.max
            || self.find(client).is_some()
            || self.leases.values().any(|l| !l.is_active(now))
    }

    /// Records `lease`, replacing the client's previous record and whatever
    /// record held the same address. When that does not make room, the oldest
    /// expired lease is evicted; if none has expired the table is full.
    pub fn bind(&mut self, lease: Lease, now: u64) -> Result<(), StoreFull> {
        let client = ClientKey {
            mac: lease.mac,
            id: lease.client_id.clone(),
        };
        let mut freed = false;
        if let Some(old) = self.find(&client).map(|l| l.ip) {
            self.leases.remove(&old);
            freed = true;
        }
        if self.leases.remove(&lease.ip).is_some() {
            freed = true;
        }
        if !freed && self.leases.len() >= self.max {
            let oldest = self
                .leases
                .values()
                .filter(|l| !l.is_active(now))
                .min_by_key(|l| l.expires)
                .map(|l| l.ip);
            match oldest {
                Some(ip) => {
                    self.leases.remove(&ip);
                }
                None => return Err(StoreFull),
            }
        }
        self.offers.remove(&lease.ip);
        self.leases.insert(lease.ip, lease);
        self.dirty = true;
        Ok(())
    }

    /// Ends the client's lease on `ip` now. The record stays so the client gets
    /// the same address next time if nobody else took it meanwhile.
    pub fn release(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64) -> bool {
        match self.leases.get_mut(&ip) {
            Some(l) if l.belongs_to(client) => {
                if l.expires > now {
                    l.expires = now;
                    self.dirty = true;
                }
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let l = self.leases.remove(&ip);
        if l.is_some() {
            self.dirty = true;
        }
        l
    }

    /// Reserves `ip` for `client` until `until` (the OFFER/REQUEST window).
    pub fn reserve(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64, until: u64) {
        self.offers
            .retain(|_, o| o.until > now && o.client != *client);
        self.offers.insert(
            ip,
            Offer {
                client: client.clone(),
                until,
            },
        );
    }

    /// The address currently reserved for `client`, if any.
    pub fn reserved_for(&self, client: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        self.offers
            .iter()
            .find(|(_, o)| o.until > now && o.client == *client)
            .map(|(ip, _)| *ip)
    }

    /// Whether `ip` is reserved for a client other than `client`.
    pub fn reserved_for_other(&self, ip: Ipv4Addr, client: &ClientKey, now: u64) -> bool {
        self.offers
            .get(&ip)
            .is_some_and(|o| o.until > now && o.client != *client)
    }

    pub fn unreserve(&mut self, client: &ClientKey) {
        self.offers.retain(|_, o| o.client != *client);
    }

    pub fn quarantine(&mut self, ip: Ipv4Addr, now: u64, until: u64) {
        self.declined.retain(|_, t| *t > now);
        self.declined.insert(ip, until);
        self.offers.remove(&ip);
    }

    pub fn is_quarantined(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.declined.get(&ip).is_some_and(|t| *t > now)
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes all leases to the file atomically.
    pub fn save(&mut self) -> io::Result<()> {
        let file = FileFormat {
            leases: self.snapshot(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Temp file in the same directory (rename is only atomic within a
/// filesystem), fsync it, rename over the target, fsync the directory so the
/// rename itself survives a power cut.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "lease path has no file name")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

mod mac_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_mac(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let text = String::deserialize(d)?;
        crate::config::parse_mac(&text)
            .ok_or_else(|| D::Error::custom(format!("bad MAC address {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "gh-leases-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn lease(n: u8, expires: u64) -> Lease {
        Lease {
            mac: [0x52, 0x54, 0, 0, 0, n],
            ip: Ipv4Addr::new(192, 168, 1, 100 + n),
            hostname: Some(format!("host{n}")),
            expires,
            client_id: None,
        }
    }

    #[test]
    fn persistence_round_trip() {
        let t = TempDir::new("rt");
        // The parent directory does not exist yet: open must create it.
        let path = t.0.join("dhcp/leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        assert!(path.exists());
        s.bind(lease(1, 1000), 0).unwrap();
        let mut l2 = lease(2, 2000);
        l2.client_id = Some("01525400000002".into());
        l2.hostname = None;
        s.bind(l2, 0).unwrap();
        assert!(s.is_dirty());
        s.save().unwrap();
        assert!(!s.is_dirty());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"52:54:00:00:00:01\""), "{text}");

        let s2 = LeaseStore::open(&path, 10).unwrap();
        assert_eq!(s2.snapshot(), s.snapshot());
        assert_eq!(s2.len(), 2);
    }

    #[test]
    fn atomic_write_leaves_old_file_on_failure() {
        let t = TempDir::new("atomic");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        s.save().unwrap();
        let before = fs::read(&path).unwrap();
        // No temp file is left behind after a successful save.
        let names: Vec<_> = fs::read_dir(&t.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("leases.json")]);

        // Make the temp file impossible to create: the save fails and the
        // previous file is untouched (never truncated or half-written).
        fs::create_dir(t.0.join(".leases.json.tmp")).unwrap();
        s.bind(lease(2, 2000), 0).unwrap();
        assert!(s.save().is_err());
        assert!(s.is_dirty());
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let t = TempDir::new("corrupt");
        let path = t.0.join("leases.json");
        fs::write(&path, b"{\"leases\": [ {\"mac\": 12").unwrap();
        let s = LeaseStore::open(&path, 10).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            fs::read(t.0.join("leases.json.corrupt")).unwrap(),
            b"{\"leases\": [ {\"mac\": 12"
        );
        // A fresh, valid file replaced it.
        let again = LeaseStore::open(&path, 10).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn full_table_evicts_oldest_expired_then_refuses() {
        let t = TempDir::new("evict");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 3).unwrap();
        let now = 5000;
        s.bind(lease(1, 3000), 0).unwrap(); // expired, newer
        s.bind(lease(2, 2000), 0).unwrap(); // expired, oldest
        s.bind(lease(3, 9000), 0).unwrap(); // active
        s.bind(lease(4, 9000), now).unwrap();
        let ips: Vec<_> = s.snapshot().iter().map(|l| l.ip.octets()[3]).collect();
        assert_eq!(ips, vec![101, 103, 104]);
        s.bind(lease(5, 9000), now).unwrap();
        assert!(s.at(Ipv4Addr::new(192, 168, 1, 101)).is_none());
        // Everything left is active: no room for a new client...
        assert_eq!(s.bind(lease(6, 9000), now), Err(StoreFull));
        assert!(!s.has_room(
            &ClientKey {
                mac: [0x52, 0x54, 0, 0, 0, 6],
                id: None
            },
            now
        ));
        // ...but an existing client can still renew.
        s.bind(lease(5, 12000), now).unwrap();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn load_trims_to_max() {
        let t = TempDir::new("trim");
        let path = t.0.join("l.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        for n in 1..=5 {
            s.bind(lease(n, 1000 * n as u64), 0).unwrap();
        }
        s.save().unwrap();
        let s = LeaseStore::open(&path, 2).unwrap();
        let ips: Vec<_> = s.snapshot().iter().map(|l| l.ip.octets()[3]).collect();
        assert_eq!(ips, vec![104, 105]);
    }

    #[test]
    fn client_identity() {
        let mut l = lease(1, 100);
        let mac = l.mac;
        assert!(l.belongs_to(&ClientKey { mac, id: None }));
        assert!(l.belongs_to(&ClientKey {
            mac,
            id: Some("01ff".into())
        }));
        l.client_id = Some("01aa".into());
        assert!(l.belongs_to(&ClientKey { mac, id: None }));
        assert!(!l.belongs_to(&ClientKey {
            mac,
            id: Some("01ff".into())
        }));
        // The client identifier follows the client across NICs.
        assert!(l.belongs_to(&ClientKey {
            mac: [9; 6],
            id: Some("01aa".into())
        }));
    }

    #[test]
    fn release_keeps_record_but_expires_it() {
        let t = TempDir::new("rel");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        let me = ClientKey {
            mac: lease(1, 0).mac,
            id: None,
        };
        let other = ClientKey {
            mac: [1; 6],
            id: None,
        };
        assert!(!s.release(&other, lease(1, 0).ip, 10));
        assert!(s.release(&me, lease(1, 0).ip, 10));
        assert!(!s.at(lease(1, 0).ip).unwrap().is_active(10));
    }
}
