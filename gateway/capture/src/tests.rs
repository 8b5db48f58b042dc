use super::*;

const KIB: usize = 1024;
const T0: u64 = 1_700_000_000_123_456_789;

fn mac(n: u8) -> Mac {
    [0x02, 0, 0, 0, 0, n]
}

/// An IPv4/UDP packet of `len` bytes in total (>= 28) from `src` to
/// 192.0.2.1, with `tag` written into the payload so packets can be told
/// apart.
fn udp(src: [u8; 4], len: usize, tag: u32) -> Vec<u8> {
    assert!(len >= 28);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&[192, 0, 2, 1]);
    let sum = (0..10)
        .map(|i| u32::from(u16::from_be_bytes([p[2 * i], p[2 * i + 1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (tag as usize).wrapping_add(i) as u8;
    }
    if len >= 32 {
        p[28..32].copy_from_slice(&tag.to_be_bytes());
    }
    p
}

/// Arbitrary bytes of `len`, tagged at the front when there is room.
fn blob(len: usize, tag: u32) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u32 ^ tag.wrapping_mul(31)) as u8)
        .collect();
    let n = len.min(4);
    v[..n].copy_from_slice(&tag.to_be_bytes()[..n]);
    v
}

/// Deterministic pseudo-random numbers for packet sizes.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pkt {
    ts: u64,
    orig: u32,
    data: Vec<u8>,
}

fn held(c: &Captures, m: &Mac) -> Vec<Pkt> {
    c.snapshot(m, None, None)
        .map(|s| {
            s.iter()
                .map(|p| Pkt {
                    ts: p.ts_ns,
                    orig: p.orig_len,
                    data: p.data.to_vec(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn info(c: &Captures, m: &Mac) -> ClientInfo {
    let s = format_mac(m);
    c.clients()
        .into_iter()
        .find(|i| i.mac == s)
        .expect("client listed")
}

fn u16le(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes(b[i..i + 2].try_into().unwrap())
}
fn u32le(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

struct PcapFile {
    snaplen: u32,
    packets: Vec<Pkt>,
}

/// Byte-wise pcap parser that checks the framing as it goes.
fn parse_pcap(b: &[u8]) -> PcapFile {
    assert_eq!(&b[..4], &[0x4d, 0x3c, 0xb2, 0xa1], "nanosecond magic, LE");
    assert_eq!((u16le(b, 4), u16le(b, 6)), (2, 4));
    assert_eq!(u32le(b, 8), 0);
    assert_eq!(u32le(b, 12), 0);
    let snaplen = u32le(b, 16);
    assert_eq!(u32le(b, 20), 101, "LINKTYPE_RAW");
    let mut i = 24;
    let mut packets = vec![];
    while i < b.len() {
        let (sec, nsec, incl, orig) = (
            u32le(b, i),
            u32le(b, i + 4),
            u32le(b, i + 8),
            u32le(b, i + 12),
        );
        assert!(nsec < 1_000_000_000);
        assert!(incl <= orig && incl <= snaplen);
        i += 16;
        packets.push(Pkt {
            ts: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
            orig,
            data: b[i..i + incl as usize].to_vec(),
        });
        i += incl as usize;
    }
    assert_eq!(i, b.len(), "no trailing bytes");
    PcapFile { snaplen, packets }
}

#[derive(Default)]
struct PcapNgFile {
    comment: Option<String>,
    if_name: String,
    tsresol: u8,
    snaplen: u32,
    packets: Vec<Pkt>,
}

/// Options of a pcapng block body; checks padding and the end marker.
fn parse_opts(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let (code, len) = (u16le(b, i), u16le(b, i + 2) as usize);
        i += 4;
        if code == 0 {
            assert_eq!(len, 0);
            break;
        }
        out.push((code, b[i..i + len].to_vec()));
        let padded = len.next_multiple_of(4);
        assert!(
            b[i + len..i + padded].iter().all(|&x| x == 0),
            "option padding is zero"
        );
        i += padded;
    }
    assert_eq!(
        i,
        b.len(),
        "options end with opt_endofopt and fill the block"
    );
    out
}

/// Byte-wise pcapng parser that checks the framing as it goes.
fn parse_pcapng(b: &[u8]) -> PcapNgFile {
    let mut f = PcapNgFile::default();
    let mut i = 0;
    let mut blocks = vec![];
    while i < b.len() {
        let (ty, len) = (u32le(b, i), u32le(b, i + 4) as usize);
        assert!(
            len >= 12 && len % 4 == 0,
            "block length {len} is a multiple of 4"
        );
        assert_eq!(u32le(b, i + len - 4) as usize, len, "trailing block length");
        let body = &b[i + 8..i + len - 4];
        blocks.push(ty);
        match ty {
            0x0A0D0D0A => {
                assert_eq!(u32le(body, 0), 0x1A2B3C4D, "byte-order magic");
                assert_eq!((u16le(body, 4), u16le(body, 6)), (1, 0));
                assert_eq!(i64::from_le_bytes(body[8..16].try_into().unwrap()), -1);
                for (code, v) in parse_opts(&body[16..]) {
                    if code == 1 {
                        f.comment = Some(String::from_utf8(v).unwrap());
                    }
                }
            }
            1 => {
                assert_eq!(u16le(body, 0), 101, "LINKTYPE_RAW");
                assert_eq!(u16le(body, 2), 0);
                f.snaplen = u32le(body, 4);
                for (code, v) in parse_opts(&body[8..]) {
                    match code {
                        2 => f.if_name = String::from_utf8(v).unwrap(),
                        9 => f.tsresol = v[0],
                        _ => {}
                    }
                }
            }
            6 => {
                assert_eq!(u32le(body, 0), 0, "interface 0");
                let ts = (u64::from(u32le(body, 4)) << 32) | u64::from(u32le(body, 8));
                let (cap, orig) = (u32le(body, 12) as usize, u32le(body, 16));
                assert!(cap as u32 <= orig);
                assert_eq!(len, 32 + cap.next_multiple_of(4), "EPB length, no options");
                assert!(
                    body[20 + cap..].iter().all(|&x| x == 0),
                    "data padding is zero"
                );
                f.packets.push(Pkt {
                    ts,
                    orig,
                    data: body[20..20 + cap].to_vec(),
                });
            }
            other => panic!("unexpected block type {other:#x}"),
        }
        i += len;
    }
    assert_eq!(i, b.len());
    assert_eq!(&blocks[..2], &[0x0A0D0D0A, 1], "SHB then one IDB");
    assert!(blocks[2..].iter().all(|&t| t == 6), "then only EPBs");
    f
}

/// Pushes packets of sizes 28..=31 (every padding case) and one cut by
/// snaplen, returning what was pushed as it should read back.
fn framing_fixture() -> (Captures, Vec<Pkt>) {
    let mut c = Captures::new(Config {
        snaplen: 60,
        ..Config::default()
    });
    let m = mac(1);
    let mut want = vec![];
    for (k, len) in [28usize, 29, 30, 31, 100].into_iter().enumerate() {
        let p = udp([10, 0, 0, k as u8], len, k as u32);
        let ts = T0 + k as u64 * 1_000_000_007;
        c.push(m, ts, len as u32, &p);
        want.push(Pkt {
            ts,
            orig: len as u32,
            data: p[..len.min(60)].to_vec(),
        });
    }
    (c, want)
}

#[test]
fn pcap_framing() {
    let (c, want) = framing_fixture();
    let e = c.export(&mac(1), Format::Pcap, None, None, "").unwrap();
    assert_eq!(e.packets, 5);
    assert_eq!((e.first_ns, e.last_ns), (want[0].ts, want[4].ts));
    let f = parse_pcap(&e.bytes);
    assert_eq!(f.snaplen, 60);
    assert_eq!(f.packets, want);

    // And through pcap-file's reader. Raw packets: its checked reader (2.0)
    // wrongly rejects orig_len > snaplen, i.e. any truncated packet.
    let mut r = pcap_file::pcap::PcapReader::new(&e.bytes[..]).unwrap();
    assert_eq!(
        r.header().ts_resolution,
        pcap_file::TsResolution::NanoSecond
    );
    assert_eq!(r.header().datalink, pcap_file::DataLink::RAW);
    let mut got = vec![];
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap();
        got.push(Pkt {
            ts: u64::from(p.ts_sec) * 1_000_000_000 + u64::from(p.ts_frac),
            orig: p.orig_len,
            data: p.data.to_vec(),
        });
    }
    assert_eq!(got, want);
}

#[test]
fn pcapng_framing() {
    let (c, want) = framing_fixture();
    let s = c.snapshot(&mac(1), None, None).unwrap();
    let e = s.encode(Format::PcapNg, "", Some("kitchen tablet"));
    assert_eq!(e.packets, 5);
    let f = parse_pcapng(&e.bytes);
    assert_eq!(f.comment.as_deref(), Some("kitchen tablet"));
    assert_eq!(
        f.if_name, "02:00:00:00:00:01",
        "empty name falls back to the MAC"
    );
    assert_eq!(f.tsresol, 9);
    assert_eq!(f.snaplen, 60);
    assert_eq!(f.packets, want);

    let e = c
        .export(&mac(1), Format::PcapNg, None, None, "lan-tv")
        .unwrap();
    let f = parse_pcapng(&e.bytes);
    assert_eq!((f.if_name.as_str(), f.comment), ("lan-tv", None));

    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption as Opt;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut r = PcapNgReader::new(&e.bytes[..]).unwrap();
    let mut got = vec![];
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::EnhancedPacket(p) => got.push(Pkt {
                ts: p.timestamp.as_nanos() as u64,
                orig: p.original_len,
                data: p.data.to_vec(),
            }),
            Block::InterfaceDescription(i) => {
                assert_eq!(i.linktype, pcap_file::DataLink::RAW);
                assert!(i.options.contains(&Opt::IfTsResol(9)));
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!(got, want);
}

#[test]
fn snaplen_truncation_keeps_orig_len() {
    let mut c = Captures::new(Config {
        snaplen: 64,
        ..Config::default()
    });
    let m = mac(1);
    let p = udp([10, 0, 0, 1], 1500, 7);
    c.push(m, T0, 1500, &p);
    // Caller claims less on the wire than it handed over: orig_len is
    // raised to what was captured.
    c.push(m, T0 + 1, 10, &p[..40]);
    let h = held(&c, &m);
    assert_eq!(
        h[0],
        Pkt {
            ts: T0,
            orig: 1500,
            data: p[..64].to_vec()
        }
    );
    assert_eq!(
        h[1],
        Pkt {
            ts: T0 + 1,
            orig: 40,
            data: p[..40].to_vec()
        }
    );
    assert_eq!(info(&c, &m).bytes, 104);
    let f = parse_pcap(&c.export(&m, Format::Pcap, None, None, "").unwrap().bytes);
    assert_eq!(f.packets, h);
    let f = parse_pcapng(&c.export(&m, Format::PcapNg, None, None, "").unwrap().bytes);
    assert_eq!(f.packets, h);
}

/// Memory a client costs when its records span stream bytes [start, end)
/// counted from the beginning of the stream.
fn model_memory(chunk: usize, start: usize, end: usize) -> usize {
    CLIENT_OVERHEAD + (end.div_ceil(chunk) - start / chunk) * (chunk + ring::CHUNK_PTR)
}

#[test]
fn ring_wrap_keeps_exactly_the_newest_that_fit() {
    let cap = 16 * KIB;
    let mut c = Captures::new(Config {
        per_client_bytes: cap,
        ..Config::default()
    });
    let chunk = c.chunk;
    assert_eq!(chunk, 512);
    let m = mac(1);
    let mut rng = Lcg(1);
    let mut pushed = vec![];
    let mut ends = vec![0usize];
    for k in 0..3000u32 {
        // Sizes from 0 to 1300: records both inside and across chunks.
        let len = rng.next(1301);
        let data = blob(len, k);
        let ts = T0 + u64::from(k) * 1000;
        c.push(m, ts, len as u32 + 14, &data);
        pushed.push(Pkt {
            ts,
            orig: len as u32 + 14,
            data,
        });
        ends.push(ends.last().unwrap() + REC_HDR + len);
        assert!(c.memory_bytes() <= cap);

        // The longest suffix that fits in the cap, as the model says.
        let end = *ends.last().unwrap();
        let first = (0..pushed.len())
            .find(|&i| model_memory(chunk, ends[i], end) <= cap)
            .unwrap();
        if k % 97 == 0 || k == 2999 {
            assert_eq!(held(&c, &m), pushed[first..], "after push {k}");
        }
        let i = info(&c, &m);
        assert_eq!(i.packets, pushed.len() - first);
        assert_eq!(i.dropped, first as u64);
        assert_eq!(i.memory_bytes, model_memory(chunk, ends[first], end));
        assert_eq!(i.first_ns, Some(pushed[first].ts));
        assert_eq!(i.last_ns, Some(ts));
    }
    // The cap was used well: no more than two chunks' slack.
    assert!(info(&c, &m).memory_bytes + 2 * (chunk + ring::CHUNK_PTR) > cap);
}

#[test]
fn default_caps_hold_about_five_mib() {
    let mut c = Captures::new(Config::default());
    let m = mac(9);
    for k in 0..10_000u32 {
        c.push(m, T0 + u64::from(k), 1500, &udp([10, 0, 0, 9], 1500, k));
    }
    let i = info(&c, &m);
    assert!(i.memory_bytes <= 5 * MIB);
    assert!(i.memory_bytes > 5 * MIB - 2 * 64 * KIB);
    let h = held(&c, &m);
    assert_eq!(h.len(), i.packets);
    assert_eq!(i.packets as u64 + i.dropped, 10_000);
    let first = 10_000 - h.len() as u32;
    for (j, p) in h.iter().enumerate() {
        assert_eq!(p.data, udp([10, 0, 0, 9], 1500, first + j as u32));
    }
    assert_eq!(c.memory_bytes(), i.memory_bytes);
}

#[test]
fn per_client_cap_is_per_client() {
    let cap = 8 * KIB;
    let mut c = Captures::new(Config {
        per_client_bytes: cap,
        ..Config::default()
    });
    let (a, b) = (mac(1), mac(2));
    for k in 0..5u32 {
        c.push(b, T0 + u64::from(k), 100, &blob(100, k));
    }
    for k in 0..1000u32 {
        c.push(a, T0 + 10 + u64::from(k), 200, &blob(200, k));
    }
    assert!(info(&c, &a).memory_bytes <= cap);
    assert!(info(&c, &a).dropped > 900);
    assert_eq!(
        info(&c, &b).packets,
        5,
        "a flooding neighbour costs b nothing"
    );
    assert_eq!(info(&c, &b).dropped, 0);
    assert_eq!(
        c.memory_bytes(),
        info(&c, &a).memory_bytes + info(&c, &b).memory_bytes
    );
}

#[test]
fn too_big_for_any_cap_is_dropped() {
    let mut c = Captures::new(Config {
        per_client_bytes: 2 * KIB,
        ..Config::default()
    });
    let m = mac(1);
    c.push(m, T0, 100, &blob(100, 1));
    c.push(m, T0 + 1, 3000, &blob(3000, 2));
    let i = info(&c, &m);
    assert_eq!(
        (i.packets, i.dropped),
        (1, 1),
        "the big one is refused, nothing evicted for it"
    );
}

#[test]
fn total_cap_evicts_globally_oldest_first() {
    let total = 40 * KIB;
    let mut c = Captures::new(Config {
        per_client_bytes: 64 * KIB,
        total_bytes: total,
        ..Config::default()
    });
    let clients = [mac(1), mac(2), mac(3)];
    let mut rng = Lcg(7);
    let mut pushed: Vec<(Mac, u64)> = vec![];
    // Client 1 alone first, so it holds the oldest packets...
    for k in 0..60u64 {
        c.push(clients[0], T0 + k, 300, &blob(300, k as u32));
        pushed.push((clients[0], T0 + k));
    }
    assert_eq!(info(&c, &clients[0]).dropped, 0);
    // ...then everyone, in random order and sizes.
    for k in 60..2000u64 {
        let m = clients[rng.next(3)];
        let len = 40 + rng.next(600);
        c.push(m, T0 + k, len as u32, &blob(len, k as u32));
        pushed.push((m, T0 + k));
        assert!(c.memory_bytes() <= total);
        // Nobody else loses a packet while client 1 holds one of its first 60.
        let others: u64 = c
            .clients()
            .iter()
            .filter(|i| i.mac != format_mac(&clients[0]))
            .map(|i| i.dropped)
            .sum();
        if others > 0 {
            assert!(
                held(&c, &clients[0]).iter().all(|p| p.ts >= T0 + 60),
                "after push {k}"
            );
        }

        // What is held is exactly everything since some moment: nothing
        // newer was evicted while something older survived.
        let mut all: Vec<u64> = clients
            .iter()
            .flat_map(|m| held(&c, m).into_iter().map(|p| p.ts))
            .collect();
        all.sort_unstable();
        let oldest = all[0];
        let want: Vec<u64> = pushed
            .iter()
            .map(|p| p.1)
            .filter(|&t| t >= oldest)
            .collect();
        if k % 50 == 0 {
            assert_eq!(all, want, "after push {k}");
        } else {
            assert_eq!(all.len(), want.len(), "after push {k}");
        }
    }
    let sum: usize = c.clients().iter().map(|i| i.memory_bytes).sum();
    assert_eq!(c.memory_bytes(), sum);
    let dropped: u64 = c.clients().iter().map(|i| i.dropped).sum();
    let held_n: usize = c.clients().iter().map(|i| i.packets).sum();
    assert_eq!(dropped + held_n as u64, 2000);
    // Nearly full: eviction stops as soon as it fits.
    assert!(c.memory_bytes() > total - 3 * (c.chunk + ring::CHUNK_PTR) - 3 * CLIENT_OVERHEAD);
}

#[test]
fn disabled_client_records_nothing() {
    let mut c = Captures::new(Config::default());
    let (a, b) = (mac(1), mac(2));
    c.set_client_enabled(a, false);
    assert!(!c.client_enabled(&a) && !c.wants(&a));
    assert!(
        c.client_enabled(&b) && c.wants(&b),
        "unknown clients are on"
    );
    c.push(a, T0, 50, &blob(50, 1));
    c.push(b, T0, 50, &blob(50, 1));
    assert_eq!(info(&c, &a).packets, 0);
    assert!(!info(&c, &a).enabled);
    assert_eq!(info(&c, &b).packets, 1);

    // Off keeps what is held; on again records again.
    c.set_client_enabled(b, false);
    c.push(b, T0 + 1, 50, &blob(50, 2));
    assert_eq!(info(&c, &b).packets, 1);
    c.set_client_enabled(b, true);
    c.push(b, T0 + 2, 50, &blob(50, 3));
    assert_eq!(
        held(&c, &b).iter().map(|p| p.ts).collect::<Vec<_>>(),
        [T0, T0 + 2]
    );

    // Globally off: nothing recorded, nothing dropped.
    let before = c.memory_bytes();
    c.set_config(Config {
        enabled: false,
        ..Config::default()
    });
    assert!(!c.wants(&b));
    c.push(b, T0 + 3, 50, &blob(50, 4));
    c.push(mac(3), T0 + 3, 50, &blob(50, 4));
    assert_eq!(info(&c, &b).packets, 2);
    assert_eq!(c.clients().len(), 2, "no entry for a client seen while off");
    assert_eq!(c.memory_bytes(), before);
}

#[test]
fn set_config_shrinks_at_once() {
    let mut c = Captures::new(Config::default());
    let (a, b) = (mac(1), mac(2));
    for k in 0..4000u32 {
        let m = if k % 2 == 0 { a } else { b };
        c.push(m, T0 + u64::from(k), 1000, &blob(1000, k));
    }
    let full_a = held(&c, &a);
    assert_eq!(full_a.len(), 2000, "4 MB fits the default caps");

    // Smaller per-client cap: a different chunk size, so the rings are
    // repacked, and each keeps its newest packets.
    c.set_config(Config {
        per_client_bytes: MIB,
        ..Config::default()
    });
    assert_eq!(c.chunk, 32 * KIB);
    let ia = info(&c, &a);
    assert!(ia.memory_bytes <= MIB && ia.memory_bytes > MIB - 2 * 33 * KIB);
    assert_eq!(held(&c, &a), full_a[full_a.len() - ia.packets..]);
    assert_eq!(ia.dropped as usize, 2000 - ia.packets);

    // Smaller total: the oldest go first, whoever holds them.
    c.set_config(Config {
        per_client_bytes: MIB,
        total_bytes: MIB,
        ..Config::default()
    });
    assert!(c.memory_bytes() <= MIB);
    let (ha, hb) = (held(&c, &a), held(&c, &b));
    assert!(
        ha.len().abs_diff(hb.len()) <= 40,
        "interleaved clients lose alike"
    );
    let oldest = ha[0].ts.min(hb[0].ts);
    assert_eq!(ha.len() + hb.len(), (T0 + 4000 - oldest) as usize);

    // Snaplen applies to new packets only.
    c.set_config(Config {
        snaplen: 10,
        ..c.config().clone()
    });
    c.push(a, T0 + 5000, 1000, &blob(1000, 1));
    let ha = held(&c, &a);
    assert_eq!(ha[ha.len() - 2].data.len(), 1000);
    assert_eq!(ha[ha.len() - 1].data.len(), 10);
}

#[test]
fn time_range_export() {
    let mut c = Captures::new(Config::default());
    let m = mac(1);
    for k in 1..=9u64 {
        c.push(m, k * 10, 40, &udp([10, 0, 0, 1], 40, k as u32));
    }
    let ts = |from, to| {
        let e = c.export(&m, Format::PcapNg, from, to, "x").unwrap();
        let f = parse_pcapng(&e.bytes);
        assert_eq!(f.packets.len(), e.packets);
        let v: Vec<u64> = f.packets.iter().map(|p| p.ts).collect();
        if let (Some(a), Some(b)) = (v.first(), v.last()) {
            assert_eq!((e.first_ns, e.last_ns), (*a, *b));
        } else {
            assert_eq!((e.first_ns, e.last_ns), (0, 0));
        }
        v
    };
    assert_eq!(ts(Some(25), Some(55)), [30, 40, 50]);
    assert_eq!(
        ts(Some(30), Some(50)),
        [30, 40],
        "from inclusive, to exclusive"
    );
    assert_eq!(ts(None, Some(30)), [10, 20]);
    assert_eq!(ts(Some(85), None), [90]);
    assert_eq!(ts(None, None).len(), 9);
    assert_eq!(ts(Some(100), None), Vec::<u64>::new());
    let e = c.export(&m, Format::Pcap, Some(100), None, "").unwrap();
    assert_eq!(e.packets, 0);
    assert!(parse_pcap(&e.bytes).packets.is_empty());
    assert!(c.export(&mac(2), Format::Pcap, None, None, "").is_none());
}

#[test]
fn empty_records_at_chunk_edges() {
    // 256-byte chunks hold exactly 16 data-less records, so the 16th ends
    // on the chunk edge; ranges take the per-record path.
    let mut c = Captures::new(Config {
        per_client_bytes: 8 * KIB,
        ..Config::default()
    });
    assert_eq!(c.chunk, 256);
    let m = mac(1);
    for k in 0..40u64 {
        c.push(m, k, 0, &[]);
    }
    let s = c.snapshot(&m, Some(5), Some(32)).unwrap();
    assert_eq!(s.packets(), 27);
    assert!(s.iter().all(|p| p.data.is_empty() && p.orig_len == 0));
    assert_eq!(
        parse_pcapng(&s.encode(Format::PcapNg, "", None).bytes)
            .packets
            .len(),
        27
    );
    assert_eq!(held(&c, &m).len(), 40);
}

#[test]
fn forget_frees_everything() {
    let mut c = Captures::new(Config {
        total_bytes: 32 * KIB,
        per_client_bytes: 16 * KIB,
        ..Config::default()
    });
    let (a, b) = (mac(1), mac(2));
    for k in 0..100u64 {
        c.push(a, k, 200, &blob(200, k as u32));
    }
    c.set_client_enabled(b, false);
    c.forget(&a);
    c.forget(&b);
    assert_eq!(c.memory_bytes(), 0);
    assert!(c.clients().is_empty());
    assert!(c.export(&a, Format::Pcap, None, None, "").is_none());
    assert!(c.client_enabled(&b), "settings are forgotten too");
    // Eviction still works after the heap lost a's entry.
    for k in 0..300u64 {
        let m = if k % 3 == 0 { a } else { b };
        c.push(m, 1000 + k, 200, &blob(200, k as u32));
        assert!(c.memory_bytes() <= 32 * KIB);
    }
    assert!(info(&c, &a).packets > 0 && info(&c, &b).packets > 0);
}

#[test]
fn format_and_info_serialization() {
    assert_eq!(
        (Format::Pcap.extension(), Format::PcapNg.extension()),
        ("pcap", "pcapng")
    );
    assert_eq!(Format::Pcap.mime(), "application/vnd.tcpdump.pcap");
    assert_eq!(Format::PcapNg.mime(), "application/x-pcapng");
    assert_eq!("PcapNG".parse::<Format>(), Ok(Format::PcapNg));
    assert!("pcapx".parse::<Format>().is_err());
    assert_eq!(
        serde_json::to_string(&Format::PcapNg).unwrap(),
        "\"pcapng\""
    );

    let d = Config::default();
    assert_eq!(
        d,
        Config {
            enabled: true,
            per_client_bytes: 5 * MIB,
            total_bytes: 64 * MIB,
            snaplen: 65535
        }
    );
    let partial: Config = serde_json::from_str(r#"{"snaplen":128}"#).unwrap();
    assert_eq!(partial, Config { snaplen: 128, ..d });

    let mut c = Captures::new(Config::default());
    c.push(mac(0xab), 5, 30, &blob(30, 1));
    let v = serde_json::to_value(c.clients()).unwrap();
    assert_eq!(v[0]["mac"], "02:00:00:00:00:ab");
    assert_eq!(v[0]["packets"], 1);
    assert_eq!(v[0]["bytes"], 30);
    assert_eq!(v[0]["first_ns"], 5);
    assert_eq!(v[0]["dropped"], 0);
}

/// Reads files back with tshark when it is installed.
#[test]
fn tshark_reads_files_back() {
    let ok = std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: tshark not installed; skipping the tshark read-back check");
        return;
    }
    let mut c = Captures::new(Config {
        snaplen: 40,
        ..Config::default()
    });
    let m = mac(1);
    let mut want = vec![];
    for (k, len) in [28usize, 61, 300, 1500].into_iter().enumerate() {
        let src = [10, 0, 0, 10 + k as u8];
        let ts = T0 + k as u64 * 1_000_000_001;
        c.push(m, ts, len as u32, &udp(src, len, k as u32));
        want.push(format!(
            "{}.{:09}\t10.0.0.{}\t{}\t{}\t{}",
            ts / 1_000_000_000,
            ts % 1_000_000_000,
            10 + k,
            len - 20,
            len,
            len.min(40)
        ));
    }
    let dir = std::env::temp_dir();
    for format in [Format::Pcap, Format::PcapNg] {
        let e = c.export(&m, format, None, None, "").unwrap();
        let path = dir.join(format!(
            "packet-capture-test-{}.{}",
            std::process::id(),
            format.extension()
        ));
        std::fs::write(&path, &e.bytes).unwrap();
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args([
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "ip.src",
                "-e",
                "udp.length",
            ])
            .args(["-e", "frame.len", "-e", "frame.cap_len"])
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got, want, "{format:?}");
    }
}

#[test]
fn captures_can_live_behind_a_shared_lock() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Captures>();
    shareable::<Snapshot>();
}
