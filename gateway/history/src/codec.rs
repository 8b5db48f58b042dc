//! The sealed chunk format: one byte blob per minute of history.
//!
//! ```text
//! chunk  = group*                         groups sorted by client index
//! group  = v(client delta) v(body len) counts body
//!          body = pair*                   pairs sorted by pair id
//! pair   = v(pair delta) v((n-1) << 3 | bitmap << 2 | mode)
//!          [v(up size) v(down size)]      only in mode 2
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
//! the value itself. Bytes are stored relative to what the packet count predicts, per
//! the pair's mode, whichever is shortest for that pair-chunk:
//!
//! * mode 0: bytes as they are;
//! * mode 1: `bytes - 40 * packets` (real IP packets are at least 40 bytes, so a few
//!   ACKs fit one byte);
//! * mode 2: zigzag of `bytes - size * packets`, with the pair's mean packet size per
//!   direction stored once: bulk flows are mostly full-size packets and ACKs all look
//!   alike, so what is left is small.
//!
//! Group and pair totals let coarse queries skip the bucket data; small pairs carry
//! none, because decoding a few buckets costs less than the totals would take.

use crate::Counts;

/// Buckets in one chunk: one minute of 100 ms buckets.
pub(crate) const CHUNK_BUCKETS: u64 = 600;
const BITMAP_BYTES: usize = (CHUNK_BUCKETS as usize).div_ceil(8);
/// Pairs with at most this many buckets in a chunk store neither length nor totals.
pub(crate) const SMALL_PAIR: usize = 4;
/// Smallest packet assumed by mode 1 (IPv4 + TCP headers).
const MIN_PACKET: u64 = 40;

/// How a pair's byte counts are stored: predicted as `packets * size`, the rest as a
/// varint, zigzagged when it may be negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Model {
    up: u64,
    down: u64,
    signed: bool,
}

impl Model {
    fn mode(&self) -> u64 {
        match (self.signed, self.up) {
            (true, _) => 2,
            (false, 0) => 0,
            (false, _) => 1,
        }
    }

    /// What is stored for `bytes` over `pkts` packets of predicted `size`.
    fn residual(&self, bytes: u64, pkts: u64, size: u64) -> Option<u64> {
        let pred = pkts.checked_mul(size)?;
        if self.signed {
            let d = i64::try_from(bytes)
                .ok()?
                .checked_sub(i64::try_from(pred).ok()?)?;
            Some(((d << 1) ^ (d >> 63)) as u64)
        } else {
            bytes.checked_sub(pred)
        }
    }

    /// Inverse of `residual`; wraps rather than panics on bad input.
    #[inline(always)]
    fn bytes(&self, stored: u64, pkts: u64, size: u64) -> u64 {
        let pred = pkts.wrapping_mul(size);
        if self.signed {
            let d = (stored >> 1) as i64 ^ -((stored & 1) as i64);
            pred.wrapping_add(d as u64)
        } else {
            pred.wrapping_add(stored)
        }
    }

    /// The same, checked, for validation.
    fn bytes_checked(&self, stored: u64, pkts: u64, size: u64) -> Option<u64> {
        let pred = pkts.checked_mul(size)?;
        if self.signed {
            let d = (stored >> 1) as i64 ^ -((stored & 1) as i64);
            pred.checked_add_signed(d)
        } else {
            pred.checked_add(stored)
        }
    }

    /// Bytes the values of `p` take under this model, None if it cannot hold them.
    fn cost(&self, p: &[Entry]) -> Option<usize> {
        let mut n = if self.signed {
            varint_len(self.up) + varint_len(self.down)
        } else {
            0
        };
        for e in p {
            let a = &e.acc;
            if a.up_packets > 0 {
                n += varint_len(self.residual(a.up_bytes, a.up_packets.into(), self.up)?);
            }
            if a.down_packets > 0 {
                n += varint_len(self.residual(a.down_bytes, a.down_packets.into(), self.down)?);
            }
        }
        Some(n)
    }

    /// The cheapest model for these buckets.
    fn choose(p: &[Entry], totals: &Counts) -> Model {
        let mean = |b: u64, n: u64| b.saturating_add(n / 2).checked_div(n).unwrap_or(0);
        let candidates = [
            Model::default(),
            Model {
                up: MIN_PACKET,
                down: MIN_PACKET,
                signed: false,
            },
            Model {
                up: mean(totals.up_bytes, totals.up_packets),
                down: mean(totals.down_bytes, totals.down_packets),
                signed: true,
            },
        ];
        let mut best = (usize::MAX, Model::default());
        for m in candidates {
            if let Some(c) = m.cost(p) {
                if c < best.0 {
                    best = (c, m);
                }
            }
        }
        best.1
    }
}

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

/// What a chunk holds, kept beside its blob. The peaks (of bytes per bucket summed over
/// all pairs) let a summary of everyone skip decoding whole chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkInfo {
    pub totals: Counts,
    /// Non-empty pair-buckets.
    pub buckets: u32,
    pub first_off: u16,
    pub last_off: u16,
    /// Offsets with any traffic.
    pub active: u16,
    pub peak_up_off: u16,
    pub peak_down_off: u16,
    pub peak_up: u64,
    pub peak_down: u64,
}

/// Bytes per offset summed over the pairs of a chunk, to find its peaks.
struct Profile {
    up: Vec<u64>,
    down: Vec<u64>,
    seen: Vec<bool>,
}

impl Profile {
    fn new() -> Self {
        let n = CHUNK_BUCKETS as usize;
        Profile {
            up: vec![0; n],
            down: vec![0; n],
            seen: vec![false; n],
        }
    }

    fn add(&mut self, off: u16, up: u64, down: u64) {
        let i = usize::from(off);
        self.up[i] = self.up[i].saturating_add(up);
        self.down[i] = self.down[i].saturating_add(down);
        self.seen[i] = true;
    }

    /// Fills the activity and peak fields; ties go to the earliest offset.
    fn finish(&self, info: &mut ChunkInfo) {
        for i in 0..CHUNK_BUCKETS as usize {
            if !self.seen[i] {
                continue;
            }
            info.active += 1;
            if self.up[i] > info.peak_up {
                info.peak_up = self.up[i];
                info.peak_up_off = i as u16;
            }
            if self.down[i] > info.peak_down {
                info.peak_down = self.down[i];
                info.peak_down_off = i as u16;
            }
        }
    }
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

/// The inverse of `delta`. Wrapping, so damaged input yields a wrong id (caught by the
/// readers' checks), never a panic.
fn undelta(d: u64, prev: Option<u64>) -> u64 {
    match prev {
        None => d,
        Some(p) => p.wrapping_add(d).wrapping_add(1),
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
    let mut prof = Profile::new();
    let mut prev_client = None;
    for g in entries.chunk_by(|a, b| a.client == b.client) {
        for e in g {
            prof.add(e.off, e.acc.up_bytes, e.acc.down_bytes);
        }
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
    prof.finish(&mut info);
    (out, info)
}

fn encode_pair(p: &[Entry], prev: Option<u64>, out: &mut Vec<u8>, body: &mut Vec<u8>) -> Counts {
    let mut totals = Counts::default();
    let mut delta_len = 0;
    let mut prev_off = None;
    for e in p {
        totals += e.acc.counts();
        delta_len += varint_len(delta(u64::from(e.off), prev_off));
        prev_off = Some(u64::from(e.off));
    }
    let model = Model::choose(p, &totals);
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
            put_value(body, &e.acc, &model);
        }
    } else {
        let mut prev_off = None;
        for e in p {
            put_varint(body, delta(u64::from(e.off), prev_off));
            prev_off = Some(u64::from(e.off));
            put_value(body, &e.acc, &model);
        }
    }
    put_varint(out, delta(u64::from(p[0].pair), prev));
    let n = p.len() as u64;
    put_varint(out, (n - 1) << 3 | u64::from(bitmap) << 2 | model.mode());
    if model.signed {
        put_varint(out, model.up);
        put_varint(out, model.down);
    }
    if p.len() > SMALL_PAIR {
        put_varint(out, body.len() as u64);
        put_counts(out, &totals);
    }
    out.extend_from_slice(body);
    totals
}

fn put_value(out: &mut Vec<u8>, a: &Acc, m: &Model) {
    let up = u64::from(a.up_packets);
    let dn = u64::from(a.down_packets);
    out.push((up.min(15) | dn.min(15) << 4) as u8);
    if up >= 15 {
        put_varint(out, up - 15);
    }
    if dn >= 15 {
        put_varint(out, dn - 15);
    }
    // `choose` only picks a model that holds every value.
    if up > 0 {
        put_varint(out, m.residual(a.up_bytes, up, m.up).unwrap_or(0));
    }
    if dn > 0 {
        put_varint(out, m.residual(a.down_bytes, dn, m.down).unwrap_or(0));
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

    #[inline(always)]
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

    /// Inline for the one- to three-byte values that make up nearly all of a blob.
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> u64 {
        let (buf, p) = (self.buf, self.pos);
        if let Some(&b0) = buf.get(p) {
            if b0 < 0x80 {
                self.pos = p + 1;
                return u64::from(b0);
            }
            if let Some(&b1) = buf.get(p + 1) {
                let v = u64::from(b0 & 0x7f);
                if b1 < 0x80 {
                    self.pos = p + 2;
                    return v | u64::from(b1) << 7;
                }
                if let Some(&b2) = buf.get(p + 2) {
                    if b2 < 0x80 {
                        self.pos = p + 3;
                        return v | u64::from(b1 & 0x7f) << 7 | u64::from(b2) << 14;
                    }
                }
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> u64 {
        let mut v = 0;
        let mut shift = 0;
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
#[inline(always)]
fn get_value(r: &mut Reader, m: &Model) -> Counts {
    let h = r.byte();
    let mut up = u64::from(h & 15);
    let mut dn = u64::from(h >> 4);
    if up == 15 {
        up = up.wrapping_add(r.varint());
    }
    if dn == 15 {
        dn = dn.wrapping_add(r.varint());
    }
    let up_bytes = if up > 0 {
        m.bytes(r.varint(), up, m.up)
    } else {
        0
    };
    let down_bytes = if dn > 0 {
        m.bytes(r.varint(), dn, m.down)
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
fn decode_body(r: &mut Reader, n: u64, bitmap: bool, m: &Model, mut f: impl FnMut(u16, Counts)) {
    if bitmap {
        let bm = r.slice(BITMAP_BYTES as u64);
        for (i, &byte) in bm.iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let off = (i * 8) as u16 + bits.trailing_zeros() as u16;
                bits &= bits - 1;
                f(off, get_value(r, m));
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
            let c = get_value(r, m);
            if r.bad {
                return;
            }
            f(off as u16, c);
        }
    }
}

/// Reads the mode bits and, for mode 2, the sizes that follow them.
fn read_model(r: &mut Reader, mode: u64) -> Option<Model> {
    match mode {
        0 => Some(Model::default()),
        1 => Some(Model {
            up: MIN_PACKET,
            down: MIN_PACKET,
            signed: false,
        }),
        2 => Some(Model {
            up: r.varint(),
            down: r.varint(),
            signed: true,
        }),
        _ => None,
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
        let client = undelta(self.r.varint(), self.prev);
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
    data: &'a [u8],
    n: u64,
    bitmap: bool,
    model: Model,
}

impl PairRec<'_> {
    #[inline]
    pub(crate) fn for_each_bucket(&self, mut f: impl FnMut(u16, &Counts)) {
        decode_body(
            &mut Reader::new(self.data),
            self.n,
            self.bitmap,
            &self.model,
            |o, c| f(o, &c),
        );
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
        let pair = undelta(self.r.varint(), self.prev);
        self.prev = Some(pair);
        let nf = self.r.varint();
        let n = (nf >> 3).wrapping_add(1);
        let bitmap = nf & 4 != 0;
        let model = read_model(&mut self.r, nf & 3).unwrap_or_default();
        let (totals, data) = if n > SMALL_PAIR as u64 {
            let len = self.r.varint();
            let totals = self.r.counts();
            (totals, self.r.slice(len))
        } else {
            // No stored totals: add up the few buckets, and keep their bytes to decode
            // again should the caller want them one by one.
            let start = self.r.rest();
            let mut totals = Counts::default();
            decode_body(&mut self.r, n, bitmap, &model, |_, c| totals += c);
            (totals, &start[..start.len() - self.r.rest().len()])
        };
        if self.r.bad {
            return None;
        }
        Some(PairRec {
            pair: pair as u32,
            totals,
            data,
            n,
            bitmap,
            model,
        })
    }
}

/// Encodes an hour's per-pair totals, sorted by (client, pair), in the chunk layout
/// minus the buckets: groups as in a chunk, each pair `v(pair delta) counts`.
pub(crate) fn encode_rollup(items: &[(u32, u32, Counts)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    let mut prev_client = None;
    for g in items.chunk_by(|a, b| a.0 == b.0) {
        body.clear();
        let mut gt = Counts::default();
        let mut prev_pair = None;
        for &(_, pair, c) in g {
            put_varint(&mut body, delta(u64::from(pair), prev_pair));
            put_counts(&mut body, &c);
            prev_pair = Some(u64::from(pair));
            gt += c;
        }
        let client = u64::from(g[0].0);
        put_varint(&mut out, delta(client, prev_client));
        put_varint(&mut out, body.len() as u64);
        put_counts(&mut out, &gt);
        out.extend_from_slice(&body);
        prev_client = Some(client);
    }
    out
}

/// The pairs of one group of a rollup: (pair, totals).
pub(crate) struct RollupPairs<'a> {
    r: Reader<'a>,
    prev: Option<u64>,
}

pub(crate) fn rollup_pairs(body: &[u8]) -> RollupPairs<'_> {
    RollupPairs {
        r: Reader::new(body),
        prev: None,
    }
}

impl Iterator for RollupPairs<'_> {
    type Item = (u32, Counts);
    #[inline]
    fn next(&mut self) -> Option<(u32, Counts)> {
        if self.r.at_end() || self.r.bad {
            return None;
        }
        let pair = undelta(self.r.varint(), self.prev);
        self.prev = Some(pair);
        let c = self.r.counts();
        (!self.r.bad).then_some((pair as u32, c))
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
    let mut prof = Profile::new();
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
        let sum = validate_group(body, client as u32, &mut pair_ok, &mut info, &mut prof)?;
        if sum != gt {
            return Err("client group totals do not match its buckets");
        }
        checked_add(&mut info.totals, &gt).ok_or("totals overflow")?;
    }
    if info.buckets == 0 {
        return Err("empty chunk");
    }
    prof.finish(&mut info);
    Ok(info)
}

fn validate_group(
    body: &[u8],
    client: u32,
    pair_ok: &mut impl FnMut(u32, u32) -> bool,
    info: &mut ChunkInfo,
    prof: &mut Profile,
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
        let n = (nf >> 3) + 1;
        let bitmap = nf & 4 != 0;
        if nf >> 3 >= CHUNK_BUCKETS {
            return Err("too many buckets in a pair");
        }
        let model = read_model(&mut r, nf & 3).ok_or("bad byte count mode")?;
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
        let pt = validate_body(&mut pr, n, bitmap, &model, info, prof)?;
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
    m: &Model,
    info: &mut ChunkInfo,
    prof: &mut Profile,
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
    let mut from_bitmap = offs.iter();
    for _ in 0..n {
        let off = if bitmap {
            from_bitmap.next().copied().unwrap_or(u64::MAX)
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
        let c = validate_value(r, m)?;
        checked_add(&mut sum, &c).ok_or("totals overflow")?;
        prof.add(off as u16, c.up_bytes, c.down_bytes);
        info.first_off = info.first_off.min(off as u16);
        info.last_off = info.last_off.max(off as u16);
        info.buckets += 1;
    }
    if r.bad {
        return Err("truncated buckets");
    }
    Ok(sum)
}

fn validate_value(r: &mut Reader, m: &Model) -> Result<Counts, &'static str> {
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
    let mut bytes = |pk: u64, size: u64| -> Option<u64> {
        if pk == 0 {
            Some(0)
        } else {
            m.bytes_checked(r.varint(), pk, size)
        }
    };
    let up_bytes = bytes(up, m.up).ok_or("byte count out of range")?;
    let down_bytes = bytes(dn, m.down).ok_or("byte count out of range")?;
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
        for v in [
            0,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
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
        // Small pair of ACK-sized and full packets (mode 1), escaped packet counts.
        entries.push(Entry {
            client: 0,
            pair: 3,
            off: 5,
            acc: acc(52 * 20, 1500 * 300, 20, 300),
        });
        // Tiny packets (mode 0), one direction only.
        for off in [0u16, 1, 2, 9, 100, 599] {
            entries.push(Entry {
                client: 0,
                pair: 7,
                off,
                acc: acc(0, 5, 0, 1),
            });
        }
        // Sizes scattered around their mean (mode 2, residuals of both signs).
        for off in (0..300u16).step_by(7) {
            let k = u64::from(off % 5 + 1);
            let jitter = if off % 2 == 0 { 700 } else { 0 };
            entries.push(Entry {
                client: 0,
                pair: 9,
                off,
                acc: acc(52 * k + 3, 1500 * k + jitter - 350, k as u32, k as u32),
            });
        }
        // Dense pair: bitmap.
        for off in 0..600u16 {
            entries.push(Entry {
                client: 2,
                pair: 1,
                off,
                acc: acc(60, 1400 * 3, 1, 3),
            });
        }
        let (blob, info) = encode_chunk(&entries);
        assert_eq!(info.buckets as usize, entries.len());
        assert_eq!((info.first_off, info.last_off), (0, 599));
        let got = decode_all(&blob);
        let want: Vec<_> = entries
            .iter()
            .map(|e| (e.client, e.pair, e.off, e.acc.counts()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(validate(&blob, |_, _| true), Ok(info));
        // Mode 2 leaves the dense pair's sizes at one byte each, so a bucket takes
        // about three bytes (header, up, down) plus its bitmap bit.
        assert!(blob.len() < 600 * 4, "{}", blob.len());
        let (dense, _) = encode_chunk(&entries[entries.len() - 600..]);
        assert!(dense.len() <= 600 * 3 + 75 + 50, "{}", dense.len());
    }

    #[test]
    fn validate_rejects_each_truncation() {
        let entries: Vec<_> = (0..40u16)
            .map(|i| Entry {
                client: u32::from(i / 10),
                pair: u32::from(i / 3),
                off: i * 7 % 600,
                acc: acc(100, 900, 1, 2),
            })
            .collect();
        let mut entries = entries;
        entries.sort_by_key(|e| (e.client, e.pair, e.off));
        entries.dedup_by_key(|e| (e.client, e.pair, e.off));
        let (blob, info) = encode_chunk(&entries);
        // A cut between groups is a valid shorter chunk (the snapshot's length and
        // checksum catch those); any other cut must fail.
        for cut in 0..blob.len() {
            assert_ne!(
                validate(&blob[..cut], |_, _| true),
                Ok(info),
                "cut at {cut}"
            );
        }
    }
}
