//! The mapping table kept in a file in the run dir (tmpfs), so that a gatewayd killed and
//! restarted by its supervisor finds every mapping again and no flow is cut.
//!
//! The file is a header followed by fixed-size slots, one per mapping or held port:
//!
//! ```text
//! header (256 bytes, little-endian)
//!   0  [8]  magic "GHNATMAP"
//!   8  u32  format version (1)
//!  12  u32  record length (256)
//!  16  u32  capacity (slots)
//!  20  u32  remotes kept per record
//!  24  [4]  WAN address the mappings were made on (0.0.0.0: none)
//!  28  u32  CRC-32 of bytes 0..28
//! slot i at 256 * (i + 1), 256 bytes; all zero = empty
//!   0  u32  CRC-32 of bytes 4..256
//!   4  u8   kind: 1 mapping, 2 held port
//!   5  u8   protocol: 1 TCP, 2 UDP, 3 ICMP
//!   6  u8   TCP state: 0 transitory, 1 established, 2 closing
//!   7  u8   flags: bit 0 made by a forward
//!   8  [4]  inside address (held port: its old owner)
//!  12  u16  inside port or ICMP identifier
//!  14  u16  outside port
//!  16  [4]  last remote address   20  u16  its port   22  u8  remotes that follow
//!  24  u64  created (Unix ms)
//!  32  u64  last seen (Unix ms); held port: held until
//!  40  u64  packets out   48 bytes out   56 packets in   64 bytes in
//!  72  8 x [addr 4, port u16, 0 u16, last active u64 (Unix ms)]: remotes
//! 200  zero
//! ```
//!
//! Slots are written with one `pwrite` each, at once when a mapping is created, goes,
//! changes TCP state or gains a remote, and when a hold begins or ends; counters and times
//! follow once a second (`collect` and `write_batch`). Written, not mmap'ed: on a full /run
//! a write into a mapping would be a SIGBUS, a `pwrite` only an error. A slot never
//! straddles a page, so a kill should leave it whole or untouched; the checksum rejects a
//! record cut short anyway. A write that fails turns the copy off: better no copy than a
//! stale one.

use super::mapping::{
    Change, InsideKey, Mapping, Mappings, Millis, OutsideKey, Proto, TcpState, Traffic,
};
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file's name in the run dir.
pub const FILE_NAME: &str = "nat-mappings";
pub const RECORD_LEN: usize = 256;
/// Slots in the file: 8 MiB of /run at most, and only as much as the busiest moment used.
pub const CAPACITY: u32 = 32_768;
/// Remotes saved per mapping, the most recently active ones (the table keeps up to
/// `Params::max_remotes`): enough for filtering to admit the peers a host is talking to.
pub const REMOTES_KEPT: usize = 8;
const MAGIC: [u8; 8] = *b"GHNATMAP";
const VERSION: u32 = 1;
const REMOTES_AT: usize = 72;
const REMOTE_LEN: usize = 16;

const KIND_MAPPING: u8 = 1;
const KIND_HOLD: u8 = 2;

/// One saved entry. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Mapping(Mapping),
    Hold {
        port: OutsideKey,
        until: u64,
        owner: InsideKey,
    },
}

/// A slot whose bytes make no valid record: written half, or damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged;

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

fn proto_code(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 1,
        Proto::Udp => 2,
        Proto::Icmp => 3,
    }
}

fn proto_from(c: u8) -> Option<Proto> {
    Some(match c {
        1 => Proto::Tcp,
        2 => Proto::Udp,
        3 => Proto::Icmp,
        _ => return None,
    })
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_addr(b: &mut [u8], at: usize, a: SocketAddrV4) {
    b[at..at + 4].copy_from_slice(&a.ip().octets());
    put_u16(b, at + 4, a.port());
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}
fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}
fn addr_at(b: &[u8], at: usize) -> SocketAddrV4 {
    SocketAddrV4::new(ip_at(b, at), u16_at(b, at + 4))
}

/// A record's bytes, checksum included. Times are taken as they are (Unix ms); of the
/// remotes only the `REMOTES_KEPT` most recently active are kept.
pub fn encode(r: &Record) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    match r {
        Record::Mapping(m) => {
            b[4] = KIND_MAPPING;
            b[5] = proto_code(m.proto);
            b[6] = match m.tcp {
                TcpState::Transitory => 0,
                TcpState::Established => 1,
                TcpState::Closing => 2,
            };
            b[7] = u8::from(m.forwarded);
            put_addr(&mut b, 8, m.inside);
            put_u16(&mut b, 14, m.outside_port);
            put_addr(&mut b, 16, m.remote);
            put_u64(&mut b, 24, m.created);
            put_u64(&mut b, 32, m.last_seen);
            put_u64(&mut b, 40, m.out.packets);
            put_u64(&mut b, 48, m.out.bytes);
            put_u64(&mut b, 56, m.inb.packets);
            put_u64(&mut b, 64, m.inb.bytes);
            let mut remotes: Vec<&(SocketAddrV4, Millis)> = m.remotes.iter().collect();
            if remotes.len() > REMOTES_KEPT {
                remotes.sort_by_key(|r| std::cmp::Reverse(r.1));
                remotes.truncate(REMOTES_KEPT);
            }
            b[22] = remotes.len() as u8;
            for (i, (addr, last)) in remotes.into_iter().enumerate() {
                let at = REMOTES_AT + i * REMOTE_LEN;
                put_addr(&mut b, at, *addr);
                put_u64(&mut b, at + 8, *last);
            }
        }
        Record::Hold { port, until, owner } => {
            b[4] = KIND_HOLD;
            b[5] = proto_code(port.0);
            put_addr(&mut b, 8, SocketAddrV4::new(owner.1, owner.2));
            put_u16(&mut b, 14, port.1);
            put_u64(&mut b, 32, *until);
        }
    }
    let sum = crc(&b[4..]);
    put_u32(&mut b, 0, sum);
    b
}

/// A slot's record: `None` for an empty (all zero) slot.
pub fn decode(b: &[u8]) -> Result<Option<Record>, Damaged> {
    if b.len() != RECORD_LEN {
        return Err(Damaged);
    }
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    if u32_at(b, 0) != crc(&b[4..]) {
        return Err(Damaged);
    }
    let proto = proto_from(b[5]).ok_or(Damaged)?;
    let inside = addr_at(b, 8);
    let outside_port = u16_at(b, 14);
    match b[4] {
        KIND_MAPPING => {
            let tcp = match b[6] {
                0 => TcpState::Transitory,
                1 => TcpState::Established,
                2 => TcpState::Closing,
                _ => return Err(Damaged),
            };
            let n = usize::from(b[22]);
            if n > REMOTES_KEPT {
                return Err(Damaged);
            }
            let remotes = (0..n)
                .map(|i| {
                    let at = REMOTES_AT + i * REMOTE_LEN;
                    (addr_at(b, at), u64_at(b, at + 8))
                })
                .collect();
            Ok(Some(Record::Mapping(Mapping {
                proto,
                inside,
                outside_port,
                remote: addr_at(b, 16),
                remotes,
                created: u64_at(b, 24),
                last_seen: u64_at(b, 32),
                out: Traffic {
                    packets: u64_at(b, 40),
                    bytes: u64_at(b, 48),
                },
                inb: Traffic {
                    packets: u64_at(b, 56),
                    bytes: u64_at(b, 64),
                },
                tcp,
                forwarded: b[7] & 1 != 0,
            })))
        }
        KIND_HOLD => Ok(Some(Record::Hold {
            port: (proto, outside_port),
            until: u64_at(b, 32),
            owner: (proto, *inside.ip(), inside.port()),
        })),
        _ => Err(Damaged),
    }
}

pub fn encode_header(wan: Option<Ipv4Addr>) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    b[..8].copy_from_slice(&MAGIC);
    put_u32(&mut b, 8, VERSION);
    put_u32(&mut b, 12, RECORD_LEN as u32);
    put_u32(&mut b, 16, CAPACITY);
    put_u32(&mut b, 20, REMOTES_KEPT as u32);
    b[24..28].copy_from_slice(&wan.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
    let sum = crc(&b[..28]);
    put_u32(&mut b, 28, sum);
    b
}

/// The WAN address a header names, or why the file is not one this gatewayd can read.
pub fn decode_header(b: &[u8]) -> Result<Option<Ipv4Addr>, String> {
    if b.len() < RECORD_LEN || b[..8] != MAGIC {
        return Err("not a saved NAT table (bad magic)".into());
    }
    let layout = [u32_at(b, 8), u32_at(b, 12), u32_at(b, 16), u32_at(b, 20)];
    let ours = [VERSION, RECORD_LEN as u32, CAPACITY, REMOTES_KEPT as u32];
    if layout != ours {
        return Err(format!(
            "saved NAT table of format {}/{}/{}/{} (version/record/capacity/remotes), this \
             gatewayd reads {}/{}/{}/{}",
            layout[0], layout[1], layout[2], layout[3], ours[0], ours[1], ours[2], ours[3]
        ));
    }
    if u32_at(b, 28) != crc(&b[..28]) {
        return Err("saved NAT table header is damaged (checksum)".into());
    }
    let wan = ip_at(b, 24);
    Ok((!wan.is_unspecified()).then_some(wan))
}

fn offset(slot: u32) -> u64 {
    (u64::from(slot) + 1) * RECORD_LEN as u64
}

/// What a mapping looked like when its slot was last written: the sync rewrites it only
/// once this moved.
type Fingerprint = (Millis, u64, u64);

fn fingerprint(m: &Mapping) -> Fingerprint {
    (m.last_seen, m.out.packets, m.inb.packets)
}

/// The file and which slot holds what.
pub struct Store {
    file: File,
    path: PathBuf,
    /// Unix ms of the table's time 0: the file keeps Unix time, the table its own.
    epoch_unix_ms: i64,
    mappings: HashMap<InsideKey, (u32, Fingerprint)>,
    holds: HashMap<OutsideKey, u32>,
    /// Unused slots below `end`, lowest first, so the file stays as short as it can.
    free: BTreeSet<u32>,
    /// Slots 0..end exist in the file.
    end: u32,
}

/// What `open` found.
pub struct Loaded {
    pub store: Store,
    /// The saved entries and their slots, not yet in any table (see `Store::restore`).
    pub saved: Vec<(u32, Record)>,
    /// The WAN address the saved mappings were made on.
    pub wan: Option<Ipv4Addr>,
    /// Slots whose record was damaged: ignored (and cleared).
    pub damaged: usize,
    /// Why a file that was there was not read at all (another format, a damaged header).
    pub rejected: Option<String>,
}

/// What `Store::restore` put back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub mappings: usize,
    pub holds: usize,
    /// Entries that had expired while gatewayd was down.
    pub expired: usize,
    /// Entries contradicting another (same inside endpoint or outside port).
    pub conflicting: usize,
}

/// Opens (creating it if need be) the saved table at `path`. `epoch_unix_ms` is the Unix
/// time of the table's time 0.
pub fn open(path: &Path, epoch_unix_ms: i64) -> io::Result<Loaded> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let mut store = Store {
        file,
        path: path.to_path_buf(),
        epoch_unix_ms,
        mappings: HashMap::new(),
        holds: HashMap::new(),
        free: BTreeSet::new(),
        end: 0,
    };
    let (header, rejected) = if data.is_empty() {
        (None, None)
    } else {
        match decode_header(&data) {
            Ok(wan) => (Some(wan), None),
            Err(why) => (None, Some(why)),
        }
    };
    let Some(wan) = header else {
        store.file.set_len(0)?;
        store.file.write_all_at(&encode_header(None), 0)?;
        return Ok(Loaded {
            store,
            saved: Vec::new(),
            wan: None,
            damaged: 0,
            rejected,
        });
    };
    let mut saved = Vec::new();
    let mut damaged = 0;
    let zero = [0u8; RECORD_LEN];
    for (i, b) in data[RECORD_LEN..]
        .chunks_exact(RECORD_LEN)
        .take(CAPACITY as usize)
        .enumerate()
    {
        let slot = i as u32;
        store.end = slot + 1;
        match decode(b) {
            Ok(Some(r)) => saved.push((slot, r)),
            Ok(None) => {
                store.free.insert(slot);
            }
            Err(Damaged) => {
                damaged += 1;
                store.file.write_all_at(&zero, offset(slot))?;
                store.free.insert(slot);
            }
        }
    }
    // A trailing partial slot, or slots past the capacity: cut off.
    store.file.set_len(offset(store.end))?;
    Ok(Loaded {
        store,
        saved,
        wan,
        damaged,
        rejected: None,
    })
}

impl Store {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unix_of(&self, t: Millis) -> u64 {
        (self.epoch_unix_ms + t as i64).max(0) as u64
    }

    /// Unix ms to table time; a time ahead of `now` (the clock was set back while we were
    /// down) counts as now.
    fn table_time(&self, t: u64, now: Millis) -> Millis {
        ((t as i64 - self.epoch_unix_ms).max(0) as Millis).min(now)
    }

    /// Puts the saved entries `open` found into `map` (mappings, then held ports), each
    /// staying in its slot. Expired and contradicting ones are cleared from the file. Call
    /// with change tracking off: nothing needs writing back.
    pub fn restore(
        &mut self,
        map: &mut Mappings,
        saved: Vec<(u32, Record)>,
        now: Millis,
    ) -> io::Result<Restored> {
        let mut n = Restored::default();
        let (maps, holds): (Vec<_>, Vec<_>) = saved
            .into_iter()
            .partition(|(_, r)| matches!(r, Record::Mapping(_)));
        for (slot, r) in maps.into_iter().chain(holds) {
            let kept = match r {
                Record::Mapping(mut m) => {
                    m.created = self.table_time(m.created, now);
                    m.last_seen = self.table_time(m.last_seen, now);
                    for r in &mut m.remotes {
                        r.1 = self.table_time(r.1, now);
                    }
                    let key = (m.proto, *m.inside.ip(), m.inside.port());
                    let fp = fingerprint(&m);
                    let expired = now >= m.last_seen.saturating_add(map.timeout(&m));
                    if map.restore(m, now) {
                        self.mappings.insert(key, (slot, fp));
                        n.mappings += 1;
                        true
                    } else {
                        if expired {
                            n.expired += 1;
                        } else {
                            n.conflicting += 1;
                        }
                        false
                    }
                }
                Record::Hold { port, until, owner } => {
                    let until = self.table_time(until, Millis::MAX);
                    if map.restore_hold(port, until, owner, now) {
                        self.holds.insert(port, slot);
                        n.holds += 1;
                        true
                    } else {
                        if now >= until {
                            n.expired += 1;
                        } else {
                            n.conflicting += 1;
                        }
                        false
                    }
                }
            };
            if !kept {
                self.release(slot)?;
            }
        }
        Ok(n)
    }

    /// Writes what changed in `map` since the last call.
    pub fn save(&mut self, map: &mut Mappings) -> io::Result<()> {
        for c in map.take_changes() {
            match c {
                Change::Cleared => self.wipe()?,
                Change::Mapping(key) => match map.get(&key) {
                    Some(m) => {
                        let slot = match self.mappings.get(&key) {
                            Some(&(slot, _)) => Some(slot),
                            None => self.allocate(),
                        };
                        // No slot: the file is full; `collect` tries again later.
                        if let Some(slot) = slot {
                            self.mappings.insert(key, (slot, fingerprint(m)));
                            self.write(slot, &self.mapping_record(m))?;
                        }
                    }
                    None => {
                        if let Some((slot, _)) = self.mappings.remove(&key) {
                            self.release(slot)?;
                        }
                    }
                },
                Change::Hold(port) => match map.hold(&port) {
                    Some((until, owner)) => {
                        let slot = match self.holds.get(&port) {
                            Some(&slot) => Some(slot),
                            None => self.allocate(),
                        };
                        if let Some(slot) = slot {
                            self.holds.insert(port, slot);
                            let r = Record::Hold {
                                port,
                                until: self.unix_of(until),
                                owner,
                            };
                            self.write(slot, &encode(&r))?;
                        }
                    }
                    None => {
                        if let Some(slot) = self.holds.remove(&port) {
                            self.release(slot)?;
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// The records of mappings whose counters or times moved since their slot was written,
    /// and of those that had no slot yet, for `write_batch`. Returns them and how many
    /// mappings are still without a slot (the file is full).
    pub fn collect(&mut self, map: &Mappings) -> (Vec<(u32, [u8; RECORD_LEN])>, usize) {
        let mut batch = Vec::new();
        let mut unsaved = 0;
        for m in map.iter() {
            let key = (m.proto, *m.inside.ip(), m.inside.port());
            let fp = fingerprint(m);
            let slot = match self.mappings.get(&key) {
                Some(&(_, written)) if written == fp => continue,
                Some(&(slot, _)) => slot,
                None => match self.allocate() {
                    Some(slot) => slot,
                    None => {
                        unsaved += 1;
                        continue;
                    }
                },
            };
            self.mappings.insert(key, (slot, fp));
            batch.push((slot, self.mapping_record(m)));
        }
        (batch, unsaved)
    }

    /// Writes `collect`'s records, each run of neighbouring slots in one go; then gives
    /// back the unused slots at the end of the file.
    pub fn write_batch(&mut self, mut batch: Vec<(u32, [u8; RECORD_LEN])>) -> io::Result<()> {
        batch.sort_unstable_by_key(|(slot, _)| *slot);
        let mut run: Vec<u8> = Vec::new();
        let mut first = 0;
        for (i, (slot, rec)) in batch.iter().enumerate() {
            if i > 0 && *slot != first + (run.len() / RECORD_LEN) as u32 {
                self.file.write_all_at(&run, offset(first))?;
                run.clear();
            }
            if run.is_empty() {
                first = *slot;
            }
            run.extend_from_slice(rec);
        }
        if !run.is_empty() {
            self.file.write_all_at(&run, offset(first))?;
        }
        let end = self.end;
        while self.end > 0 && self.free.remove(&(self.end - 1)) {
            self.end -= 1;
        }
        if self.end != end {
            self.file.set_len(offset(self.end))?;
        }
        Ok(())
    }

    /// Notes the WAN address the mappings are made on.
    pub fn set_wan(&mut self, wan: Option<Ipv4Addr>) -> io::Result<()> {
        self.file.write_all_at(&encode_header(wan), 0)
    }

    fn mapping_record(&self, m: &Mapping) -> [u8; RECORD_LEN] {
        let mut m = m.clone();
        m.created = self.unix_of(m.created);
        m.last_seen = self.unix_of(m.last_seen);
        for r in &mut m.remotes {
            r.1 = self.unix_of(r.1);
        }
        encode(&Record::Mapping(m))
    }

    fn allocate(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop_first() {
            return Some(slot);
        }
        (self.end < CAPACITY).then(|| {
            self.end += 1;
            self.end - 1
        })
    }

    fn release(&mut self, slot: u32) -> io::Result<()> {
        self.free.insert(slot);
        self.file.write_all_at(&[0u8; RECORD_LEN], offset(slot))
    }

    fn write(&self, slot: u32, rec: &[u8; RECORD_LEN]) -> io::Result<()> {
        self.file.write_all_at(rec, offset(slot))
    }

    fn wipe(&mut self) -> io::Result<()> {
        self.mappings.clear();
        self.holds.clear();
        self.free.clear();
        self.end = 0;
        self.file.set_len(offset(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::mapping::Params;
    use crate::nat::packet::TcpFlags;

    fn ep(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, last), port)
    }
    fn far(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, last), port)
    }

    fn sample() -> Mapping {
        Mapping {
            proto: Proto::Tcp,
            inside: ep(10, 40000),
            outside_port: 40002,
            remote: far(7, 443),
            remotes: vec![
                (far(7, 443), 1_700_000_000_500),
                (far(8, 80), 1_700_000_000_100),
            ],
            created: 1_700_000_000_000,
            last_seen: 1_700_000_001_000,
            out: Traffic {
                packets: 12,
                bytes: 3400,
            },
            inb: Traffic {
                packets: 30,
                bytes: 45000,
            },
            tcp: TcpState::Established,
            forwarded: true,
        }
    }

    #[test]
    fn records_round_trip() {
        let m = Record::Mapping(sample());
        assert_eq!(decode(&encode(&m)), Ok(Some(m)));
        let mut icmp = sample();
        (icmp.proto, icmp.tcp, icmp.forwarded, icmp.remotes) =
            (Proto::Icmp, TcpState::Transitory, false, vec![]);
        let icmp = Record::Mapping(icmp);
        assert_eq!(decode(&encode(&icmp)), Ok(Some(icmp)));
        let h = Record::Hold {
            port: (Proto::Udp, 5000),
            until: 1_700_000_120_000,
            owner: (Proto::Udp, Ipv4Addr::new(192, 168, 1, 9), 5000),
        };
        assert_eq!(decode(&encode(&h)), Ok(Some(h)));
        assert_eq!(decode(&[0u8; RECORD_LEN]), Ok(None), "empty slot");
    }

    #[test]
    fn only_the_most_recent_remotes_are_kept() {
        let mut m = sample();
        m.remotes = (0..20u16)
            .map(|i| (far(1, 1000 + i), u64::from(i)))
            .collect();
        let Ok(Some(Record::Mapping(back))) = decode(&encode(&Record::Mapping(m))) else {
            panic!("no mapping");
        };
        let mut ports: Vec<u16> = back.remotes.iter().map(|r| r.0.port()).collect();
        ports.sort();
        assert_eq!(ports, (1012..1020).collect::<Vec<_>>());
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = encode(&Record::Mapping(sample()));
        // Any flipped byte, a record written only in part, nonsense fields.
        for at in [0, 4, 9, 30, 100, 255] {
            let mut b = good;
            b[at] ^= 0x40;
            assert_eq!(decode(&b), Err(Damaged), "byte {at}");
        }
        let mut half = [0u8; RECORD_LEN];
        half[..64].copy_from_slice(&good[..64]);
        assert_eq!(decode(&half), Err(Damaged));
        for (at, v) in [(4, 9), (5, 0), (6, 7), (22, 9)] {
            let mut b = good;
            b[at] = v;
            let sum = crc(&b[4..]);
            put_u32(&mut b, 0, sum);
            assert_eq!(decode(&b), Err(Damaged), "byte {at} = {v}");
        }
        assert_eq!(decode(&good[..100]), Err(Damaged));
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let wan = Some(Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(decode_header(&encode_header(wan)), Ok(wan));
        assert_eq!(decode_header(&encode_header(None)), Ok(None));
        let mut b = encode_header(wan);
        b[0] = b'X';
        assert!(decode_header(&b).unwrap_err().contains("magic"));
        let mut b = encode_header(wan);
        put_u32(&mut b, 8, VERSION + 1);
        assert!(decode_header(&b).unwrap_err().contains("format 2/"));
        let mut b = encode_header(wan);
        b[25] ^= 1;
        assert!(decode_header(&b).unwrap_err().contains("checksum"));
        assert!(decode_header(b"GHNATMAP").is_err());
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gh-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(FILE_NAME)
    }

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
    const NONE: TcpFlags = TcpFlags(0);

    fn tracked() -> Mappings {
        let mut m = Mappings::new(Params::default(), 7);
        m.track_changes(true);
        m
    }

    /// Every mapping and hold, as comparable tuples.
    fn contents(m: &Mappings) -> Vec<String> {
        let mut v: Vec<String> = m
            .iter()
            .map(|m| {
                let mut r = m.remotes.clone();
                r.sort();
                format!(
                    "{:?} {} -> {} {:?} fwd={} seen={} remotes={r:?} out={:?} in={:?}",
                    m.proto,
                    m.inside,
                    m.outside_port,
                    m.tcp,
                    m.forwarded,
                    m.last_seen,
                    m.out,
                    m.inb
                )
            })
            .chain(m.holds().map(|h| format!("hold {h:?}")))
            .collect();
        v.sort();
        v
    }

    /// A table written as it changes, then read back by a "restarted" process whose clock
    /// started later: same contents, same times once converted.
    #[test]
    fn a_saved_table_comes_back_whole() {
        let path = tmp("whole");
        let epoch = 1_700_000_000_000;
        let mut l = open(&path, epoch).unwrap();
        assert!(l.saved.is_empty() && l.rejected.is_none());
        let mut t = tracked();
        let t0 = 1_000_000;
        // TCP established, TCP half-open, UDP with two remotes, ICMP, and a held port.
        t.outbound(Proto::Tcp, ep(10, 2000), far(1, 80), SYN, 60, t0);
        t.inbound(Proto::Tcp, 2000, far(1, 80), SYNACK, 60, t0 + 1)
            .unwrap();
        t.outbound(Proto::Tcp, ep(10, 2000), far(1, 80), ACK, 60, t0 + 2);
        t.outbound(Proto::Tcp, ep(11, 3000), far(1, 80), SYN, 60, t0);
        t.outbound(Proto::Udp, ep(12, 5000), far(2, 53), NONE, 60, t0);
        t.outbound(Proto::Udp, ep(12, 5000), far(3, 53), NONE, 60, t0 + 5);
        t.outbound(Proto::Icmp, ep(12, 77), far(2, 0), NONE, 60, t0);
        t.outbound(Proto::Udp, ep(13, 6000), far(2, 53), NONE, 60, t0 - 300_000);
        t.sweep(t0 + 10);
        assert_eq!(t.held(), 1);
        l.store.save(&mut t).unwrap();
        // Counters and times follow with the periodic sync.
        t.outbound(Proto::Udp, ep(12, 5000), far(2, 53), NONE, 60, t0 + 900);
        assert!(!t.has_changes(), "a known remote is no change");
        let (batch, unsaved) = l.store.collect(&t);
        assert_eq!((batch.len(), unsaved), (1, 0));
        l.store.write_batch(batch).unwrap();
        assert!(l.store.collect(&t).0.is_empty(), "nothing moved since");
        drop(l);

        // The new process started 5 s after t0 + 900 (in Unix time), its clock at 2_000_000.
        let now = 2_000_000;
        let epoch2 = epoch + (t0 + 900 + 5_000) as i64 - now as i64;
        let mut l = open(&path, epoch2).unwrap();
        assert_eq!((l.wan, l.damaged, l.saved.len()), (None, 0, 5));
        let mut back = Mappings::new(Params::default(), 8);
        let n = l.store.restore(&mut back, l.saved, now).unwrap();
        assert_eq!(
            n,
            Restored {
                mappings: 4,
                holds: 1,
                expired: 0,
                conflicting: 0
            }
        );
        // Same as the original once its times are moved to the new clock.
        let shift = |x: Millis| x + now - (t0 + 900 + 5_000);
        let mut want = Mappings::new(Params::default(), 9);
        for m in t.iter() {
            let mut m = m.clone();
            m.created = shift(m.created);
            m.last_seen = shift(m.last_seen);
            m.remotes.iter_mut().for_each(|r| r.1 = shift(r.1));
            assert!(want.restore(m, now));
        }
        for (p, until, owner) in t.holds() {
            assert!(want.restore_hold(p, shift(until), owner, now));
        }
        assert_eq!(contents(&back), contents(&want));
        // The restored table goes on: its mappings answer inbound, keep their ports.
        assert_eq!(
            back.inbound(Proto::Tcp, 2000, far(1, 80), ACK, 1, now),
            Ok(ep(10, 2000))
        );
        assert_eq!(
            back.outbound(Proto::Udp, ep(12, 5000), far(2, 53), NONE, 1, now),
            Some(5000)
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A clock still near 1970 (no RTC, no NTP yet) puts the table's time 0 before 1970.
    #[test]
    fn times_survive_a_clock_near_1970() {
        let path = tmp("1970");
        let epoch = 5_000 - 30 * 86_400_000;
        let mut l = open(&path, epoch).unwrap();
        let mut t = tracked();
        let now = 30 * 86_400_000 + 1_000;
        t.outbound(Proto::Udp, ep(10, 5000), far(1, 53), NONE, 1, now);
        l.store.save(&mut t).unwrap();
        let l = open(&path, epoch).unwrap();
        let Some((_, Record::Mapping(m))) = l.saved.first() else {
            panic!("nothing saved");
        };
        assert_eq!(m.last_seen, 6_000, "Unix ms");
        let mut store = l.store;
        let mut back = Mappings::new(Params::default(), 1);
        store.restore(&mut back, l.saved, now + 1).unwrap();
        assert_eq!(back.iter().next().unwrap().last_seen, now);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn expired_damaged_and_conflicting_entries_are_dropped() {
        let path = tmp("dropped");
        let epoch = 1_700_000_000_000;
        let mut l = open(&path, epoch).unwrap();
        let mut t = tracked();
        t.outbound(Proto::Udp, ep(10, 5000), far(1, 53), NONE, 1, 0); // idle 300 s at restore
        t.outbound(Proto::Udp, ep(11, 5002), far(1, 53), NONE, 1, 100_000);
        t.outbound(Proto::Tcp, ep(12, 80), far(1, 5), SYN, 1, 100_000); // half-open: 240 s
        t.outbound(Proto::Udp, ep(13, 7000), far(1, 53), NONE, 1, 0);
        t.sweep(300_000); // ep(13) and ep(10) go; their ports are held until 420 s
        t.outbound(Proto::Udp, ep(14, 9000), far(1, 53), NONE, 1, 300_000);
        l.store.save(&mut t).unwrap();
        assert_eq!((t.len(), t.held()), (3, 2));
        // Damage ep(14)'s record, and add a copy of ep(11)'s on a slot of its own.
        let slot14 = l.store.mappings[&(Proto::Udp, *ep(14, 0).ip(), 9000)].0;
        l.store
            .file
            .write_all_at(b"garbage", offset(slot14) + 40)
            .unwrap();
        let slot11 = l.store.mappings[&(Proto::Udp, *ep(11, 0).ip(), 5002)].0;
        let mut copy = vec![0u8; RECORD_LEN];
        l.store
            .file
            .read_exact_at(&mut copy, offset(slot11))
            .unwrap();
        l.store
            .file
            .write_all_at(&copy, offset(l.store.end))
            .unwrap();
        drop(l);

        // Back at table time 350 s: the TCP half-open one has expired, one hold runs.
        let l = open(&path, epoch).unwrap();
        assert_eq!((l.damaged, l.saved.len()), (1, 5));
        let mut store = l.store;
        let mut back = Mappings::new(Params::default(), 1);
        let n = store.restore(&mut back, l.saved, 350_000).unwrap();
        assert_eq!(
            n,
            Restored {
                mappings: 1,
                holds: 2,
                expired: 1,
                conflicting: 1
            }
        );
        assert_eq!(back.len(), 1);
        // What was dropped is gone from the file too.
        let l = open(&path, epoch).unwrap();
        assert_eq!((l.damaged, l.saved.len()), (0, 3));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn another_format_is_not_read_and_is_replaced() {
        let path = tmp("format");
        let mut old = encode_header(None);
        put_u32(&mut old, 8, 0);
        std::fs::write(&path, [old, encode(&Record::Mapping(sample()))].concat()).unwrap();
        let l = open(&path, 0).unwrap();
        assert!(l.rejected.unwrap().contains("format 0/"));
        assert!(l.saved.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), encode_header(None));
        std::fs::write(&path, b"something else entirely").unwrap();
        assert!(open(&path, 0).unwrap().rejected.unwrap().contains("magic"));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn slots_are_reused_and_the_file_shrinks_and_clears() {
        let path = tmp("slots");
        let mut l = open(&path, 0).unwrap();
        let mut t = tracked();
        for host in 1..=40 {
            t.outbound(Proto::Udp, ep(host, 5000), far(1, 53), NONE, 1, 0);
        }
        l.store.save(&mut t).unwrap();
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(len(&path), offset(40));
        // All expire: each slot turns into its port's hold, then the holds run out.
        t.sweep(300_000);
        l.store.save(&mut t).unwrap();
        assert_eq!(l.store.end, 40);
        t.sweep(420_000);
        l.store.save(&mut t).unwrap();
        t.outbound(Proto::Udp, ep(1, 5000), far(1, 53), NONE, 1, 420_000);
        l.store.save(&mut t).unwrap();
        let (batch, _) = l.store.collect(&t);
        l.store.write_batch(batch).unwrap();
        assert_eq!(len(&path), offset(1), "trailing free slots given back");
        l.store
            .set_wan(Some(Ipv4Addr::new(203, 0, 113, 2)))
            .unwrap();
        t.clear();
        l.store.save(&mut t).unwrap();
        assert_eq!(len(&path), offset(0));
        let l = open(&path, 0).unwrap();
        assert_eq!(l.wan, Some(Ipv4Addr::new(203, 0, 113, 2)));
        assert!(l.saved.is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
