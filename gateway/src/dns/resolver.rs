//! The query pipeline, independent of how the query arrived.
//!
//! Fast path (`try_fast`, run on the UDP worker threads, never blocks on the
//! network): a plain query read straight off the wire, not in a local zone,
//! answered from the blocklists or the cache by patching bytes.
//!
//! Full path (`handle`, async): validate with hickory, answer local names,
//! blocked names, the cache, then forward, cache the reply and shape it for
//! the transport. Every query ends up in the per-client log.
//!
//! What `[dns]` decides (blocklists, static hosts, upstreams, TTL policy,
//! block mode) lives in one `Live` value behind a lock that is only taken to
//! read it (or, briefly, to swap in a new one): a settings change is built off
//! the query path and put in force whole.

use super::blocklist::Blocklists;
use super::cache::{Cache, Stored, Summary, TtlPolicy};
use super::local::LocalZones;
use super::message::{self, Parsed};
use super::querylog::{self, QueryLog, Shard};
use super::tls::TlsClient;
use super::upstream::{self, Target};
use super::wire::{self, Question};
use super::Counters;
use crate::context::Context;
use crate::dhcp::lease_store::SharedStore;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// TTL of the answers we make up for blocked names.
const BLOCKED_TTL: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// A -> 0.0.0.0, AAAA -> ::, other types NODATA.
    Null,
    NxDomain,
}

/// Counts a UDP worker keeps for one batch and adds to the shared counters
/// once, so two workers do not bounce the counters' cache lines per query.
#[derive(Debug, Default)]
pub struct Tally {
    pub queries: u64,
    pub cache_hits: u64,
    pub negative_hits: u64,
    pub blocked: u64,
    pub malformed: u64,
}

/// What a UDP worker hands the fast path for one batch of datagrams.
pub struct Batch<'a> {
    pub now: Instant,
    pub now_ms: u64,
    pub log: &'a Mutex<Shard>,
    pub tally: Tally,
}

impl<'a> Batch<'a> {
    pub fn new(log: &'a Mutex<Shard>) -> Self {
        Batch {
            now: Instant::now(),
            now_ms: querylog::unix_ms(),
            log,
            tally: Tally::default(),
        }
    }
}

impl Tally {
    pub fn flush(&mut self, c: &Counters) {
        for (n, counter) in [
            (self.queries, &c.queries),
            (self.cache_hits, &c.cache_hits),
            (self.negative_hits, &c.negative_cache_hits),
            (self.blocked, &c.blocked),
            (self.malformed, &c.malformed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        *self = Tally::default();
    }
}

/// The resolver's view of `[dns]`, replaced whole when the settings change.
pub struct Live {
    /// The settings this was built from.
    dns: crate::config::Dns,
    local: LocalZones,
    pub(super) blocklists: Blocklists,
    block_mode: BlockMode,
    policy: TtlPolicy,
    tls: Option<Arc<TlsClient>>,
}

impl Live {
    /// Reads the blocklists: file I/O, so not on an async worker. `old` lends
    /// its TLS client (and its open connections) when the CA file is the same.
    fn build(
        startup: &crate::config::Config,
        dns: &crate::config::Dns,
        leases: Option<SharedStore>,
        old: Option<&Live>,
    ) -> Live {
        let sys = &startup.system;
        let mut local =
            LocalZones::new(&sys.hostname, &sys.domain, startup.lan.address).with_hosts(&dns.hosts);
        if let Some(store) = leases {
            local = local.with_leases(store);
        }
        let tls = if dns.tls_upstreams.is_empty() {
            None
        } else if let Some(t) = old
            .filter(|o| o.dns.tls_ca_file == dns.tls_ca_file)
            .and_then(|o| o.tls.clone())
        {
            Some(t)
        } else {
            match TlsClient::new(dns.tls_ca_file.as_deref().map(std::path::Path::new)) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    // Queries then fail (SERVFAIL) rather than leak in clear text.
                    eprintln!("gatewayd: dns: TLS upstreams unusable: {e:#}");
                    None
                }
            }
        };
        Live {
            local,
            blocklists: Blocklists::load(&dns.blocklists),
            block_mode: if dns.block_mode == "nxdomain" {
                BlockMode::NxDomain
            } else {
                BlockMode::Null
            },
            policy: TtlPolicy {
                min_ttl: dns.min_ttl,
                max_ttl: dns.max_ttl,
            },
            tls,
            dns: dns.clone(),
        }
    }
}

pub struct Resolver {
    /// The config gatewayd started with: the LAN address and names stay as they
    /// were bound; `[dns]` itself follows `live`.
    ctx: Context,
    pub counters: Arc<Counters>,
    leases: Option<SharedStore>,
    live: RwLock<Arc<Live>>,
    cache: Cache,
    /// Upstream that answered last.
    preferred: Mutex<Option<Target>>,
    /// Port of clear-text upstreams: 53, but tests use loopback servers.
    plain_port: u16,
}

/// What the log says about an answer.
struct Outcome {
    rcode: u8,
    answer: Option<IpAddr>,
    blocked: bool,
    cached: bool,
}

impl Resolver {
    pub fn new(ctx: Context, counters: Arc<Counters>, leases: Option<SharedStore>) -> Self {
        let cfg = &ctx.config;
        let live = Live::build(cfg, &cfg.dns, leases.clone(), None);
        if let Ok(mut v) = counters.blocklists.lock() {
            *v = live.blocklists.lists.clone();
        }
        // The cache's size is fixed at start; the TTL policy it stores under is `Live`'s.
        let cache = Cache::new(
            cfg.dns.cache_bytes,
            super::cache::SHARDS,
            counters.cache.clone(),
        );
        Resolver {
            ctx,
            counters,
            leases,
            live: RwLock::new(Arc::new(live)),
            cache,
            preferred: Mutex::new(None),
            plain_port: 53,
        }
    }

    /// The settings in force, for one query.
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Builds the resolver's view of `dns` and puts it in force. Blocks (it
    /// reads the blocklists): call it off the async workers.
    pub fn reload(&self, dns: &crate::config::Dns) {
        let old = self.live();
        let new = Live::build(&self.ctx.config, dns, self.leases.clone(), Some(&old));
        // Blocks counted so far stay with a list that is still there.
        for l in &new.blocklists.lists {
            if let Some(o) = old
                .blocklists
                .lists
                .iter()
                .find(|o| o.name == l.name && o.path == l.path)
            {
                l.blocked.store(o.blocked.load(Relaxed), Relaxed);
            }
        }
        if let Ok(mut v) = self.counters.blocklists.lock() {
            *v = new.blocklists.lists.clone();
        }
        let upstreams_changed = old.dns.upstreams != dns.upstreams
            || old.dns.tls_upstreams != dns.tls_upstreams
            || old.dns.tls_ca_file != dns.tls_ca_file;
        let policy_changed = old.policy != new.policy;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
        if upstreams_changed {
            if let Ok(mut p) = self.preferred.lock() {
                *p = None;
            }
        }
        // Stored answers came from the old resolvers, or were kept under the old
        // TTL bounds: start afresh.
        if upstreams_changed || policy_changed {
            self.cache.clear();
        }
        eprintln!("gatewayd: dns: settings reloaded");
    }

    /// Follows the published config: each change of its `[dns]` section is
    /// loaded off the async workers and put in force. Returns when the
    /// publisher goes away.
    pub async fn follow(
        self: Arc<Self>,
        mut published: watch::Receiver<Arc<crate::config::Config>>,
    ) {
        while published.changed().await.is_ok() {
            let cfg = published.borrow_and_update().clone();
            if cfg.dns == self.live().dns {
                continue;
            }
            let r = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || r.reload(&cfg.dns)).await {
                eprintln!("gatewayd: dns: reload failed: {e}");
            }
        }
    }

    /// Answers `bytes` into `out` without leaving this thread if it can: a
    /// cache hit or a blocked name. False means "take the full path".
    pub fn try_fast(&self, bytes: &[u8], client: IpAddr, out: &mut Vec<u8>, b: &mut Batch) -> bool {
        let Some(q) = wire::parse_question(bytes) else {
            return false;
        };
        let key = wire::Key::new(&q);
        let name = key.name();
        let Some(last) = q.labels.iter().rev().nth(1) else {
            return false; // the root: let the full path deal with it
        };
        // A read guard, not a clone of the Arc: the fast path stays at one
        // uncontended atomic here.
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        if live.local.maybe_local(name, last) {
            return false;
        }
        let outcome = if let Some(list) = live.blocklists.check(name, &q.labels) {
            live.blocklists.count(list);
            b.tally.blocked += 1;
            blocked_reply(live.block_mode, &q, out)
        } else if let Some(s) = self.cache.lookup(key.as_bytes(), &q, b.now, out) {
            wire::fit_udp(out, &q);
            b.tally.cache_hits += 1;
            if s.rcode != wire::RCODE_NOERROR || out_is_nodata(out) {
                b.tally.negative_hits += 1;
            }
            cached_outcome(s)
        } else {
            return false;
        };
        drop(live);
        b.tally.queries += 1;
        let name = querylog::Name::Wire(name);
        log_query(b.log, client, b.now_ms, name, q.qtype, &outcome);
        true
    }

    /// The reply to send back, or None to stay silent (malformed input).
    pub async fn handle(
        &self,
        bytes: &[u8],
        transport: Transport,
        client: IpAddr,
    ) -> Option<Vec<u8>> {
        let c = &self.counters;
        c.queries.fetch_add(1, Relaxed);
        let req = match message::parse_query(bytes) {
            Parsed::Query(m) => m,
            Parsed::Refuse(reply, rcode) => {
                if rcode == ResponseCode::FormErr {
                    c.malformed.fetch_add(1, Relaxed);
                }
                return Some(reply);
            }
            Parsed::Drop => {
                c.malformed.fetch_add(1, Relaxed);
                return None;
            }
        };
        let limit = match transport {
            Transport::Udp => message::udp_limit(&req),
            Transport::Tcp => usize::from(u16::MAX),
        };
        let (reply, outcome) = self.resolve(bytes, &req).await?;
        let q = req.queries().first()?;
        let name = q.name().to_lowercase().to_ascii();
        let name = name
            .strip_suffix('.')
            .filter(|n| !n.is_empty())
            .unwrap_or(&name);
        log_query(
            self.counters.log.slow_shard(),
            client,
            querylog::unix_ms(),
            querylog::Name::Text(name),
            u16::from(q.query_type()),
            &outcome,
        );
        Some(message::fit(reply, limit))
    }

    async fn resolve(&self, bytes: &[u8], req: &Message) -> Option<(Vec<u8>, Outcome)> {
        let c = &self.counters;
        let live = self.live();
        if let Some(m) = live.local.answer(req) {
            c.local_answers.fetch_add(1, Relaxed);
            let answer = m.answers().iter().find_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            });
            let outcome = Outcome {
                rcode: u16::from(m.response_code()) as u8,
                answer,
                blocked: false,
                cached: false,
            };
            return Some((m.to_vec().ok()?, outcome));
        }
        // The raw view exists for every query the cache can hold.
        let raw = wire::parse_question(bytes);
        let mut out = Vec::new();
        if let Some(q) = &raw {
            let key = wire::Key::new(q);
            if let Some(list) = live.blocklists.check(key.name(), &q.labels) {
                live.blocklists.count(list);
                c.blocked.fetch_add(1, Relaxed);
                let outcome = blocked_reply(live.block_mode, q, &mut out);
                return Some((out, outcome));
            }
            // Served even if too big for this client's UDP buffer: `fit` then
            // sets TC, and asking upstream again would fetch the same answer.
            if let Some(s) = self
                .cache
                .lookup(key.as_bytes(), q, Instant::now(), &mut out)
            {
                c.cache_hits.fetch_add(1, Relaxed);
                if s.rcode != wire::RCODE_NOERROR || out_is_nodata(&out) {
                    c.negative_cache_hits.fetch_add(1, Relaxed);
                }
                return Some((out, cached_outcome(s)));
            }
        }

        let question = req.queries().first()?;
        let targets = self.targets(&live.dns);
        let preferred = self.preferred.lock().ok().and_then(|p| p.clone());
        let ordered = upstream::order(&targets, preferred.as_ref());
        let forwarded = upstream::forward(
            bytes,
            question,
            &ordered,
            upstream::TIMEOUT,
            c,
            live.tls.as_deref(),
        )
        .await;
        let Some((from, mut reply)) = forwarded else {
            // Covers "no upstream known yet" too: the client should try again later.
            let r = message::error_reply(req, ResponseCode::ServFail)?;
            let outcome = Outcome {
                rcode: wire::RCODE_SERVFAIL,
                answer: None,
                blocked: false,
                cached: false,
            };
            return Some((r, outcome));
        };
        if let Ok(mut p) = self.preferred.lock() {
            *p = Some(from);
        }
        c.forwarded.fetch_add(1, Relaxed);
        c.names.record_reply(&reply);
        let stored: Option<Stored> = raw
            .as_ref()
            .and_then(|q| super::cache::prepare(&reply, q.qtype, q.section.len(), live.policy));
        let outcome = match wire::walk(&reply) {
            Some(w) => Outcome {
                rcode: w.rcode,
                answer: wire::first_address(&reply, &w),
                blocked: false,
                cached: false,
            },
            None => Outcome {
                rcode: reply.get(3).map_or(0, |b| b & 0x0f),
                answer: None,
                blocked: false,
                cached: false,
            },
        };
        if let (Some(q), Some(s)) = (&raw, stored) {
            self.cache
                .insert(wire::Key::new(q).as_bytes(), s, Instant::now());
        }
        message::set_id(&mut reply, req.id());
        Some((reply, outcome))
    }

    /// TLS upstreams when configured (then never clear text), else the
    /// configured or WAN-provided resolvers on port 53.
    fn targets(&self, dns: &crate::config::Dns) -> Vec<Target> {
        let lan = self.ctx.config.lan.address;
        if !dns.tls_upstreams.is_empty() {
            return dns
                .tls_upstreams
                .iter()
                .filter(|t| t.address != lan)
                .map(|t| Target::Tls {
                    addr: SocketAddr::from((t.address, t.port)),
                    name: t.name.clone(),
                })
                .collect();
        }
        let wan = self.ctx.wan.borrow();
        pick_upstreams(&dns.upstreams, &wan.dns, lan)
            .into_iter()
            .map(|ip| Target::Plain(SocketAddr::from((ip, self.plain_port))))
            .collect()
    }
}

fn blocked_reply(mode: BlockMode, q: &Question, out: &mut Vec<u8>) -> Outcome {
    let (rcode, answer): (u8, Option<(u16, &[u8])>) = match mode {
        BlockMode::NxDomain => (wire::RCODE_NXDOMAIN, None),
        BlockMode::Null => match (q.qtype, q.qclass) {
            (wire::TYPE_A, wire::CLASS_IN) => (wire::RCODE_NOERROR, Some((wire::TYPE_A, &[0; 4]))),
            (wire::TYPE_AAAA, wire::CLASS_IN) => {
                (wire::RCODE_NOERROR, Some((wire::TYPE_AAAA, &[0; 16])))
            }
            _ => (wire::RCODE_NOERROR, None),
        },
    };
    wire::synth_reply(q, rcode, answer.map(|(t, d)| (t, BLOCKED_TTL, d)), out);
    Outcome {
        rcode,
        answer: answer.map(|(t, _)| {
            if t == wire::TYPE_A {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
        }),
        blocked: true,
        cached: false,
    }
}

fn cached_outcome(s: Summary) -> Outcome {
    Outcome {
        rcode: s.rcode,
        answer: s.first_address,
        blocked: false,
        cached: true,
    }
}

/// NOERROR with an empty answer section.
fn out_is_nodata(out: &[u8]) -> bool {
    out.get(3).is_some_and(|b| b & 0x0f == 0) && wire::u16_at(out, 6) == Some(0)
}

fn log_query(
    log: &Mutex<Shard>,
    client: IpAddr,
    now_ms: u64,
    name: querylog::Name,
    qtype: u16,
    o: &Outcome,
) {
    QueryLog::record(
        log,
        client,
        &querylog::Record {
            time_ms: now_ms,
            name,
            qtype,
            rcode: o.rcode,
            answer: o.answer,
            blocked: o.blocked,
            cached: o.cached,
        },
    );
}

/// Configured upstreams win; otherwise whatever the WAN lease handed out (read
/// per query, so a renewed lease takes effect at once). Addresses that cannot
/// be a resolver go, and so does our own (a forwarding loop).
fn pick_upstreams(configured: &[Ipv4Addr], wan: &[Ipv4Addr], lan: Ipv4Addr) -> Vec<Ipv4Addr> {
    let list = if configured.is_empty() {
        wan
    } else {
        configured
    };
    list.iter()
        .copied()
        .filter(|ip| !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast())
        .filter(|ip| *ip != lan)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Blocklist, Config, DnsHost};
    use crate::dns::message::tests::query_msg;
    use hickory_proto::op::{Edns, MessageType};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record, RecordType};
    use tokio::net::UdpSocket;

    #[test]
    fn configured_upstreams_beat_wan_and_never_include_us() {
        let lan = Ipv4Addr::new(192, 168, 1, 1);
        let (a, b) = (Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(1, 1, 1, 1));
        assert_eq!(pick_upstreams(&[a], &[b], lan), vec![a]);
        assert_eq!(pick_upstreams(&[], &[b, a], lan), vec![b, a]);
        assert!(pick_upstreams(&[], &[], lan).is_empty());
        assert_eq!(
            pick_upstreams(&[lan, Ipv4Addr::UNSPECIFIED, a], &[], lan),
            vec![a]
        );
    }

    fn ctx(cfg: Config) -> Context {
        let (_tx, rx) = tokio::sync::watch::channel(crate::wan::WanStatus::default());
        Context {
            config: Arc::new(cfg),
            config_error: None,
            run_dir: std::env::temp_dir(),
            wan: rx,
        }
    }

    /// An upstream on loopback answering each query with `answer(query)`.
    async fn fake_upstream(
        answer: impl Fn(Message) -> Message + Send + 'static,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let r = answer(q).to_vec().unwrap();
                sock.send_to(&r, from).await.unwrap();
            }
        });
        (addr, h)
    }

    fn resolver(mut cfg: Config, up: Option<SocketAddr>) -> Resolver {
        if let Some(up) = up {
            cfg.dns.upstreams = vec![Ipv4Addr::LOCALHOST];
            let mut r = Resolver::new(ctx(cfg), Arc::new(Counters::default()), None);
            r.plain_port = up.port();
            r
        } else {
            Resolver::new(ctx(cfg), Arc::new(Counters::default()), None)
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));

    async fn ask(r: &Resolver, name: &str, t: RecordType) -> Message {
        let bytes = query_msg(name, t, 0x1111).to_vec().unwrap();
        let reply = r.handle(&bytes, Transport::Udp, CLIENT).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }

    fn fast(
        r: &Resolver,
        bytes: &[u8],
        shard: &Mutex<Shard>,
        tally: &mut Tally,
    ) -> Option<Message> {
        let mut out = Vec::new();
        let mut b = Batch::new(shard);
        let hit = r.try_fast(bytes, CLIENT, &mut out, &mut b);
        tally.queries += b.tally.queries;
        tally.cache_hits += b.tally.cache_hits;
        tally.negative_hits += b.tally.negative_hits;
        tally.blocked += b.tally.blocked;
        hit.then(|| Message::from_vec(&out).unwrap())
    }

    fn nx_with_soa(q: Message) -> Message {
        let mut m = q.clone();
        m.set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::NXDomain);
        let zone = Name::from_ascii("test.").unwrap();
        m.add_name_server(Record::from_rdata(
            zone.clone(),
            300,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, 120)),
        ));
        m
    }

    fn a_record(q: Message) -> Message {
        let mut m = q.clone();
        m.set_message_type(MessageType::Response);
        let name = q.queries()[0].name().clone();
        m.add_answer(Record::from_rdata(
            name,
            300,
            RData::A(A::new(192, 0, 2, 7)),
        ));
        m
    }

    #[tokio::test]
    async fn negative_answer_cached_then_served_without_upstream() {
        let (up, h) = fake_upstream(nx_with_soa).await;
        let r = resolver(Config::default(), Some(up));
        let m = ask(&r, "nope.test.", RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.id(), 0x1111);
        h.abort();
        let bytes = query_msg("NOPE.test.", RecordType::A, 0x2222)
            .to_vec()
            .unwrap();
        let shard = Mutex::new(Shard::default());
        let mut tally = Tally::default();
        let m = fast(&r, &bytes, &shard, &mut tally).unwrap();
        assert_eq!(m.id(), 0x2222);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert!(m.name_servers()[0].ttl() <= 120);
        assert_eq!(tally.negative_hits, 1);
        // The slow path serves it from cache too (e.g. over TCP).
        let m = ask(&r, "nope.test.", RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(r.counters.upstream_failures.load(Relaxed), 0);
        assert_eq!(r.counters.forwarded.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn fast_path_serves_cache_and_logs() {
        let (up, _h) = fake_upstream(a_record).await;
        let r = resolver(Config::default(), Some(up));
        ask(&r, "www.example.test.", RecordType::A).await;
        let mut q = query_msg("WWW.example.test.", RecordType::A, 0x3333);
        q.set_edns(Edns::new());
        let bytes = q.to_vec().unwrap();
        let shard = Mutex::new(Shard::default());
        let mut tally = Tally::default();
        let m = fast(&r, &bytes, &shard, &mut tally).unwrap();
        assert_eq!(m.id(), 0x3333);
        assert_eq!(m.queries()[0].name().to_ascii(), "WWW.example.test.");
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 0, 2, 7)));
        assert!(m.extensions().is_some());
        assert_eq!(tally.cache_hits, 1);
        // A miss, and local names, are not for the fast path.
        let other = query_msg("other.example.test.", RecordType::A, 1)
            .to_vec()
            .unwrap();
        assert!(fast(&r, &other, &shard, &mut tally).is_none());
        let local = query_msg("gatehouse.lan.", RecordType::A, 1)
            .to_vec()
            .unwrap();
        assert!(fast(&r, &local, &shard, &mut tally).is_none());
        // The slow path logged into the shared log, per client.
        let slow = r.counters.query_log(CLIENT);
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].name, "www.example.test");
        assert_eq!(
            slow[0].answer,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))
        );
        assert!(!slow[0].cached);
        tally.flush(&r.counters);
        assert_eq!(r.counters.cache_hits.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn blocked_names_null_and_nxdomain() {
        let dir = std::env::temp_dir().join(format!(
            "gh-res-bl-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("ads.txt");
        std::fs::write(&list, "0.0.0.0 ads.example.test\n").unwrap();
        let mut cfg = Config::default();
        cfg.dns.blocklists = vec![Blocklist {
            name: "ads".into(),
            path: list.display().to_string(),
            enabled: true,
        }];
        let shard = Mutex::new(Shard::default());
        let mut tally = Tally::default();
        let r = resolver(cfg.clone(), None);
        let a = query_msg("x.ADS.example.test.", RecordType::A, 9)
            .to_vec()
            .unwrap();
        let m = fast(&r, &a, &shard, &mut tally).unwrap();
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        let aaaa = query_msg("ads.example.test.", RecordType::AAAA, 9)
            .to_vec()
            .unwrap();
        let m = fast(&r, &aaaa, &shard, &mut tally).unwrap();
        assert_eq!(m.answers()[0].record_type(), RecordType::AAAA);
        let mx = query_msg("ads.example.test.", RecordType::MX, 9)
            .to_vec()
            .unwrap();
        let m = fast(&r, &mx, &shard, &mut tally).unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        // Over the full path (TCP) too, never forwarded.
        let m = Message::from_vec(&r.handle(&a, Transport::Tcp, CLIENT).await.unwrap()).unwrap();
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        assert_eq!(tally.blocked, 3);
        assert_eq!(r.live().blocklists.lists[0].blocked.load(Relaxed), 4);
        assert_eq!(r.counters.forwarded.load(Relaxed), 0);
        let log = r.counters.query_log(CLIENT);
        assert!(log[0].blocked);

        cfg.dns.block_mode = "nxdomain".into();
        let r = resolver(cfg, None);
        let m = fast(&r, &a, &shard, &mut tally).unwrap();
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert!(m.answers().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn published_dns_changes_take_effect_without_a_restart() {
        let dir = std::env::temp_dir().join(format!(
            "gh-res-live-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("ads.txt");
        std::fs::write(&list, "ads.example.test\n").unwrap();
        let (up, _h) = fake_upstream(a_record).await;
        let cfg = Config::default();
        let r = Arc::new(resolver(cfg.clone(), Some(up)));
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(r.ctx.config.as_ref().clone()));
        tokio::spawn(r.clone().follow(rx));
        // Forwarded and cached before the change.
        let m = ask(&r, "ads.example.test.", RecordType::A).await;
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 0, 2, 7)));
        let m = ask(&r, "nas.lan.", RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);

        let mut next = r.ctx.config.as_ref().clone();
        next.dns.blocklists = vec![Blocklist {
            name: "ads".into(),
            path: list.display().to_string(),
            enabled: true,
        }];
        next.dns.hosts = vec![DnsHost {
            name: "nas".into(),
            ip: Ipv4Addr::new(192, 168, 1, 5),
        }];
        tx.send_replace(Arc::new(next.clone()));
        let t0 = Instant::now();
        while r.live().blocklists.lists.is_empty() {
            assert!(t0.elapsed().as_secs() < 5, "reload did not happen");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The cached answer no longer wins over the new list, on either path.
        let m = ask(&r, "x.ads.example.test.", RecordType::A).await;
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        let bytes = query_msg("ads.example.test.", RecordType::A, 5)
            .to_vec()
            .unwrap();
        let shard = Mutex::new(Shard::default());
        let m = fast(&r, &bytes, &shard, &mut Tally::default()).unwrap();
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        let m = ask(&r, "nas.lan.", RecordType::A).await;
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 168, 1, 5)));
        assert_eq!(r.counters.blocklist_stats()[0].entries, 1);
        assert_eq!(r.counters.blocklist_stats()[0].blocked.load(Relaxed), 2);

        // Disabling the list unblocks; its block count is gone with it. The cache
        // survives a change that keeps upstreams and TTLs.
        next.dns.blocklists[0].enabled = false;
        tx.send_replace(Arc::new(next.clone()));
        let t0 = Instant::now();
        while !r.live().blocklists.lists.is_empty() {
            assert!(t0.elapsed().as_secs() < 5, "reload did not happen");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(fast(&r, &bytes, &shard, &mut Tally::default())
            .is_some_and(|m| m.answers()[0].data() == &RData::A(A::new(192, 0, 2, 7))));
        // New upstreams: what the old ones said is dropped.
        next.dns.upstreams = vec![Ipv4Addr::new(127, 0, 0, 2)];
        r.reload(&next.dns);
        assert!(fast(&r, &bytes, &shard, &mut Tally::default()).is_none());
        assert_eq!(r.counters.cache.entries.load(Relaxed), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn static_hosts_answered_locally() {
        let mut cfg = Config::default();
        cfg.dns.hosts = vec![DnsHost {
            name: "nas".into(),
            ip: Ipv4Addr::new(192, 168, 1, 5),
        }];
        let r = resolver(cfg, None);
        let m = ask(&r, "NAS.lan.", RecordType::A).await;
        assert!(m.authoritative());
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 168, 1, 5)));
        let m = ask(&r, "5.1.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(
            m.answers()[0].data(),
            &RData::PTR(hickory_proto::rr::rdata::PTR(
                Name::from_ascii("nas.lan.").unwrap()
            ))
        );
        let m = ask(&r, "nas.lan.", RecordType::AAAA).await;
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
        assert_eq!(r.counters.local_answers.load(Relaxed), 3);
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::config::Config;
    use crate::dns::message::tests::query_msg;
    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Record, RecordType};

    /// Cost of one fast-path cache hit, userland only:
    /// `cargo test --release -p gateway fast_path_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn fast_path_speed() {
        let (_tx, rx) = tokio::sync::watch::channel(crate::wan::WanStatus::default());
        let ctx = Context {
            config: Arc::new(Config::default()),
            config_error: None,
            run_dir: std::env::temp_dir(),
            wan: rx,
        };
        let r = Resolver::new(ctx, Arc::new(Counters::default()), None);
        let names: Vec<String> = (0..1000).map(|i| format!("c{i}.bench.test.")).collect();
        let queries: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let q = query_msg(n, RecordType::A, 1);
                let mut m = q.clone();
                m.set_message_type(MessageType::Response);
                m.add_answer(Record::from_rdata(
                    q.queries()[0].name().clone(),
                    3600,
                    RData::A(A::new(198, 51, 100, 1)),
                ));
                let qb = q.to_vec().unwrap();
                let raw = wire::parse_question(&qb).unwrap();
                let s = crate::dns::cache::prepare(
                    &m.to_vec().unwrap(),
                    raw.qtype,
                    raw.section.len(),
                    r.live().policy,
                )
                .unwrap();
                r.cache
                    .insert(wire::Key::new(&raw).as_bytes(), s, Instant::now());
                qb
            })
            .collect();
        let shard = r.counters.log.worker_shard(0);
        let client = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
        let mut out = Vec::with_capacity(1232);
        let n = 2_000_000;
        let t0 = Instant::now();
        let mut b = Batch::new(shard);
        for i in 0..n {
            if i % 32 == 0 {
                b.tally.flush(&r.counters);
                b = Batch::new(shard);
            }
            assert!(r.try_fast(&queries[i % 1000], client, &mut out, &mut b));
        }
        let ns = t0.elapsed().as_nanos() / n as u128;
        eprintln!("fast path: {ns} ns per cached query");
        let t0 = Instant::now();
        let mut sum = 0usize;
        for i in 0..n {
            let q = wire::parse_question(&queries[i % 1000]).unwrap();
            let k = wire::Key::new(&q);
            sum += k.as_bytes().len();
        }
        eprintln!(
            "  parse+key: {} ns ({sum})",
            t0.elapsed().as_nanos() / n as u128
        );
        let t0 = Instant::now();
        let now = Instant::now();
        for i in 0..n {
            let q = wire::parse_question(&queries[i % 1000]).unwrap();
            let k = wire::Key::new(&q);
            r.cache.lookup(k.as_bytes(), &q, now, &mut out).unwrap();
        }
        eprintln!("  +lookup: {} ns", t0.elapsed().as_nanos() / n as u128);
        let t0 = Instant::now();
        let mut name = String::new();
        for i in 0..n {
            let q = wire::parse_question(&queries[i % 1000]).unwrap();
            let k = wire::Key::new(&q);
            wire::write_name(k.name(), &mut name);
        }
        eprintln!(
            "  parse+key+name: {} ns",
            t0.elapsed().as_nanos() / n as u128
        );
        let t0 = Instant::now();
        for i in 0..n {
            let o = Outcome {
                rcode: 0,
                answer: None,
                blocked: false,
                cached: true,
            };
            log_query(
                shard,
                client,
                i as u64,
                querylog::Name::Text("c1.bench.test"),
                1,
                &o,
            );
        }
        eprintln!("  log: {} ns", t0.elapsed().as_nanos() / n as u128);
    }
}
