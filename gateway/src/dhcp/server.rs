//! The DHCP server's sockets and threads. Three threads share one `Engine`:
//!
//! - the receiver reads datagrams from the LAN interface, decides
//!   (`server_logic`) under the lease store's lock, and sends what needs no
//!   disk at once: OFFERs, NAKs, ACKs to INFORM.
//! - the committer makes lease changes durable by group commit: it takes every
//!   change recorded since its last round, appends them to the journal with one
//!   write and one fdatasync, and only then sends the ACKs that depended on
//!   them. While it waits on the disk the receiver keeps deciding; the next
//!   round takes all of that at once, so the rate of fsyncs stays bounded
//!   whatever the request rate. An ACK whose lease is not durable is never sent.
//! - the prober pings an address before it is offered to a client that never
//!   had it, with a raw ICMP socket on the LAN interface. Checks run
//!   concurrently (the receiver never waits for one); an address that answers
//!   is quarantined and the next one is checked.

use super::codec;
use super::lease_store::SharedStore;
use super::server_logic::{self, Kind, Outcome, Settings};
use super::Counters;
use crate::config::Config;
use crate::context::Context;
use crate::readiness::{Part, Readiness};
use dhcproto::v4;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often to check that the LAN interface was not deleted and re-created
/// under us (SO_BINDTODEVICE sticks to the old interface index).
const IFINDEX_CHECK: Duration = Duration::from_secs(10);
/// Receive timeout, so the interface check runs on an idle LAN too.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
/// Socket buffers (the kernel doubles them): some 100 ms of requests at
/// 20,000 a second, to ride out scheduling hiccups. Not more: when requests
/// come faster than they can be answered, the excess is better dropped by the
/// kernel than answered after the client gave up.
const SOCKET_BUFFER: usize = 1 << 20;
/// Log lines per second before the rest is only counted.
const LOG_LINES_PER_SEC: u32 = 100;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub async fn serve(
    ctx: Context,
    store: SharedStore,
    counters: Arc<Counters>,
    live: watch::Receiver<Arc<Config>>,
    ready: Arc<Readiness>,
) -> anyhow::Result<()> {
    let mut settings = Settings::from_config(&ctx.config);
    let iface = ctx.config.lan.interface.clone();
    let probes = match settings.conflict_check_ms {
        0 => None,
        ms => match Probes::new(Duration::from_millis(u64::from(ms))) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("dhcp: no raw ICMP socket ({e}): addresses are offered without a conflict check");
                settings.conflict_check_ms = 0;
                None
            }
        },
    };
    let engine = Arc::new(Engine {
        settings: RwLock::new(Arc::new(settings)),
        store,
        counters,
        sock: Mutex::new(None),
        log: Log::default(),
        waiting: Mutex::new(Vec::new()),
        waiting_cv: Condvar::new(),
        probes,
    });
    tokio::spawn(follow_config(ctx.config.clone(), live, engine.clone()));
    let e = engine.clone();
    thread::Builder::new()
        .name("dhcp-commit".into())
        .spawn(move || e.commit_loop())?;
    if engine.probes.is_some() {
        let e = engine.clone();
        thread::Builder::new()
            .name("dhcp-probe".into())
            .spawn(move || e.probe_loop())?;
    }
    tokio::task::spawn_blocking(move || engine.receive_loop(&iface, &ready))
        .await
        .map_err(|e| anyhow::anyhow!("dhcp receiver: {e}"))?
}

/// Puts the published config's `[dhcp]` settings in force as they change (the UI's edits).
/// The LAN address and the domain are init's and the boot's: while a change to them waits
/// for a reboot, DHCP keeps serving the subnet the interface really has.
async fn follow_config(
    boot: Arc<Config>,
    mut live: watch::Receiver<Arc<Config>>,
    engine: Arc<Engine>,
) {
    while live.changed().await.is_ok() {
        let new = live.borrow_and_update().clone();
        if new.lan != boot.lan || new.system.domain != boot.system.domain {
            eprintln!("dhcp: settings unchanged until the reboot that applies the new LAN");
            continue;
        }
        let mut settings = Settings::from_config(&new);
        if engine.probes.is_none() {
            settings.conflict_check_ms = 0;
        }
        let settings = Arc::new(settings);
        let mut cur = engine
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if **cur != *settings {
            *cur = settings;
            eprintln!("dhcp: settings reloaded");
        }
    }
}

struct Engine {
    /// Swapped whole when the config changes; each request reads one snapshot.
    settings: RwLock<Arc<Settings>>,
    store: SharedStore,
    counters: Arc<Counters>,
    /// The bound socket, shared with the threads that send replies.
    sock: Mutex<Option<Arc<UdpSocket>>>,
    log: Log,
    /// Replies (and bare changes) waiting for the committer.
    waiting: Mutex<Vec<Waiting>>,
    waiting_cv: Condvar,
    probes: Option<Probes>,
}

/// Something that may only happen once the store's changes up to `seq` are durable.
struct Waiting {
    seq: u64,
    reply: Option<(Vec<u8>, SocketAddrV4)>,
}

impl Engine {
    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn socket(&self) -> Option<Arc<UdpSocket>> {
        lock(&self.sock).clone()
    }

    fn receive_loop(&self, iface: &str, ready: &Readiness) -> anyhow::Result<()> {
        let mut malformed_log = RateLimit::new(Duration::from_secs(10));
        let mut buf = vec![0u8; 4096];
        loop {
            let (sock, ifindex) = bind_when_present(iface)?;
            let sock = Arc::new(sock);
            *lock(&self.sock) = Some(sock.clone());
            if let Some(p) = &self.probes {
                p.bind(iface);
            }
            eprintln!("dhcp: listening on {iface} port 67");
            ready.up(Part::Dhcp);
            let mut checked = Instant::now();
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, peer)) => self.handle_datagram(&buf[..n], peer, &mut malformed_log),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        eprintln!("dhcp: receive on {iface} failed: {e}; rebinding");
                        break;
                    }
                }
                if checked.elapsed() >= IFINDEX_CHECK {
                    checked = Instant::now();
                    if nix::net::if_::if_nametoindex(iface).ok() != Some(ifindex) {
                        eprintln!("dhcp: {iface} changed or disappeared; rebinding");
                        break;
                    }
                }
            }
            *lock(&self.sock) = None;
            drop(sock);
            thread::sleep(Duration::from_secs(1));
        }
    }

    fn handle_datagram(&self, data: &[u8], peer: SocketAddr, malformed_log: &mut RateLimit) {
        self.counters.received.fetch_add(1, Relaxed);
        let msg = match codec::decode(data) {
            Ok(m) => m,
            Err(e) => {
                let n = self.counters.malformed.fetch_add(1, Relaxed) + 1;
                if malformed_log.allow() {
                    eprintln!("dhcp: dropped malformed packet from {peer}: {e} ({n} so far)");
                }
                return;
            }
        };
        let now = crate::clock::unix_now();
        let settings = self.settings();
        let (outcome, seq) = self.decide(|st| server_logic::handle(&settings, st, &msg, now));
        self.dispatch(outcome, &msg, seq, 1);
    }

    /// Acts on a decision: start a ping check, queue the reply behind the
    /// journal (`seq`: the decision changed the store), or send it now.
    fn dispatch(&self, outcome: Outcome, msg: &v4::Message, seq: Option<u64>, attempt: u8) {
        self.log.line(&outcome.log);
        if let (Some(ip), Some(p)) = (outcome.probe, &self.probes) {
            p.start(self, ip, msg.clone(), attempt);
            return;
        }
        let encoded = outcome.reply.as_ref().and_then(|r| match r.encode() {
            Ok(bytes) => Some((bytes, r.dest)),
            Err(e) => {
                eprintln!("dhcp: encoding reply failed: {e}");
                None
            }
        });
        if let Some(seq) = seq {
            // ACKs are counted when they go out.
            match outcome.kind {
                Kind::Ack => {}
                k => self.count(k),
            }
            let mut w = lock(&self.waiting);
            w.push(Waiting {
                seq,
                reply: encoded,
            });
            if w.len() == 1 {
                self.waiting_cv.notify_one();
            }
            return;
        }
        self.count(outcome.kind);
        if let (Some((bytes, dest)), Some(sock)) = (encoded, self.socket()) {
            self.send(&sock, &bytes, dest);
        }
    }

    fn count(&self, kind: Kind) {
        let c = &self.counters;
        match kind {
            Kind::Offer => &c.offers,
            Kind::Ack => &c.acks,
            Kind::Nak => &c.naks,
            Kind::Decline => &c.declines,
            Kind::Release => &c.releases,
            Kind::Dropped => &c.dropped,
        }
        .fetch_add(1, Relaxed);
    }

    fn send(&self, sock: &UdpSocket, bytes: &[u8], dest: SocketAddrV4) {
        if let Err(e) = sock.send_to(bytes, dest) {
            self.log
                .line(&format!("dhcp: sending to {dest} failed: {e}"));
        }
    }

    // --- committer ---

    fn commit_loop(&self) {
        let mut durable = 0u64;
        loop {
            let batch = {
                let mut w = lock(&self.waiting);
                while w.is_empty() {
                    w = self
                        .waiting_cv
                        .wait(w)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::take(&mut *w)
            };
            let need = batch.iter().map(|w| w.seq).max().unwrap_or(0);
            let mut failed = false;
            if need > durable {
                match self.flush(false).or_else(|e| {
                    eprintln!("dhcp: lease journal write failed: {e}; compacting instead");
                    self.flush(true)
                }) {
                    Ok(upto) => durable = durable.max(upto),
                    Err(e) => {
                        eprintln!(
                            "dhcp: lease file write failed: {e}; ACKs withheld until it works"
                        );
                        failed = true;
                    }
                }
            }
            let sock = self.socket();
            for w in batch {
                let Some((bytes, dest)) = w.reply else {
                    continue;
                };
                if w.seq > durable {
                    // Not durable, so not promised: the client will ask again.
                    self.counters.persist_errors.fetch_add(1, Relaxed);
                    continue;
                }
                self.counters.acks.fetch_add(1, Relaxed);
                if let Some(s) = &sock {
                    self.send(s, &bytes, dest);
                }
            }
            if failed {
                // A broken disk must not turn into a busy loop.
                thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// One group-commit round; the store's lock is held only to take the work
    /// and to record the result, never during the disk I/O.
    fn flush(&self, force_compact: bool) -> io::Result<u64> {
        let f = lock(&self.store).begin_flush(force_compact);
        let r = f.run();
        lock(&self.store).finish_flush(&f, &r);
        r.map(|_| f.upto())
    }

    // --- prober ---

    fn probe_loop(&self) {
        let Some(p) = &self.probes else {
            return;
        };
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = {
                let mut st = lock(&p.state);
                while st.pending.is_empty() {
                    st = p.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                st.deadlines
                    .front()
                    .map(|(t, _, _)| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::ZERO)
            };
            let sock = lock(&p.sock).clone();
            let mut answered = Vec::new();
            match sock {
                Some(s) if wait_readable(&s, timeout) => {
                    while let Ok(n) = recv_raw(&s, &mut buf) {
                        if let Some(hit) = parse_echo_reply(&buf[..n], p.ident) {
                            answered.push(hit);
                        }
                    }
                }
                Some(_) => {}
                None => thread::sleep(timeout),
            }
            for (ip, seq) in answered {
                if let Some(probe) = p.take(ip, Some(seq)) {
                    self.finish_probe(ip, probe, true);
                }
            }
            for (ip, probe) in p.expired(Instant::now()) {
                self.finish_probe(ip, probe, false);
            }
        }
    }

    /// The check of `ip` ended. The first DISCOVER waiting on it gets its
    /// OFFER (or, on a conflict, the newest one starts the next check); any
    /// others that came meanwhile are then answered like a retransmission.
    fn finish_probe(&self, ip: Ipv4Addr, probe: Probe, answered: bool) {
        if answered {
            self.counters.conflicts.fetch_add(1, Relaxed);
        }
        let now = crate::clock::unix_now();
        let Probe {
            mut msgs, attempt, ..
        } = probe;
        let first = if answered {
            msgs.pop()
        } else {
            Some(msgs.remove(0))
        };
        let Some(first) = first else {
            return;
        };
        let settings = self.settings();
        let (outcome, seq) = self.decide(|st| {
            server_logic::probe_done(&settings, st, &first, ip, answered, attempt, now)
        });
        self.dispatch(outcome, &first, seq, attempt.saturating_add(1));
        if answered {
            return;
        }
        for m in msgs {
            let (outcome, seq) = self.decide(|st| server_logic::handle(&settings, st, &m, now));
            self.dispatch(outcome, &m, seq, 1);
        }
    }

    /// Runs a decision under the store's lock; also says which journal
    /// sequence number its reply must wait for: the decision's own changes,
    /// or, for an ACK that changed nothing (the same lease again), whatever
    /// is not on disk yet, which may be that very lease.
    fn decide(
        &self,
        f: impl FnOnce(&mut super::lease_store::LeaseStore) -> Outcome,
    ) -> (Outcome, Option<u64>) {
        let mut st = lock(&self.store);
        let before = st.journal_seq();
        let o = f(&mut st);
        let after = st.journal_seq();
        let wait = after > before || (o.kind == Kind::Ack && st.is_dirty());
        (o, wait.then_some(after))
    }
}

/// Binds to `iface`, waiting for it to appear: at boot init may still be
/// creating the bridge. Other errors (port taken, no privilege) are fatal.
fn bind_when_present(iface: &str) -> anyhow::Result<(UdpSocket, u32)> {
    let mut waiting = false;
    loop {
        match bind(iface) {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                if !waiting {
                    eprintln!("dhcp: interface {iface} not present yet; retrying every second");
                    waiting = true;
                }
                thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(anyhow::anyhow!("dhcp: binding port 67 on {iface}: {e}")),
        }
    }
}

fn bind(iface: &str) -> io::Result<(UdpSocket, u32)> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Clients without an address send from 0.0.0.0 to 255.255.255.255; only the
    // device binding tells us (and the kernel, for our broadcasts) which link.
    s.bind_device(Some(iface.as_bytes()))?;
    let ifindex =
        nix::net::if_::if_nametoindex(iface).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    grow_buffers(&s);
    s.set_read_timeout(Some(RECV_TIMEOUT))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)).into())?;
    Ok((s.into(), ifindex))
}

/// Asks for big socket buffers, beyond rmem_max/wmem_max when we may (root).
fn grow_buffers(s: &Socket) {
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let size = SOCKET_BUFFER as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

// --- conflict check ---

struct Probes {
    /// Raw ICMP socket bound to the LAN interface (rebound with the UDP socket).
    sock: Mutex<Option<Arc<Socket>>>,
    state: Mutex<ProbeState>,
    cv: Condvar,
    /// ICMP echo identifier: replies to other programs' pings are not ours.
    ident: u16,
    timeout: Duration,
}

#[derive(Default)]
struct ProbeState {
    pending: HashMap<Ipv4Addr, Probe>,
    /// In deadline order (one timeout for all).
    deadlines: VecDeque<(Instant, Ipv4Addr, u16)>,
    next_seq: u16,
}

struct Probe {
    /// The DISCOVERs waiting for this check: the first, and retransmissions.
    msgs: Vec<v4::Message>,
    attempt: u8,
    seq: u16,
}

/// Retransmissions kept per check; more are answered by the client's next one.
const MAX_WAITING: usize = 4;

impl Probes {
    fn new(timeout: Duration) -> io::Result<Self> {
        // Fails without CAP_NET_RAW: then the caller turns the check off.
        drop(raw_icmp_socket(None)?);
        Ok(Probes {
            sock: Mutex::new(None),
            state: Mutex::new(ProbeState::default()),
            cv: Condvar::new(),
            ident: rand::random(),
            timeout,
        })
    }

    fn bind(&self, iface: &str) {
        let s = match raw_icmp_socket(Some(iface)) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                eprintln!("dhcp: no ICMP socket on {iface} ({e}): offering without conflict check");
                None
            }
        };
        *lock(&self.sock) = s;
    }

    /// Pings `ip` for the DISCOVER `msg`, or adds `msg` to the check of `ip`
    /// under way (the logic only asks that for the same client);
    /// `engine.finish_probe` follows.
    fn start(&self, engine: &Engine, ip: Ipv4Addr, msg: v4::Message, attempt: u8) {
        let seq = {
            let mut st = lock(&self.state);
            if let Some(p) = st.pending.get_mut(&ip) {
                if p.msgs.len() < MAX_WAITING {
                    p.msgs.push(msg);
                }
                return;
            }
            engine.counters.probes.fetch_add(1, Relaxed);
            let seq = st.next_seq;
            st.next_seq = seq.wrapping_add(1);
            st.pending.insert(
                ip,
                Probe {
                    msgs: vec![msg],
                    attempt,
                    seq,
                },
            );
            st.deadlines
                .push_back((Instant::now() + self.timeout, ip, seq));
            if st.pending.len() == 1 {
                self.cv.notify_one();
            }
            seq
        };
        let sent = match lock(&self.sock).clone() {
            Some(s) => s
                .send_to(
                    &echo_request(self.ident, seq),
                    &SockAddr::from(SocketAddrV4::new(ip, 0)),
                )
                .is_ok(),
            None => false,
        };
        if !sent {
            // Cannot check (no socket, no route): offer as if nobody answered,
            // as a server without the check would.
            if let Some(p) = self.take(ip, Some(seq)) {
                engine.finish_probe(ip, p, false);
            }
        }
    }

    fn take(&self, ip: Ipv4Addr, seq: Option<u16>) -> Option<Probe> {
        let mut st = lock(&self.state);
        match st.pending.get(&ip) {
            Some(p) if seq.is_none_or(|s| s == p.seq) => st.pending.remove(&ip),
            _ => None,
        }
    }

    fn expired(&self, now: Instant) -> Vec<(Ipv4Addr, Probe)> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        while let Some(&(t, ip, seq)) = st.deadlines.front() {
            if t > now {
                break;
            }
            st.deadlines.pop_front();
            if st.pending.get(&ip).is_some_and(|p| p.seq == seq) {
                if let Some(p) = st.pending.remove(&ip) {
                    out.push((ip, p));
                }
            }
        }
        out
    }
}

fn raw_icmp_socket(iface: Option<&str>) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    if let Some(i) = iface {
        s.bind_device(Some(i.as_bytes()))?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn wait_readable(s: &Socket, timeout: Duration) -> bool {
    let mut fds = [libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // Round up so a deadline 0.3 ms away does not spin.
    let ms = timeout.as_micros().div_ceil(1000).min(1000) as libc::c_int;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    n > 0 && fds[0].revents & libc::POLLIN != 0
}

fn recv_raw(s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; socket2's recv wants
    // MaybeUninit, which initialized bytes are.
    let uninit = unsafe {
        std::slice::from_raw_parts_mut(
            buf.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
            buf.len(),
        )
    };
    s.recv(uninit)
}

/// ICMP echo request: type 8, code 0, checksum, identifier, sequence, payload.
pub fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"gatehous");
    let c = inet_checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// From a raw IPv4 packet: the sender and sequence number of an echo reply
/// carrying our identifier.
pub fn parse_echo_reply(pkt: &[u8], ident: u16) -> Option<(Ipv4Addr, u16)> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if *pkt.first()? >> 4 != 4 || ihl < 20 || pkt.get(9) != Some(&1) {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let icmp = pkt.get(ihl..ihl + 8)?;
    if icmp[0] != 0 || icmp[1] != 0 || u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
        return None;
    }
    Some((src, u16::from_be_bytes([icmp[6], icmp[7]])))
}

/// Per-second budget for the per-request log lines: a flood of requests (or a
/// benchmark) must not turn into a flood of log writes.
#[derive(Default)]
struct Log {
    state: Mutex<LogWindow>,
}

#[derive(Default)]
struct LogWindow {
    start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl Log {
    fn line(&self, text: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut w = lock(&self.state);
        if w.start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            if w.suppressed > 0 {
                eprintln!("dhcp: {} log lines suppressed", w.suppressed);
            }
            *w = LogWindow {
                start: Some(now),
                lines: 0,
                suppressed: 0,
            };
        }
        if w.lines < LOG_LINES_PER_SEC {
            w.lines += 1;
            drop(w);
            eprintln!("{text}");
        } else {
            w.suppressed += 1;
        }
    }
}

/// Lets a log line through at most once per `every`, so a flood of junk
/// cannot flood the log.
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    fn new(every: Duration) -> Self {
        RateLimit { every, last: None }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum() {
        let p = echo_request(0x1234, 7);
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        // A packet with its checksum in place sums to zero.
        assert_eq!(inet_checksum(&p), 0);
        // Odd length.
        assert_eq!(inet_checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn echo_replies_are_matched() {
        let mut ip = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 1, 100, 192, 168, 1, 1,
        ];
        let mut icmp = echo_request(0xbeef, 42);
        icmp[0] = 0; // echo reply
        ip.extend_from_slice(&icmp);
        assert_eq!(
            parse_echo_reply(&ip, 0xbeef),
            Some((Ipv4Addr::new(192, 168, 1, 100), 42))
        );
        // Someone else's ping, an echo request, a truncated or non-ICMP packet.
        assert_eq!(parse_echo_reply(&ip, 0xbeee), None);
        let mut req = ip.clone();
        req[20] = 8;
        assert_eq!(parse_echo_reply(&req, 0xbeef), None);
        assert_eq!(parse_echo_reply(&ip[..24], 0xbeef), None);
        let mut udp = ip.clone();
        udp[9] = 17;
        assert_eq!(parse_echo_reply(&udp, 0xbeef), None);
        assert_eq!(parse_echo_reply(&[], 0xbeef), None);
        // IP options move the ICMP header.
        let mut opt = vec![
            0x46, 0, 0, 40, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 1, 9, 192, 168, 1, 1, 1, 1, 1, 1,
        ];
        opt.extend_from_slice(&icmp);
        assert_eq!(
            parse_echo_reply(&opt, 0xbeef),
            Some((Ipv4Addr::new(192, 168, 1, 9), 42))
        );
    }

    #[test]
    fn probe_table_deadlines() {
        let p = Probes {
            sock: Mutex::new(None),
            state: Mutex::new(ProbeState::default()),
            cv: Condvar::new(),
            ident: 1,
            timeout: Duration::from_millis(300),
        };
        let msg = v4::Message::default();
        let t0 = Instant::now();
        {
            let mut st = lock(&p.state);
            for (i, last) in [100u8, 101, 102].into_iter().enumerate() {
                let ip = Ipv4Addr::new(192, 168, 1, last);
                st.pending.insert(
                    ip,
                    Probe {
                        msgs: vec![msg.clone()],
                        attempt: 1,
                        seq: i as u16,
                    },
                );
                st.deadlines
                    .push_back((t0 + Duration::from_millis(100 * i as u64), ip, i as u16));
            }
        }
        // An answer with a stale sequence number is not this probe's.
        assert!(p.take(Ipv4Addr::new(192, 168, 1, 101), Some(9)).is_none());
        assert!(p.take(Ipv4Addr::new(192, 168, 1, 101), Some(1)).is_some());
        let due: Vec<_> = p
            .expired(t0 + Duration::from_millis(150))
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        assert_eq!(due, vec![Ipv4Addr::new(192, 168, 1, 100)]);
        // The answered one left no deadline behind that fires.
        let due: Vec<_> = p
            .expired(t0 + Duration::from_secs(1))
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        assert_eq!(due, vec![Ipv4Addr::new(192, 168, 1, 102)]);
        assert!(lock(&p.state).pending.is_empty());
    }
}
