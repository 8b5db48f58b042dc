//! DHCP leases: held in memory, made durable on the data partition as a
//! snapshot plus a journal.
//!
//! - `leases.json` is the snapshot: `{"journal_gen": N, "leases": [...]}`, one
//!   lease per line. It is only ever replaced whole and atomically (temp file,
//!   fsync, rename, fsync of the directory).
//! - `leases.journal` holds the changes made since that snapshot, one JSON
//!   line each (`{"put": lease}` or `{"del": "ip"}`), after a header line
//!   `{"gen": N}`. It only counts when N matches the snapshot's `journal_gen`.
//!
//! Every change the allocator makes is recorded, in memory, as a journal line
//! (`pending`) with a sequence number. The server's committer takes all pending
//! lines at once (`begin_flush`), appends them with one write and one fdatasync
//! (`Flush::run`, without holding the store's lock), and only then sends the
//! ACKs whose changes are covered: group commit. Now and then (journal larger
//! than the snapshot, or after a write error) a flush is a compaction instead:
//! a new snapshot with generation N+1, then a fresh journal for N+1. A crash
//! at any point leaves either the old snapshot with its journal, or the new
//! snapshot (whose generation makes the old journal void).
//!
//! Expired leases are kept as history so a returning client gets its old
//! address back; they are the first to go when the table is full.
//!
//! Besides the persisted leases the store holds two short-lived, memory-only
//! tables the allocator needs: addresses reserved by an outstanding OFFER (or
//! being ping-checked before one), and addresses quarantined after a DECLINE
//! or a conflict.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
// Seeded per process (clients choose the keys), and much cheaper than SipHash
// on the allocator's hot path.
use foldhash::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub type SharedStore = Arc<Mutex<LeaseStore>>;

/// A journal smaller than this is never compacted for its size alone.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// How often (in unix seconds of `now`) expired offers are swept.
const OFFER_SWEEP_SECS: u64 = 10;

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Held while the address is ping-checked; no OFFER has gone out yet.
    probing: bool,
}

/// One journal line.
#[derive(Serialize, Deserialize)]
enum Op {
    #[serde(rename = "put")]
    Put(Lease),
    #[serde(rename = "del")]
    Del(Ipv4Addr),
}

#[derive(Serialize, Deserialize)]
struct JournalHeader {
    gen: u64,
}

#[derive(Deserialize)]
struct FileFormat {
    /// Absent in files written before the journal existed.
    #[serde(default)]
    journal_gen: u64,
    leases: Vec<Lease>,
}

pub struct LeaseStore {
    max: usize,
    /// One record per address; also at most one per client (see `bind`).
    leases: HashMap<Ipv4Addr, Lease>,
    by_id: HashMap<String, Ipv4Addr>,
    by_mac: HashMap<[u8; 6], Vec<Ipv4Addr>>,
    /// Host names are unique across records (`bind` takes a name away from
    /// the record that had it).
    by_name: HashMap<String, Ipv4Addr>,
    by_expiry: BTreeSet<(u64, Ipv4Addr)>,
    offers: HashMap<Ipv4Addr, Offer>,
    offer_of: HashMap<ClientKey, Ipv4Addr>,
    last_sweep: u64,
    /// Address -> unix time the quarantine ends.
    declined: HashMap<Ipv4Addr, u64>,
    /// Where the allocator's search for a never-used address resumes: every
    /// pool address below it has a record, is held for a client or is
    /// quarantined (ending any of these lowers it), or can never be handed
    /// out (see `server_logic::choose`).
    cursor: Option<u32>,

    writer: Arc<Mutex<Writer>>,
    /// Journal lines not yet handed to a flush.
    pending: Vec<u8>,
    /// Changes recorded so far, and how many of them are known durable.
    seq: u64,
    durable: u64,
    /// Generation of the snapshot on disk.
    gen: u64,
    journal_bytes: u64,
    snapshot_bytes: u64,
    /// The journal may be damaged (failed write): the next flush compacts.
    need_compact: bool,
}

/// The files, touched only through a `Flush` (by one thread at a time).
struct Writer {
    dir: PathBuf,
    path: PathBuf,
    journal_path: PathBuf,
    /// Open for appending while the journal is sound.
    journal: Option<File>,
}

/// Work to make everything recorded up to `upto` durable, taken from the store
/// under its lock and run without it.
pub struct Flush {
    writer: Arc<Mutex<Writer>>,
    work: Work,
    upto: u64,
}

enum Work {
    Nothing,
    Append(Vec<u8>),
    Compact { gen: u64, leases: Vec<Lease> },
}

impl Flush {
    /// Changes up to this sequence number are durable once `run` succeeds.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    pub fn is_compaction(&self) -> bool {
        matches!(self.work, Work::Compact { .. })
    }

    /// Does the file work; returns the bytes written.
    pub fn run(&self) -> io::Result<u64> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match &self.work {
            Work::Nothing => Ok(0),
            Work::Append(bytes) => w.append(bytes),
            Work::Compact { gen, leases } => w.compact(*gen, leases),
        }
    }
}

impl Writer {
    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let f = self.journal.as_mut().ok_or_else(|| {
            io::Error::other("journal unusable since an earlier error; waiting for compaction")
        })?;
        let r = f.write_all(bytes).and_then(|()| f.sync_data());
        if r.is_err() {
            // Whatever reached the file is suspect (and after a failed fsync the
            // kernel may have dropped the pages): stop appending to it.
            self.journal = None;
        }
        r.map(|()| bytes.len() as u64)
    }

    /// Snapshot first, then the new journal: until the snapshot's rename is
    /// durable the old snapshot and journal stand; after it, the old journal
    /// no longer matches and is ignored.
    fn compact(&mut self, gen: u64, leases: &[Lease]) -> io::Result<u64> {
        self.journal = None;
        let mut bytes = format!("{{\"journal_gen\":{gen},\"leases\":[\n").into_bytes();
        for (i, l) in leases.iter().enumerate() {
            if i > 0 {
                bytes.extend_from_slice(b",\n");
            }
            serde_json::to_writer(&mut bytes, l).map_err(io::Error::other)?;
        }
        bytes.extend_from_slice(b"\n]}\n");
        crate::atomic_file::write(&self.dir, &self.path, &bytes)?;
        let mut header = serde_json::to_vec(&JournalHeader { gen }).map_err(io::Error::other)?;
        header.push(b'\n');
        crate::atomic_file::write(&self.dir, &self.journal_path, &header)?;
        self.journal = Some(OpenOptions::new().append(true).open(&self.journal_path)?);
        Ok(bytes.len() as u64)
    }
}

impl LeaseStore {
    /// Loads the snapshot at `path` and its journal (`path` with the extension
    /// `journal`), creating the directory, and compacts them into a fresh
    /// snapshot: that also proves the location is writable, so the caller can
    /// fall back elsewhere now rather than discover a read-only data partition
    /// at the first ACK.
    pub fn open(path: &Path, max: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if path.file_name().is_none() {
            anyhow::bail!("lease path {} has no file name", path.display());
        }
        let journal_path = path.with_extension("journal");
        let mut store = LeaseStore {
            max: max.max(1),
            leases: HashMap::default(),
            by_id: HashMap::default(),
            by_mac: HashMap::default(),
            by_name: HashMap::default(),
            by_expiry: BTreeSet::new(),
            offers: HashMap::default(),
            offer_of: HashMap::default(),
            last_sweep: 0,
            declined: HashMap::default(),
            cursor: None,
            writer: Arc::new(Mutex::new(Writer {
                dir,
                path: path.to_path_buf(),
                journal_path: journal_path.clone(),
                journal: None,
            })),
            pending: Vec::new(),
            seq: 0,
            durable: 0,
            gen: 0,
            journal_bytes: 0,
            snapshot_bytes: 0,
            need_compact: true,
        };
        // Without a usable snapshot, the journal is still the best record there is.
        let mut any_gen = true;
        match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<FileFormat>(&bytes) {
                Ok(file) => {
                    store.gen = file.journal_gen;
                    any_gen = false;
                    for l in file.leases {
                        store.load_one(l);
                    }
                }
                Err(e) => {
                    // A bad file must not take DHCP down: keep it for a human and
                    // start empty (clients will re-request their addresses).
                    let aside = with_suffix(path, ".corrupt");
                    match fs::rename(path, &aside) {
                        Ok(()) => eprintln!(
                            "dhcp: lease file {} is corrupt ({e}); moved to {}",
                            path.display(),
                            aside.display()
                        ),
                        Err(re) => eprintln!(
                            "dhcp: lease file {} is corrupt ({e}) and could not be moved aside ({re})",
                            path.display()
                        ),
                    }
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => any_gen = false,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        store.replay(&journal_path, any_gen)?;
        store.trim_to_max();
        store
            .save()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(store)
    }

    /// Applies the journal if it belongs to the loaded snapshot. A torn last
    /// line (crash during an append) is ignored; so is any other bad line.
    fn replay(&mut self, journal: &Path, any_gen: bool) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let file = match File::open(journal) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
        };
        let mut lines = io::BufReader::new(file).split(b'\n');
        let header = match lines.next() {
            Some(Ok(l)) => serde_json::from_slice::<JournalHeader>(&l).ok(),
            _ => None,
        };
        match header {
            Some(h) if h.gen == self.gen || any_gen => {}
            // From before the snapshot (a compaction finished after it), or junk.
            _ => return Ok(()),
        }
        let (mut applied, mut bad) = (0u64, 0u64);
        for line in lines {
            let line = line.with_context(|| format!("reading {}", journal.display()))?;
            match serde_json::from_slice::<Op>(&line) {
                Ok(Op::Put(l)) => {
                    self.put_raw(l);
                    applied += 1;
                }
                Ok(Op::Del(ip)) => {
                    self.del_raw(ip);
                    applied += 1;
                }
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            eprintln!(
                "dhcp: lease journal {}: {applied} changes replayed, {bad} unreadable lines skipped",
                journal.display()
            );
        }
        Ok(())
    }

    fn load_one(&mut self, l: Lease) {
        // Duplicates can only come from hand edits; the longest-lived wins.
        match self.leases.get(&l.ip) {
            Some(old) if old.expires >= l.expires => {}
            _ => self.put_raw(l),
        }
    }

    /// A lowered max_leases: drop the leases that expire soonest.
    fn trim_to_max(&mut self) {
        while self.leases.len() > self.max {
            let Some(&(_, ip)) = self.by_expiry.first() else {
                break;
            };
            self.del_raw(ip);
        }
    }

    // --- the one place records change (indexes kept in step) ---

    fn put_raw(&mut self, l: Lease) {
        self.del_raw(l.ip);
        let ip = l.ip;
        if let Some(id) = &l.client_id {
            self.by_id.insert(id.clone(), ip);
        }
        self.by_mac.entry(l.mac).or_default().push(ip);
        if let Some(n) = &l.hostname {
            self.by_name.insert(n.clone(), ip);
        }
        self.by_expiry.insert((l.expires, ip));
        self.leases.insert(ip, l);
    }

    fn del_raw(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let l = self.leases.remove(&ip)?;
        self.lower_cursor(ip);
        if let Some(id) = &l.client_id {
            if self.by_id.get(id) == Some(&ip) {
                self.by_id.remove(id);
            }
        }
        if let Some(v) = self.by_mac.get_mut(&l.mac) {
            v.retain(|x| *x != ip);
            if v.is_empty() {
                self.by_mac.remove(&l.mac);
            }
        }
        if let Some(n) = &l.hostname {
            if self.by_name.get(n) == Some(&ip) {
                self.by_name.remove(n);
            }
        }
        self.by_expiry.remove(&(l.expires, ip));
        Some(l)
    }

    fn record(&mut self, op: &Op) {
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.pending, op);
        self.pending.push(b'\n');
        self.seq += 1;
    }

    fn put(&mut self, l: Lease) {
        self.record(&Op::Put(l.clone()));
        self.put_raw(l);
    }

    fn del(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let l = self.del_raw(ip)?;
        self.record(&Op::Del(ip));
        Some(l)
    }

    // --- queries ---

    /// All lease records (expired ones included), sorted by address.
    pub fn snapshot(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.leases.values().cloned().collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The record for `client`, preferring an exact client-identifier match.
    pub fn find(&self, client: &ClientKey) -> Option<&Lease> {
        if let Some(id) = &client.id {
            if let Some(l) = self.by_id.get(id).and_then(|ip| self.leases.get(ip)) {
                return Some(l);
            }
        }
        self.by_mac
            .get(&client.mac)?
            .iter()
            .filter_map(|ip| self.leases.get(ip))
            .find(|l| l.belongs_to(client))
    }

    /// The record holding `ip`, active or expired.
    pub fn at(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    /// The record carrying host name `name` (names are unique), active or
    /// expired: for local DNS, check `is_active`.
    pub fn by_hostname(&self, name: &str) -> Option<&Lease> {
        self.by_name.get(name).and_then(|ip| self.leases.get(ip))
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Expired records, the longest expired first.
    pub fn expired_oldest_first(&self, now: u64) -> impl Iterator<Item = &Lease> {
        self.by_expiry
            .iter()
            .take_while(move |(e, _)| *e <= now)
            .filter_map(|(_, ip)| self.leases.get(ip))
    }

    /// Whether `bind` for this client could succeed capacity-wise.
    pub fn has_room(&self, client: &ClientKey, now: u64) -> bool {
        self.leases.len() < self.max
            || self.find(client).is_some()
            || self.by_expiry.first().is_some_and(|(e, _)| *e <= now)
    }

    // --- changes (journaled) ---

    /// Records `lease`, replacing the client's previous record and whatever
    /// record held the same address. When that does not make room, the oldest
    /// expired lease is evicted; if none has expired the table is full. A host
    /// name the lease carries is taken away from any other record. Binding
    /// exactly the record that is already there (a client asking again within
    /// the same second) changes nothing and records nothing.
    pub fn bind(&mut self, lease: Lease, now: u64) -> Result<(), StoreFull> {
        if self.leases.get(&lease.ip) == Some(&lease) {
            self.drop_offer_at(lease.ip);
            return Ok(());
        }
        let client = ClientKey {
            mac: lease.mac,
            id: lease.client_id.clone(),
        };
        let mut freed = self.leases.contains_key(&lease.ip);
        if let Some(old) = self.find(&client).map(|l| l.ip) {
            if old != lease.ip {
                self.del(old);
            }
            freed = true;
        }
        if !freed && self.leases.len() >= self.max {
            match self.by_expiry.first() {
                Some(&(e, ip)) if e <= now => {
                    self.del(ip);
                }
                _ => return Err(StoreFull),
            }
        }
        if let Some(name) = &lease.hostname {
            if let Some(&other) = self.by_name.get(name) {
                if other != lease.ip {
                    if let Some(mut o) = self.leases.get(&other).cloned() {
                        o.hostname = None;
                        self.put(o);
                    }
                }
            }
        }
        self.drop_offer_at(lease.ip);
        self.put(lease);
        Ok(())
    }

    /// Ends the client's lease on `ip` now. The record stays so the client gets
    /// the same address next time if nobody else took it meanwhile.
    pub fn release(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64) -> bool {
        match self.leases.get(&ip) {
            Some(l) if l.belongs_to(client) => {
                if l.expires > now {
                    let mut l = l.clone();
                    l.expires = now;
                    self.put(l);
                }
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        self.del(ip)
    }

    // --- offers and quarantine (memory only) ---

    fn lower_cursor(&mut self, ip: Ipv4Addr) {
        if self.cursor.is_some_and(|c| u32::from(ip) < c) {
            self.cursor = Some(u32::from(ip));
        }
    }

    fn drop_offer_at(&mut self, ip: Ipv4Addr) {
        if let Some(o) = self.offers.remove(&ip) {
            if self.offer_of.get(&o.client) == Some(&ip) {
                self.offer_of.remove(&o.client);
            }
        }
    }

    /// Ends holds and quarantines that ran out (checked every few seconds);
    /// their addresses may be handed out again, so the allocator's cursor
    /// goes back to them.
    pub fn sweep(&mut self, now: u64) {
        if now < self.last_sweep + OFFER_SWEEP_SECS {
            return;
        }
        self.last_sweep = now;
        let mut freed = Vec::new();
        self.offers.retain(|ip, o| {
            let keep = o.until > now;
            if !keep {
                freed.push(*ip);
            }
            keep
        });
        self.declined.retain(|ip, t| {
            let keep = *t > now;
            if !keep {
                freed.push(*ip);
            }
            keep
        });
        let offers = &self.offers;
        self.offer_of.retain(|_, ip| offers.contains_key(ip));
        for ip in freed {
            self.lower_cursor(ip);
        }
    }

    fn hold(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64, until: u64, probing: bool) {
        self.sweep(now);
        self.unreserve(client);
        self.drop_offer_at(ip);
        self.offers.insert(
            ip,
            Offer {
                client: client.clone(),
                until,
                probing,
            },
        );
        self.offer_of.insert(client.clone(), ip);
    }

    /// Reserves `ip` for `client` until `until` (the OFFER/REQUEST window).
    pub fn reserve(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64, until: u64) {
        self.hold(client, ip, now, until, false);
    }

    /// Holds `ip` for `client` while it is ping-checked, before any OFFER.
    pub fn reserve_probing(&mut self, client: &ClientKey, ip: Ipv4Addr, now: u64, until: u64) {
        self.hold(client, ip, now, until, true);
    }

    fn offer_for(&self, client: &ClientKey, now: u64) -> Option<(Ipv4Addr, &Offer)> {
        let ip = *self.offer_of.get(client)?;
        self.offers
            .get(&ip)
            .filter(|o| o.until > now && o.client == *client)
            .map(|o| (ip, o))
    }

    /// The address currently reserved for `client` (offered or being checked).
    pub fn reserved_for(&self, client: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        self.offer_for(client, now).map(|(ip, _)| ip)
    }

    /// The address being ping-checked for `client`, if any.
    pub fn probing_for(&self, client: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        self.offer_for(client, now)
            .filter(|(_, o)| o.probing)
            .map(|(ip, _)| ip)
    }

    /// Whether `ip` is reserved for a client other than `client`.
    pub fn reserved_for_other(&self, ip: Ipv4Addr, client: &ClientKey, now: u64) -> bool {
        self.offers
            .get(&ip)
            .is_some_and(|o| o.until > now && o.client != *client)
    }

    pub fn unreserve(&mut self, client: &ClientKey) {
        if let Some(ip) = self.offer_of.remove(client) {
            if self.offers.get(&ip).is_some_and(|o| o.client == *client) {
                self.offers.remove(&ip);
                self.lower_cursor(ip);
            }
        }
    }

    /// Whether `ip` is held for some client (offered, or being checked).
    pub fn is_held(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.offers.get(&ip).is_some_and(|o| o.until > now)
    }

    pub fn quarantine(&mut self, ip: Ipv4Addr, now: u64, until: u64) {
        self.sweep(now);
        self.declined.insert(ip, until);
        self.drop_offer_at(ip);
    }

    pub fn is_quarantined(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.declined.get(&ip).is_some_and(|t| *t > now)
    }

    /// Where the allocator's scan for never-used addresses resumes.
    pub fn alloc_cursor(&self) -> Option<u32> {
        self.cursor
    }

    pub fn set_alloc_cursor(&mut self, c: u32) {
        self.cursor = Some(c);
    }

    // --- durability ---

    /// Persisted state changed since the last successful flush.
    pub fn is_dirty(&self) -> bool {
        self.seq > self.durable
    }

    /// Sequence number of the latest recorded change: a reply that depends on
    /// it may go out once a flush with `upto() >= journal_seq()` succeeded.
    pub fn journal_seq(&self) -> u64 {
        self.seq
    }

    /// Takes everything recorded so far for one flush: an append of the
    /// pending journal lines, or (when forced, after an error, or when the
    /// journal outgrew the snapshot) a compaction.
    pub fn begin_flush(&mut self, force_compact: bool) -> Flush {
        let big = self.journal_bytes + self.pending.len() as u64
            > COMPACT_MIN_BYTES.max(2 * self.snapshot_bytes);
        let work = if force_compact || self.need_compact || big {
            self.pending.clear();
            Work::Compact {
                gen: self.gen + 1,
                leases: self.snapshot(),
            }
        } else if self.pending.is_empty() {
            Work::Nothing
        } else {
            Work::Append(std::mem::take(&mut self.pending))
        };
        Flush {
            writer: self.writer.clone(),
            work,
            upto: self.seq,
        }
    }

    /// Records the outcome of `flush.run()`.
    pub fn finish_flush(&mut self, flush: &Flush, result: &io::Result<u64>) {
        match (result, &flush.work) {
            (Ok(n), Work::Compact { gen, .. }) => {
                self.gen = *gen;
                self.snapshot_bytes = *n;
                self.journal_bytes = 0;
                self.need_compact = false;
                self.durable = self.durable.max(flush.upto);
            }
            (Ok(n), _) => {
                self.journal_bytes += n;
                self.durable = self.durable.max(flush.upto);
            }
            // The lines taken are gone from `pending`, but every record is in
            // memory: the compaction this forces writes them all.
            (Err(_), _) => self.need_compact = true,
        }
    }

    /// Makes everything durable now, as a compaction (tests, and `open`).
    pub fn save(&mut self) -> io::Result<()> {
        let f = self.begin_flush(true);
        let r = f.run();
        self.finish_flush(&f, &r);
        r.map(|_| ())
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

mod mac_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        // On the journal's hot path: no allocation.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, b) in mac.iter().enumerate() {
            text[3 * i] = DIGITS[usize::from(b >> 4)];
            text[3 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
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

    fn key(n: u8) -> ClientKey {
        ClientKey {
            mac: [0x52, 0x54, 0, 0, 0, n],
            id: None,
        }
    }

    /// One group-commit round, as the server's committer does it.
    fn flush(s: &mut LeaseStore) -> Flush {
        let f = s.begin_flush(false);
        let r = f.run();
        s.finish_flush(&f, &r);
        r.unwrap();
        f
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
    fn journal_is_appended_and_replayed() {
        let t = TempDir::new("journal");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        let snap_before = fs::read(&path).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        s.bind(lease(2, 2000), 0).unwrap();
        let seq = s.journal_seq();
        let f = flush(&mut s);
        assert!(!f.is_compaction());
        assert_eq!(f.upto(), seq);
        assert!(!s.is_dirty());
        // Appends leave the snapshot alone.
        assert_eq!(fs::read(&path).unwrap(), snap_before);
        s.release(&key(1), lease(1, 0).ip, 10);
        s.remove(lease(2, 0).ip);
        s.bind(lease(3, 3000), 0).unwrap();
        flush(&mut s);
        // A crash now (no compaction, no clean shutdown): replay restores all.
        let want = s.snapshot();
        drop(s);
        let s2 = LeaseStore::open(&path, 10).unwrap();
        assert_eq!(s2.snapshot(), want);
        assert_eq!(s2.at(lease(1, 0).ip).unwrap().expires, 10);
        assert!(s2.at(lease(2, 0).ip).is_none());
        // Opening compacted: the journal is back to its header.
        let j = fs::read_to_string(path.with_extension("journal")).unwrap();
        assert_eq!(j.lines().count(), 1, "{j}");
    }

    #[test]
    fn unflushed_changes_are_not_on_disk_and_torn_tail_is_ignored() {
        let t = TempDir::new("torn");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        flush(&mut s);
        s.bind(lease(2, 2000), 0).unwrap(); // never flushed
        drop(s);
        // A write cut short by a crash.
        let mut j = OpenOptions::new()
            .append(true)
            .open(path.with_extension("journal"))
            .unwrap();
        j.write_all(b"{\"put\":{\"mac\":\"52:54:00:00").unwrap();
        drop(j);
        let s = LeaseStore::open(&path, 10).unwrap();
        let ips: Vec<_> = s.snapshot().iter().map(|l| l.ip.octets()[3]).collect();
        assert_eq!(ips, vec![101]);
    }

    #[test]
    fn identical_bind_records_nothing() {
        let t = TempDir::new("same");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        let seq = s.journal_seq();
        s.bind(lease(1, 1000), 0).unwrap();
        assert_eq!(s.journal_seq(), seq);
        // Still dirty: the first bind is not on disk yet.
        assert!(s.is_dirty());
        s.bind(lease(1, 1001), 0).unwrap();
        assert_eq!(s.journal_seq(), seq + 1);
    }

    #[test]
    fn stale_journal_is_ignored() {
        let t = TempDir::new("stale");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        flush(&mut s);
        let old_journal = fs::read(path.with_extension("journal")).unwrap();
        s.remove(lease(1, 0).ip);
        s.save().unwrap();
        drop(s);
        // A crash between the new snapshot's rename and the new journal's: the
        // old journal must not resurrect the removed lease.
        fs::write(path.with_extension("journal"), old_journal).unwrap();
        let s = LeaseStore::open(&path, 10).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn big_journal_is_compacted() {
        let t = TempDir::new("compact");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        let mut compactions = 0;
        for round in 0..12_000u64 {
            s.bind(lease(1 + (round % 5) as u8, round), 0).unwrap();
            if round % 250 == 0 && flush(&mut s).is_compaction() {
                compactions += 1;
            }
        }
        flush(&mut s);
        assert!(compactions >= 1);
        let len = fs::metadata(path.with_extension("journal")).unwrap().len();
        assert!(len <= COMPACT_MIN_BYTES + 4096, "{len}");
        let want = s.snapshot();
        drop(s);
        assert_eq!(LeaseStore::open(&path, 10).unwrap().snapshot(), want);
    }

    #[test]
    fn failed_write_forces_compaction_and_keeps_old_file() {
        let t = TempDir::new("atomic");
        let path = t.0.join("leases.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        s.save().unwrap();
        let before = fs::read(&path).unwrap();
        // No temp file is left behind after a successful save.
        let mut names: Vec<_> = fs::read_dir(&t.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["leases.journal", "leases.json"]);

        // Make the temp file impossible to create: the save fails and the
        // previous file is untouched (never truncated or half-written).
        fs::create_dir(t.0.join(".leases.json.tmp")).unwrap();
        s.bind(lease(2, 2000), 0).unwrap();
        assert!(s.save().is_err());
        assert!(s.is_dirty());
        assert_eq!(fs::read(&path).unwrap(), before);
        // The journal was closed by the failed compaction: appends fail too,
        // and the next flush compacts again.
        s.bind(lease(3, 3000), 0).unwrap();
        let f = s.begin_flush(false);
        assert!(f.is_compaction());
        let r = f.run();
        assert!(r.is_err());
        s.finish_flush(&f, &r);
        assert!(s.is_dirty());
        fs::remove_dir(t.0.join(".leases.json.tmp")).unwrap();
        let f = flush(&mut s);
        assert!(f.is_compaction());
        assert!(!s.is_dirty());
        let want = s.snapshot();
        drop(s);
        assert_eq!(LeaseStore::open(&path, 10).unwrap().snapshot(), want);
        assert_eq!(want.len(), 3);
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
    fn old_format_file_loads() {
        let t = TempDir::new("old");
        let path = t.0.join("leases.json");
        fs::write(
            &path,
            br#"{"leases": [{"mac": "52:54:00:00:00:01", "ip": "192.168.1.101", "hostname": "a", "expires": 5}]}"#,
        )
        .unwrap();
        let s = LeaseStore::open(&path, 10).unwrap();
        assert_eq!(
            s.snapshot(),
            vec![lease(1, 5)]
                .into_iter()
                .map(|mut l| {
                    l.hostname = Some("a".into());
                    l
                })
                .collect::<Vec<_>>()
        );
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
        assert!(!s.has_room(&key(6), now));
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
    fn find_uses_id_then_mac() {
        let t = TempDir::new("find");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 10).unwrap();
        let mut a = lease(1, 100);
        a.client_id = Some("01aa".into());
        s.bind(a, 0).unwrap();
        s.bind(lease(2, 100), 0).unwrap();
        let by_id = ClientKey {
            mac: [9; 6],
            id: Some("01aa".into()),
        };
        assert_eq!(s.find(&by_id).unwrap().ip.octets()[3], 101);
        assert_eq!(s.find(&key(2)).unwrap().ip.octets()[3], 102);
        // Same MAC, other client id: a different client.
        let other = ClientKey {
            mac: key(1).mac,
            id: Some("01bb".into()),
        };
        assert!(s.find(&other).is_none());
        // A new lease for the client replaces its old record.
        let mut moved = lease(2, 200);
        moved.ip = Ipv4Addr::new(192, 168, 1, 150);
        s.bind(moved, 0).unwrap();
        assert!(s.at(Ipv4Addr::new(192, 168, 1, 102)).is_none());
        assert_eq!(s.find(&key(2)).unwrap().expires, 200);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn names_are_unique_across_records() {
        let t = TempDir::new("names");
        let path = t.0.join("l.json");
        let mut s = LeaseStore::open(&path, 10).unwrap();
        s.bind(lease(1, 100), 0).unwrap();
        assert_eq!(s.by_hostname("host1").unwrap().ip.octets()[3], 101);
        let mut l2 = lease(2, 500);
        l2.hostname = Some("host1".into());
        s.bind(l2, 200).unwrap();
        assert_eq!(s.by_hostname("host1").unwrap().ip.octets()[3], 102);
        assert_eq!(s.at(lease(1, 0).ip).unwrap().hostname, None);
        flush(&mut s);
        drop(s);
        let s = LeaseStore::open(&path, 10).unwrap();
        assert_eq!(s.by_hostname("host1").unwrap().ip.octets()[3], 102);
        assert_eq!(s.at(lease(1, 0).ip).unwrap().hostname, None);
    }

    #[test]
    fn offers_and_probes() {
        let t = TempDir::new("offers");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 10).unwrap();
        let ip = Ipv4Addr::new(192, 168, 1, 150);
        s.reserve_probing(&key(1), ip, 100, 102);
        assert_eq!(s.probing_for(&key(1), 100), Some(ip));
        assert_eq!(s.reserved_for(&key(1), 100), Some(ip));
        assert!(s.reserved_for_other(ip, &key(2), 100));
        assert!(!s.reserved_for_other(ip, &key(1), 100));
        s.reserve(&key(1), ip, 101, 160);
        assert_eq!(s.probing_for(&key(1), 101), None);
        assert_eq!(s.reserved_for(&key(1), 150), Some(ip));
        assert_eq!(s.reserved_for(&key(1), 160), None);
        // A new reservation replaces the client's old one.
        let ip2 = Ipv4Addr::new(192, 168, 1, 151);
        s.reserve(&key(1), ip2, 101, 160);
        assert!(!s.reserved_for_other(ip, &key(2), 101));
        // Quarantine withdraws a reservation.
        s.quarantine(ip2, 101, 700);
        assert_eq!(s.reserved_for(&key(1), 101), None);
        assert!(s.is_quarantined(ip2, 699));
        assert!(!s.is_quarantined(ip2, 700));
        // Binding withdraws the offer of the address.
        s.reserve(&key(2), ip, 101, 160);
        let mut l = lease(3, 1000);
        l.ip = ip;
        s.bind(l, 101).unwrap();
        assert_eq!(s.reserved_for(&key(2), 101), None);
        // Expired offers are swept.
        s.reserve(&key(4), ip2, 200, 260);
        s.reserve(&key(5), Ipv4Addr::new(192, 168, 1, 152), 300, 360);
        assert!(s.offers.len() == 1 && s.offer_of.len() == 1);
    }

    #[test]
    fn release_keeps_record_but_expires_it() {
        let t = TempDir::new("rel");
        let mut s = LeaseStore::open(&t.0.join("l.json"), 10).unwrap();
        s.bind(lease(1, 1000), 0).unwrap();
        let other = ClientKey {
            mac: [1; 6],
            id: None,
        };
        assert!(!s.release(&other, lease(1, 0).ip, 10));
        assert!(s.release(&key(1), lease(1, 0).ip, 10));
        assert!(!s.at(lease(1, 0).ip).unwrap().is_active(10));
        assert_eq!(s.expired_oldest_first(10).count(), 1);
        assert_eq!(s.expired_oldest_first(9).count(), 0);
    }
}
