//! The sealed chunk format: one byte blob per minute of history.
//!
//! ```text
//! chunk  = group*                         groups sorted by client index
//! group  = v(client delta) v(body len) counts body
//!          body = pair*                   pairs sorted by pair id
//! pair   = v(pair delta) v((n-1) << 2 | bitmap << 1 | base)
//!          [v(body len) counts]           only when n > SMALL_PAIR
//!          offsets and values:
//!            bitmap = 0: (v(offset delta) value)*n
//!            bitmap = 1: 75-byte bitmap of offsets, then value*n
//! value  = header byte: low nibble up packets, high nibble down packets
//!          (15 means 15 + a varint that follows), then v(up bytes) if up packets > 0
//!          and v(down bytes) if down packets > 0
//! counts = v(up bytes) v(down bytes) v(up packets) v(down packets)
//! ```
//!
//! `v` is an unsigned LEB128 varint. Deltas are `id - previous - 1`, the first one is
//! the value itself. With `base` set, stored bytes are `bytes - 40 * packets`: real IP
//! packets are at least 40 bytes, so ACK-sized traffic fits one varint byte.
//!
//! Group and pair totals let coarse queries skip the bucket data; small pairs carry
//! none, because decoding a few buckets costs less than the totals would take.

use crate::Counts;

/// Buckets in one chunk: one minute of 100 ms buckets.
pub(crate) const CHUNK_BUCKETS: u64 = 600;
const BITMAP_BYTES: usize = (CHUNK_BUCKETS as usize).div_ceil(8);
/// Pairs with at most this many buckets in a chunk store neither length nor totals.
pub(crate) const SMALL_PAIR: usize = 4;
/// Smallest packet assumed by the `base` encoding (IPv4 + TCP headers).
const MIN_PACKET: u64 = 40;

/// One bucket's counters while a chunk is open. Packets fit u32 (4e9 in 100 ms is not a
/// thing), bytes do not necessarily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Acc {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u32,
    pub down_packets: u32,
}

impl Acc {
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            up_bytes: self.up_bytes,
            down_bytes: self.down_bytes,
            up_packets: u64::from(self.up_packets),
            down_packets: u64::from(self.down_packets),
        }
    }
}

/// One non-empty pair-bucket on its way into a blob.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub client: u32,
    pub pair: u32,
    pub off: u16,
    pub acc: Acc,
}

/// What a chunk holds, kept beside its blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkInfo {
    pub totals: Counts,
    pub buckets: u32,
    pub first_off: u16,
    pub last_off: u16,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_counts(out: &mut Vec<u8>, c: &Counts) {
    put_varint(out, c.up_bytes);
    put_varint(out, c.down_bytes);
    put_varint(out, c.up_packets);
    put_varint(out, c.down_packets);
}

fn delta(cur: u64, prev: Option<u64>) -> u64 {
    match prev {
        None => cur,
        Some(p) => cur - p - 1,
    }
}

/// Encodes entries sorted by (client, pair, off), without duplicates.
pub(crate) fn encode_chunk(entries: &[Entry]) -> (Vec<u8>, ChunkInfo) {
    let mut out = Vec::new();
    let mut group = Vec::new();
    let mut body = Vec::new();
    let mut info = ChunkInfo {
        first_off: u16::MAX,
        ..Default::default()
    };
    let mut prev_client = None;
    for g in entries.chunk_by(|a, b| a.client == b.client) {
        group.clear();
        let mut gt = Counts::default();
        let mut prev_pair = None;
        for p in g.chunk_by(|a, b| a.pair == b.pair) {
            gt += encode_pair(p, prev_pair, &mut group, &mut body);
            prev_pair = Some(u64::from(p[0].pair));
            info.first_off = info.first_off.min(p[0].off);
            info.last_off = info.last_off.max(p[p.len() - 1].off);
        }
        let client = u64::from(g[0].client);
        put_varint(&mut out, delta(client, prev_client));
        put_varint(&mut out, group.len() as u64);
        put_counts(&mut out, &gt);
        out.extend_from_slice(&group);
        prev_client = Some(client);
        info.totals += gt;
        info.buckets += g.len() as u32;
    }
    if info.buckets == 0 {
        info.first_off = 0;
    }
    (out, info)
}

fn encode_pair(p: &[Entry], prev: Option<u64>, out: &mut Vec<u8>, body: &mut Vec<u8>) -> Counts {
    let mut totals = Counts::default();
    let mut base = true;
    let mut delta_len = 0;
    let mut prev_off = None;
    for e in p {
        let a = &e.acc;
        totals += a.counts();
        base &= a.up_bytes >= MIN_PACKET * u64::from(a.up_packets)
            && a.down_bytes >= MIN_PACKET * u64::from(a.down_packets);
        delta_len += varint_len(delta(u64::from(e.off), prev_off));
        prev_off = Some(u64::from(e.off));
    }
    // Dense pairs (long streams) are cheaper as a bitmap than as one delta per bucket.
    let bitmap = delta_len > BITMAP_BYTES;
    body.clear();
    if bitmap {
        let mut bm = [0u8; BITMAP_BYTES];
        for e in p {
            bm[usize::from(e.off / 8)] |= 1 << (e.off % 8);
        }
        body.extend_from_slice(&bm);
        for e in p {
            put_value(body, &e.acc, base);
        }
    } else {
        let mut prev_off = None;
        for e in p {
            put_varint(body, delta(u64::from(e.off), prev_off));
            prev_off = Some(u64::from(e.off));
            put_value(body, &e.acc, base);
        }
    }
    put_varint(out, delta(u64::from(p[0].pair), prev));
    let n = p.len() as u64;
    put_varint(out, (n - 1) << 2 | u64::from(bitmap) << 1 | u64::from(base));
    if p.len() > SMALL_PAIR {
        put_varint(out, body.len() as u64);
        put_counts(out, &totals);
    }
    out.extend_from_slice(body);
    totals
}

fn put_value(out: &mut Vec<u8>, a: &Acc, base: bool) {
    let up = u64::from(a.up_packets);
    let dn = u64::from(a.down_packets);
    out.push((up.min(15) | dn.min(15) << 4) as u8);
    if up >= 15 {
        put_varint(out, up - 15);
    }
    if dn >= 15 {
        put_varint(out, dn - 15);
    }
    let sub = if base { MIN_PACKET } else { 0 };
    if up > 0 {
        put_varint(out, a.up_bytes - sub * up);
    }
    if dn > 0 {
        put_varint(out, a.down_bytes - sub * dn);
    }
}

/// A cursor that never panics: reading past the end yields zeros and sets `bad`, so
/// loops end quickly and validation can check one flag at the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    pub bad: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            bad: false,
        }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> u8 {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => {
                self.bad = true;
                0
            }
        }
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> u64 {
        let b = self.byte();
        if b < 0x80 {
            return u64::from(b);
        }
        let mut v = u64::from(b & 0x7f);
        let mut shift = 7;
        loop {
            let b = self.byte();
            if shift == 63 && b > 1 {
                self.bad = true;
                return v;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
            if shift > 63 {
                self.bad = true;
                return v;
            }
        }
    }

    pub(crate) fn counts(&mut self) -> Counts {
        Counts {
            up_bytes: self.varint(),
            down_bytes: self.varint(),
            up_packets: self.varint(),
            down_packets: self.varint(),
        }
    }

    pub(crate) fn slice(&mut self, n: u64) -> &'a [u8] {
        let rest = self.buf.len() - self.pos;
        if n > rest as u64 {
            self.bad = true;
            self.pos = self.buf.len();
            return &[];
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        s
    }
}

/// Reads one bucket value. Arithmetic wraps: only validated blobs reach queries, and a
/// bad one must give wrong numbers at worst, never a panic.
#[inline]
fn get_value(r: &mut Reader, base: bool) -> Counts {
    let h = r.byte();
    let mut up = u64::from(h & 15);
    let mut dn = u64::from(h >> 4);
    if up == 15 {
        up = up.wrapping_add(r.varint());
    }
    if dn == 15 {
        dn = dn.wrapping_add(r.varint());
    }
    let sub = if base { MIN_PACKET } else { 0 };
    let up_bytes = if up > 0 {
        r.varint().wrapping_add(sub.wrapping_mul(up))
    } else {
        0
    };
    let down_bytes = if dn > 0 {
        r.varint().wrapping_add(sub.wrapping_mul(dn))
    } else {
        0
    };
    Counts {
        up_bytes,
        down_bytes,
        up_packets: up,
        down_packets: dn,
    }
}

/// Decodes a pair's offsets and values, calling `f(offset, counts)` in offset order.
#[inline]
fn decode_body(r: &mut Reader, n: u64, bitmap: bool, base: bool, mut f: impl FnMut(u16, Counts)) {
    if bitmap {
        let bm = r.slice(BITMAP_BYTES as u64);
        for (i, &byte) in bm.iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let off = (i * 8) as u16 + bits.trailing_zeros() as u16;
                bits &= bits - 1;
                f(off, get_value(r, base));
            }
        }
    } else {
        let mut off: u64 = 0;
        for i in 0..n.min(CHUNK_BUCKETS) {
            let d = r.varint();
            off = if i == 0 {
                d
            } else {
                off.wrapping_add(d).wrapping_add(1)
            };
            let c = get_value(r, base);
            if r.bad {
                return;
            }
            f(off as u16, c);
        }
    }
}

/// One client's part of a chunk.
pub(crate) struct Group<'a> {
    pub client: u32,
    pub totals: Counts,
    pub body: &'a [u8],
}

pub(crate) struct Groups<'a> {
    r: Reader<'a>,
    prev: Option<u64>,
}

pub(crate) fn groups(blob: &[u8]) -> Groups<'_> {
    Groups {
        r: Reader::new(blob),
        prev: None,
    }
}

impl<'a> Iterator for Groups<'a> {
    type Item = Group<'a>;
    fn next(&mut self) -> Option<Group<'a>> {
        if self.r.at_end() || self.r.bad {
            return None;
        }
        let d = self.r.varint();
        let client = match self.prev {
            None => d,
            Some(p) => p.wrapping_add(d).wrapping_add(1),
        };
        self.prev = Some(client);
        let len = self.r.varint();
        let totals = self.r.counts();
        let body = self.r.slice(len);
        if self.r.bad {
            return None;
        }
        Some(Group {
            client: client as u32,
            totals,
            body,
        })
    }
}

/// One pair's buckets in a chunk.
pub(crate) struct PairRec<'a> {
    pub pair: u32,
    pub totals: Counts,
    body: Body<'a>,
}

enum Body<'a> {
    Coded {
        data: &'a [u8],
        n: u64,
        bitmap: bool,
        base: bool,
    },
    Inline {
        n: u8,
        items: [(u16, Counts); SMALL_PAIR],
    },
}

impl PairRec<'_> {
    #[inline]
    pub(crate) fn for_each_bucket(&self, mut f: impl FnMut(u16, &Counts)) {
        match &self.body {
            Body::Coded {
                data,
                n,
                bitmap,
                base,
            } => decode_body(&mut Reader::new(data), *n, *bitmap, *base, |o, c| f(o, &c)),
            Body::Inline { n, items } => {
                for (o, c) in &items[..usize::from(*n)] {
                    f(*o, c);
                }
            }
        }
    }
}

pub(crate) struct Pairs<'a> {
    r: Reader<'a>,
    prev: Option<u64>,
}

pub(crate) fn pairs(body: &[u8]) -> Pairs<'_> {
    Pairs {
        r: Reader::new(body),
        prev: None,
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = PairRec<'a>;
    #[inline]
    fn next(&mut self) -> Option<PairRec<'a>> {
        if self.r.at_end() || self.r.bad {
            return None;
        }
        let d = self.r.varint();
        let pair = match self.prev {
            None => d,
            Some(p) => p.wrapping_add(d).wrapping_add(1),
        };
        self.prev = Some(pair);
        let nf = self.r.varint();
        let n = (nf >> 2).wrapping_add(1);
        let bitmap = nf & 2 != 0;
        let base = nf & 1 != 0;
        let rec = if n > SMALL_PAIR as u64 {
            let len = self.r.varint();
            let totals = self.r.counts();
            let data = self.r.slice(len);
            PairRec {
                pair: pair as u32,
                totals,
                body: Body::Coded {
                    data,
                    n,
                    bitmap,
                    base,
                },
            }
        } else {
            let mut items = [(0u16, Counts::default()); SMALL_PAIR];
            let mut k = 0;
            let mut totals = Counts::default();
            decode_body(&mut self.r, n, bitmap, base, |o, c| {
                if k < SMALL_PAIR {
                    items[k] = (o, c);
                    k += 1;
                    totals += c;
                }
            });
            PairRec {
                pair: pair as u32,
                totals,
                body: Body::Inline {
                    n: k as u8,
                    items,
                },
            }
        };
        if self.r.bad {
            return None;
        }
        Some(rec)
    }
}

fn checked_add(a: &mut Counts, b: &Counts) -> Option<()> {
    a.up_bytes = a.up_bytes.checked_add(b.up_bytes)?;
    a.down_bytes = a.down_bytes.checked_add(b.down_bytes)?;
    a.up_packets = a.up_packets.checked_add(b.up_packets)?;
    a.down_packets = a.down_packets.checked_add(b.down_packets)?;
    Some(())
}

/// Checks a blob from outside (a snapshot) strictly, so that the lenient decoders above
/// only ever see well-formed data. `pair_ok(client, pair)` says whether the dictionary
/// has that pair under that client.
pub(crate) fn validate(
    blob: &[u8],
    mut pair_ok: impl FnMut(u32, u32) -> bool,
) -> Result<ChunkInfo, &'static str> {
    let mut r = Reader::new(blob);
    let mut info = ChunkInfo {
        first_off: u16::MAX,
        ..Default::default()
    };
    let mut prev_client: Option<u64> = None;
    while !r.at_end() {
        let d = r.varint();
        let client = match prev_client {
            None => Some(d),
            Some(p) => p.checked_add(d).and_then(|v| v.checked_add(1)),
        }
        .filter(|&c| c < u64::from(u32::MAX))
        .ok_or("client index out of range")?;
        prev_client = Some(client);
        let len = r.varint();
        let gt = r.counts();
        let body = r.slice(len);
        if r.bad {
            return Err("truncated client group");
        }
        let sum = validate_group(body, client as u32, &mut pair_ok, &mut info)?;
        if sum != gt {
            return Err("client group totals do not match its buckets");
        }
        checked_add(&mut info.totals, &gt).ok_or("totals overflow")?;
    }
    if info.buckets == 0 {
        return Err("empty chunk");
    }
    Ok(info)
}

fn validate_group(
    body: &[u8],
    client: u32,
    pair_ok: &mut impl FnMut(u32, u32) -> bool,
    info: &mut ChunkInfo,
) -> Result<Counts, &'static str> {
    let mut r = Reader::new(body);
    let mut sum = Counts::default();
    let mut prev_pair: Option<u64> = None;
    if r.at_end() {
        return Err("empty client group");
    }
    while !r.at_end() {
        let d = r.varint();
        let pair = match prev_pair {
            None => Some(d),
            Some(p) => p.checked_add(d).and_then(|v| v.checked_add(1)),
        }
        .filter(|&p| p < u64::from(u32::MAX))
        .ok_or("pair id out of range")?;
        prev_pair = Some(pair);
        if !pair_ok(client, pair as u32) {
            return Err("pair not in the dictionary or under another client");
        }
        let nf = r.varint();
        let n = (nf >> 2) + 1;
        let bitmap = nf & 2 != 0;
        let base = nf & 1 != 0;
        if nf >> 2 >= CHUNK_BUCKETS {
            return Err("too many buckets in a pair");
        }
        let (stored, data) = if n > SMALL_PAIR as u64 {
            let len = r.varint();
            let t = r.counts();
            (Some(t), r.slice(len))
        } else {
            (None, &[][..])
        };
        if r.bad {
            return Err("truncated pair");
        }
        let mut pr = if stored.is_some() {
            Reader::new(data)
        } else {
            // Small pairs are read in place, from the group reader.
            std::mem::replace(&mut r, Reader::new(&[]))
        };
        let pt = validate_body(&mut pr, n, bitmap, base, info)?;
        if let Some(t) = stored {
            if !pr.at_end() {
                return Err("pair body longer than its buckets");
            }
            if t != pt {
                return Err("pair totals do not match its buckets");
            }
        } else {
            r = pr;
        }
        checked_add(&mut sum, &pt).ok_or("totals overflow")?;
    }
    Ok(sum)
}

fn validate_body(
    r: &mut Reader,
    n: u64,
    bitmap: bool,
    base: bool,
    info: &mut ChunkInfo,
) -> Result<Counts, &'static str> {
    let mut offs = Vec::with_capacity(n as usize);
    if bitmap {
        let bm = r.slice(BITMAP_BYTES as u64);
        for (i, &byte) in bm.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    offs.push((i * 8 + bit) as u64);
                }
            }
        }
        if offs.len() as u64 != n {
            return Err("bitmap does not match the bucket count");
        }
    }
    let mut sum = Counts::default();
    let mut prev: Option<u64> = None;
    for i in 0..n as usize {
        let off = if bitmap {
            offs[i]
        } else {
            let d = r.varint();
            match prev {
                None => d,
                Some(p) => p.saturating_add(d).saturating_add(1),
            }
        };
        if off >= CHUNK_BUCKETS || prev.is_some_and(|p| off <= p) {
            return Err("bucket offset out of order or range");
        }
        prev = Some(off);
        let c = validate_value(r, base)?;
        checked_add(&mut sum, &c).ok_or("totals overflow")?;
        info.first_off = info.first_off.min(off as u16);
        info.last_off = info.last_off.max(off as u16);
        info.buckets += 1;
    }
    if r.bad {
        return Err("truncated buckets");
    }
    Ok(sum)
}

fn validate_value(r: &mut Reader, base: bool) -> Result<Counts, &'static str> {
    let h = r.byte();
    if h == 0 {
        return Err("empty bucket");
    }
    let mut up = u64::from(h & 15);
    let mut dn = u64::from(h >> 4);
    if up == 15 {
        up += r.varint();
    }
    if dn == 15 {
        dn += r.varint();
    }
    if up > u64::from(u32::MAX) || dn > u64::from(u32::MAX) {
        return Err("packet count out of range");
    }
    let sub = if base { MIN_PACKET } else { 0 };
    let mut bytes = |pk: u64| -> Option<u64> {
        if pk == 0 {
            Some(0)
        } else {
            r.varint().checked_add(sub * pk)
        }
    };
    let up_bytes = bytes(up).ok_or("byte count overflow")?;
    let down_bytes = bytes(dn).ok_or("byte count overflow")?;
    if r.bad {
        return Err("truncated bucket");
    }
    Ok(Counts {
        up_bytes,
        down_bytes,
        up_packets: up,
        down_packets: dn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(ub: u64, db: u64, up: u32, dp: u32) -> Acc {
        Acc {
            up_bytes: ub,
            down_bytes: db,
            up_packets: up,
            down_packets: dp,
        }
    }

    fn decode_all(blob: &[u8]) -> Vec<(u32, u32, u16, Counts)> {
        let mut v = Vec::new();
        for g in groups(blob) {
            for p in pairs(g.body) {
                p.for_each_bucket(|o, c| v.push((g.client, p.pair, o, *c)));
            }
        }
        v
    }

    #[test]
    fn varint_round_trip() {
        for v in [0, 1, 127, 128, 300, 16383, 16384, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut r = Reader::new(&b);
            assert_eq!(r.varint(), v);
            assert!(!r.bad && r.at_end());
        }
        // Eleven continuation bytes do not fit u64.
        let mut r = Reader::new(&[0xff; 11]);
        r.varint();
        assert!(r.bad);
    }

    #[test]
    fn chunk_round_trip_all_shapes() {
        let mut entries = Vec::new();
        // Small pair, base encoding, escapes for big packet counts.
        entries.push(Entry { client: 0, pair: 3, off: 5, acc: acc(52 * 20, 1500 * 300, 20, 300) });
        // Pair with tiny packets (no base) and one direction only.
        for off in [0u16, 1, 2, 9, 100, 599] {
            entries.push(Entry { client: 0, pair: 7, off, acc: acc(0, 5, 0, 1) });
        }
        // Dense pair: bitmap.
        for off in 0..600u16 {
            entries.push(Entry { client: 2, pair: 1, off, acc: acc(60, 1400 * 3, 1, 3) });
        }
        let (blob, info) = encode_chunk(&entries);
        assert_eq!(info.buckets as usize, entries.len());
        assert_eq!((info.first_off, info.last_off), (0, 599));
        let got = decode_all(&blob);
        let want: Vec<_> =
            entries.iter().map(|e| (e.client, e.pair, e.off, e.acc.counts())).collect();
        assert_eq!(got, want);
        assert_eq!(validate(&blob, |_, _| true), Ok(info));
        // The dense pair costs about one byte per bucket for offsets and header combined.
        assert!(blob.len() < 600 * 5, "{}", blob.len());
    }

    #[test]
    fn validate_rejects_each_truncation() {
        let entries: Vec<_> = (0..40u16)
            .map(|i| Entry { client: u32::from(i / 10), pair: u32::from(i / 3), off: i * 7 % 600, acc: acc(100, 900, 1, 2) })
            .collect();
        let mut entries = entries;
        entries.sort_by_key(|e| (e.client, e.pair, e.off));
        entries.dedup_by_key(|e| (e.client, e.pair, e.off));
        let (blob, info) = encode_chunk(&entries);
        // A cut between groups is a valid shorter chunk (the snapshot's length and
        // checksum catch those); any other cut must fail.
        for cut in 0..blob.len() {
            assert_ne!(validate(&blob[..cut], |_, _| true), Ok(info), "cut at {cut}");
        }
    }
}
