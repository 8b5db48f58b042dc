//! nfnetlink_queue over a raw netlink socket, batched both ways.
//!
//! Why our own instead of the nfq crate: it makes one `recv` and one verdict `send` per packet
//! and cannot batch, which capped 64-byte UDP well below the kernel's NAT. Here one `recvmmsg`
//! takes up to [`BATCH`] packets, and one `sendmsg` returns all their verdicts, each rewritten
//! payload gathered by iovec straight from the receive buffer (no copy in userspace).
//!
//! The wire format (linux/netfilter/nfnetlink_queue.h) is parsed by pure functions over byte
//! slices, unit-tested below; only [`QueueSocket`] does I/O.

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Packets taken per `recvmmsg`, and so verdicts per `sendmsg` at most.
pub const BATCH: usize = 32;
/// One datagram: a 64 KiB packet (the most nfqueue copies) plus its metadata.
const DGRAM: usize = 65536 + 4096;
/// Verdict bytes gathered before they are sent, well inside the send buffer we ask for.
const SEND_LIMIT: usize = 1 << 20;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

// Packet attributes.
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_IFINDEX_INDEV: u16 = 5;
const NFQA_IFINDEX_OUTDEV: u16 = 6;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CAP_LEN: u16 = 13;
const NFQA_SKB_INFO: u16 = 14;
// Config attributes.
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQA_CFG_F_GSO: u32 = 4;

/// `NFQA_SKB_INFO` bits.
pub const SKB_CSUM_NOT_READY: u32 = 1;
pub const SKB_GSO: u32 = 2;

pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

const NLMSG_HDR: usize = 16;
const NFGEN_HDR: usize = 4;
const NLA_HDR: usize = 4;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// What a received netlink message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Packet(Meta),
    /// An error (or, with errno 0, an acknowledgement) for the request with sequence `seq`.
    Ack {
        errno: i32,
        seq: u32,
    },
    Other,
}

/// One queued packet. `payload` indexes the datagram it came in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    pub id: u32,
    pub hook: u8,
    pub indev: u32,
    pub outdev: u32,
    /// `NFQA_SKB_INFO` flags.
    pub skb_info: u32,
    /// The packet's real length; more than the payload when the copy was cut short.
    pub orig_len: usize,
    pub payload: Range<usize>,
}

impl Meta {
    pub fn truncated(&self) -> bool {
        self.orig_len > self.payload.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u32_be(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Splits a datagram into its netlink messages and parses each with `f`. Stops at the first
/// malformed header, since nothing after it can be framed.
pub fn parse_datagram(d: &[u8], mut f: impl FnMut(Result<Msg, Malformed>)) {
    let mut at = 0;
    while d.len() >= at + NLMSG_HDR {
        let len = u32_ne(d, at) as usize;
        if len < NLMSG_HDR || at + len > d.len() {
            f(Err(Malformed));
            return;
        }
        f(parse_message(d, at..at + len));
        at += align4(len);
    }
}

/// Parses the netlink message at `range` of `d`; payload ranges index `d`.
fn parse_message(d: &[u8], range: Range<usize>) -> Result<Msg, Malformed> {
    let m = &d[range.clone()];
    let ty = u16_ne(m, 4);
    let seq = u32_ne(m, 8);
    if ty == NLMSG_ERROR {
        let errno = m.get(16..20).ok_or(Malformed)?;
        let errno = i32::from_ne_bytes(errno.try_into().map_err(|_| Malformed)?);
        // The kernel sends -errno; i32::MIN has no positive and is nothing it sends.
        let errno = errno.checked_neg().ok_or(Malformed)?;
        return Ok(Msg::Ack { errno, seq });
    }
    if ty != (NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET) {
        return Ok(Msg::Other);
    }
    let base = range.start + NLMSG_HDR + NFGEN_HDR;
    if base > range.end {
        return Err(Malformed);
    }
    let mut meta = Meta::default();
    let mut have_hdr = false;
    let mut have_payload = false;
    let mut at = base;
    while range.end >= at + NLA_HDR {
        let alen = usize::from(u16_ne(d, at));
        let aty = u16_ne(d, at + 2) & 0x3fff;
        if alen < NLA_HDR || at + alen > range.end {
            return Err(Malformed);
        }
        let val = &d[at + NLA_HDR..at + alen];
        match aty {
            NFQA_PACKET_HDR => {
                // struct nfqnl_msg_packet_hdr { __be32 packet_id; __be16 hw_protocol; __u8 hook; }
                meta.id = u32_be(val).ok_or(Malformed)?;
                meta.hook = *val.get(6).ok_or(Malformed)?;
                have_hdr = true;
            }
            NFQA_IFINDEX_INDEV => meta.indev = u32_be(val).ok_or(Malformed)?,
            NFQA_IFINDEX_OUTDEV => meta.outdev = u32_be(val).ok_or(Malformed)?,
            NFQA_SKB_INFO => meta.skb_info = u32_be(val).ok_or(Malformed)?,
            NFQA_CAP_LEN => meta.orig_len = u32_be(val).ok_or(Malformed)? as usize,
            NFQA_PAYLOAD => {
                meta.payload = at + NLA_HDR..at + alen;
                have_payload = true;
            }
            _ => {}
        }
        at += align4(alen);
    }
    if !have_hdr || !have_payload {
        return Err(Malformed);
    }
    // The kernel sends NFQA_CAP_LEN only when it cut the copy short.
    meta.orig_len = meta.orig_len.max(meta.payload.len());
    Ok(Msg::Packet(meta))
}

fn put_nlmsg_hdr(out: &mut Vec<u8>, len: usize, ty: u16, flags: u16, seq: u32, queue: u16) {
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&(NFNL_SUBSYS_QUEUE << 8 | ty).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct nfgenmsg { u8 family (AF_UNSPEC); u8 version (NFNETLINK_V0); __be16 res_id (queue) }
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&queue.to_be_bytes());
}

fn put_attr(out: &mut Vec<u8>, ty: u16, val: &[u8]) {
    out.extend_from_slice(&((NLA_HDR + val.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(val);
    out.resize(align4(out.len()), 0);
}

/// The config request: bind `queue`, copy up to `copy_range` bytes of each packet (a NAT needs
/// them all: a payload written back replaces the whole packet), and set the flags, in one
/// message (the kernel applies the command first, then the rest).
pub fn config_request(
    queue: u16,
    seq: u32,
    copy_range: u16,
    max_len: u32,
    gso: bool,
    fail_open: bool,
) -> Vec<u8> {
    let mut attrs = Vec::with_capacity(64);
    // struct nfqnl_msg_config_cmd { u8 command; u8 pad; __be16 pf; }
    put_attr(
        &mut attrs,
        NFQA_CFG_CMD,
        &[NFQNL_CFG_CMD_BIND, 0, 0, libc::AF_INET as u8],
    );
    // struct nfqnl_msg_config_params { __be32 copy_range; u8 copy_mode; } (packed)
    let mut params = u32::from(copy_range).to_be_bytes().to_vec();
    params.push(NFQNL_COPY_PACKET);
    put_attr(&mut attrs, NFQA_CFG_PARAMS, &params);
    put_attr(&mut attrs, NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes());
    let mut flags = 0;
    if gso {
        flags |= NFQA_CFG_F_GSO;
    }
    if fail_open {
        flags |= NFQA_CFG_F_FAIL_OPEN;
    }
    put_attr(&mut attrs, NFQA_CFG_FLAGS, &flags.to_be_bytes());
    put_attr(
        &mut attrs,
        NFQA_CFG_MASK,
        &(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN).to_be_bytes(),
    );
    let len = NLMSG_HDR + NFGEN_HDR + attrs.len();
    let mut out = Vec::with_capacity(len);
    put_nlmsg_hdr(
        &mut out,
        len,
        NFQNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        queue,
    );
    out.extend_from_slice(&attrs);
    out
}

/// Size of a verdict message's fixed part: headers, the verdict attribute, and (when a
/// payload follows) the payload attribute's header.
const VERDICT_FIXED: usize = NLMSG_HDR + NFGEN_HDR + NLA_HDR + 8;

/// Appends a verdict message's fixed part to `out`. With `payload_len`, the caller sends that
/// many payload bytes and then `align4` padding right after it.
pub fn verdict_header(
    out: &mut Vec<u8>,
    queue: u16,
    id: u32,
    verdict: u32,
    payload_len: Option<usize>,
) {
    let total = VERDICT_FIXED + payload_len.map_or(0, |n| NLA_HDR + align4(n));
    put_nlmsg_hdr(out, total, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, queue);
    // struct nfqnl_msg_verdict_hdr { __be32 verdict; __be32 id; }
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&verdict.to_be_bytes());
    v[4..].copy_from_slice(&id.to_be_bytes());
    put_attr(out, NFQA_VERDICT_HDR, &v);
    if let Some(n) = payload_len {
        out.extend_from_slice(&((NLA_HDR + n) as u16).to_ne_bytes());
        out.extend_from_slice(&NFQA_PAYLOAD.to_ne_bytes());
    }
}

/// Receive buffers for one batch, with the `recvmmsg` headers that point into them (kept
/// here so a receive allocates nothing; the pointers are set again on every call).
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    n: usize,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; DGRAM].into_boxed_slice())
                .collect(),
            lens: vec![0; BATCH],
            n: 0,
            iovs: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: mmsghdr is plain data; zeroed means no name and no control data.
            hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }
}

impl RecvBatch {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    pub fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i][..self.lens[i]]
    }
}

/// A rewritten packet to send back: its datagram in the batch, and its bytes there.
pub type PayloadRef = (usize, Range<usize>);

/// Verdicts gathered for one batch; a payload is referenced in place, by datagram and range.
#[derive(Default)]
pub struct Verdicts {
    headers: Vec<u8>,
    /// (end of this message's headers in `headers`, payload to send after them)
    parts: Vec<(usize, Option<PayloadRef>)>,
    bytes: usize,
}

impl Verdicts {
    /// Adds a verdict; `payload` (datagram index, range) sends the packet back rewritten.
    pub fn push(&mut self, queue: u16, id: u32, verdict: u32, payload: Option<PayloadRef>) {
        let plen = payload.as_ref().map(|(_, r)| r.len());
        verdict_header(&mut self.headers, queue, id, verdict, plen);
        self.bytes += VERDICT_FIXED + plen.map_or(0, |n| NLA_HDR + align4(n));
        self.parts.push((self.headers.len(), payload));
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the gathered verdicts should go out before more are added.
    pub fn full(&self) -> bool {
        self.bytes >= SEND_LIMIT || self.parts.len() >= BATCH
    }

    fn clear(&mut self) {
        self.headers.clear();
        self.parts.clear();
        self.bytes = 0;
    }
}

/// A netlink socket bound to one nfqueue.
pub struct QueueSocket {
    fd: OwnedFd,
    queue: u16,
    seq: u32,
    /// Packet messages read while waiting for the config acknowledgement: dropped, counted.
    pub early_drops: u64,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to a live c_int of the size given.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address (pid 0, no groups).
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

impl QueueSocket {
    /// Opens a socket and binds `queue`. With `gso`, large packets come unsegmented and
    /// possibly "checksum not ready" (see `Meta::skb_info`). With fail-open off, packets that
    /// find the queue full, or no listener at all, are dropped, never passed untranslated.
    pub fn open(queue: u16, copy_range: u16, max_len: u32, gso: bool) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let local = kernel_addr();
        // SAFETY: a valid sockaddr_nl of the size given.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        // Room for bursts while a batch is processed; FORCE needs CAP_NET_ADMIN, which a
        // NAT daemon has anyway. Failing that, the default size still works.
        if setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20).is_err() {
            let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 16 << 20);
        }
        if setsockopt_int(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            4 * SEND_LIMIT as i32,
        )
        .is_err()
        {
            let _ = setsockopt_int(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                4 * SEND_LIMIT as i32,
            );
        }
        // An overrun loses those packets (the kernel drops them); it should not also fail
        // the next recv.
        let _ = setsockopt_int(&fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1);
        let mut s = Self {
            fd,
            queue,
            seq: 1,
            early_drops: 0,
        };
        let req = config_request(queue, s.seq, copy_range, max_len, gso, false);
        s.send_raw(&req)?;
        s.wait_ack(s.seq)?;
        Ok(s)
    }

    fn send_raw(&self, buf: &[u8]) -> io::Result<()> {
        let to = kernel_addr();
        // SAFETY: valid buffer and address for the call's duration.
        cvt(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ) as libc::c_int
        })
        .map(drop)
    }

    /// Waits for the answer to request `seq`. Packets arriving meanwhile (the rules may
    /// already be in, e.g. after a restart) are dropped: accepting would leak them
    /// untranslated, and the sender retransmits.
    fn wait_ack(&mut self, seq: u32) -> io::Result<()> {
        let mut buf = vec![0u8; DGRAM];
        loop {
            // SAFETY: buf is valid for its length.
            let n = cvt(unsafe {
                libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    as libc::c_int
            })? as usize;
            let mut done = None;
            let mut drops = Vec::new();
            parse_datagram(&buf[..n], |m| match m {
                Ok(Msg::Ack { errno, seq: s }) if s == seq => done = Some(errno),
                Ok(Msg::Packet(p)) => drops.push(p.id),
                _ => {}
            });
            for id in drops {
                let mut v = Vec::new();
                verdict_header(&mut v, self.queue, id, NF_DROP, None);
                self.send_raw(&v)?;
                self.early_drops += 1;
            }
            match done {
                Some(0) => return Ok(()),
                Some(e) => return Err(io::Error::from_raw_os_error(e)),
                None => {}
            }
        }
    }

    /// Makes a waiting `recv` give up (and return 0) after `t`.
    pub fn set_recv_timeout(&self, t: std::time::Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid fd and a pointer to a live timeval of the size given.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `BATCH` datagrams. Without `wait`, returns 0 at once when none is
    /// queued; with it, blocks for the first (up to the receive timeout, if one is set) and
    /// takes whatever else is already there.
    pub fn recv(&self, b: &mut RecvBatch, wait: bool) -> io::Result<usize> {
        let RecvBatch {
            bufs, iovs, hdrs, ..
        } = b;
        for ((buf, v), h) in bufs.iter_mut().zip(iovs.iter_mut()).zip(hdrs.iter_mut()) {
            *v = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // SAFETY: every header points at one live iovec over a live buffer.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            b.n = 0;
            // Nothing queued (without `wait`), or the receive timeout ran out.
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(0);
            }
            return Err(e);
        }
        b.n = r as usize;
        for (i, h) in hdrs.iter().take(b.n).enumerate() {
            // A cut datagram cannot be framed; an empty length makes it parse as nothing.
            b.lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                0
            } else {
                h.msg_len as usize
            };
        }
        Ok(b.n)
    }

    /// Sends the gathered verdicts in one datagram and clears them. Payloads are read from
    /// `b`, where the caller rewrote them in place.
    pub fn send(&self, b: &RecvBatch, v: &mut Verdicts) -> io::Result<()> {
        if v.is_empty() {
            return Ok(());
        }
        static PAD: [u8; 4] = [0; 4];
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(v.parts.len() * 3);
        let mut start = 0;
        for (end, payload) in &v.parts {
            let h = &v.headers[start..*end];
            iov.push(libc::iovec {
                iov_base: h.as_ptr() as *mut _,
                iov_len: h.len(),
            });
            start = *end;
            if let Some((i, r)) = payload {
                let p = &b.bufs[*i][r.clone()];
                iov.push(libc::iovec {
                    iov_base: p.as_ptr() as *mut _,
                    iov_len: p.len(),
                });
                let pad = align4(p.len()) - p.len();
                if pad > 0 {
                    iov.push(libc::iovec {
                        iov_base: PAD.as_ptr() as *mut _,
                        iov_len: pad,
                    });
                }
            }
        }
        let mut to = kernel_addr();
        // SAFETY: msghdr is plain data; filled in with pointers that outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut to as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: every iovec points into v.headers, b's buffers or PAD, all alive here and
        // only read by the kernel.
        let r = cvt(unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) as libc::c_int });
        v.clear();
        r.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, val: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_attr(&mut v, ty, val);
        v
    }

    /// A packet message as the kernel frames it.
    fn packet_msg(id: u32, hook: u8, payload: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(hook);
        attrs.extend(attr(NFQA_PACKET_HDR, &hdr));
        for e in extra {
            attrs.extend_from_slice(e);
        }
        attrs.extend(attr(NFQA_PAYLOAD, payload));
        let len = NLMSG_HDR + NFGEN_HDR + attrs.len();
        let mut out = Vec::new();
        put_nlmsg_hdr(&mut out, len, NFQNL_MSG_PACKET, 0, 0, 7);
        out.extend(attrs);
        out
    }

    fn parse_all(d: &[u8]) -> Vec<Result<Msg, Malformed>> {
        let mut v = Vec::new();
        parse_datagram(d, |m| v.push(m));
        v
    }

    #[test]
    fn parses_a_packet_message() {
        let payload = [
            0x45u8, 0, 0, 21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
        ];
        let d = packet_msg(
            0xdead_beef,
            4,
            &payload,
            &[
                attr(NFQA_IFINDEX_INDEV, &3u32.to_be_bytes()),
                attr(NFQA_IFINDEX_OUTDEV, &9u32.to_be_bytes()),
                attr(NFQA_SKB_INFO, &(SKB_GSO | SKB_CSUM_NOT_READY).to_be_bytes()),
            ],
        );
        let msgs = parse_all(&d);
        let [Ok(Msg::Packet(m))] = msgs.as_slice() else {
            panic!("{msgs:?}")
        };
        assert_eq!((m.id, m.hook, m.indev, m.outdev), (0xdead_beef, 4, 3, 9));
        assert_eq!(m.skb_info, SKB_GSO | SKB_CSUM_NOT_READY);
        assert_eq!(&d[m.payload.clone()], &payload);
        assert!(!m.truncated());
    }

    #[test]
    fn cap_len_marks_a_short_copy() {
        let d = packet_msg(
            1,
            0,
            &[0x45; 20],
            &[attr(NFQA_CAP_LEN, &1500u32.to_be_bytes())],
        );
        let msgs = parse_all(&d);
        let [Ok(Msg::Packet(m))] = msgs.as_slice() else {
            panic!()
        };
        assert!(m.truncated());
        assert_eq!(m.orig_len, 1500);
    }

    #[test]
    fn several_messages_in_one_datagram_and_acks() {
        let mut d = packet_msg(1, 0, &[1, 2, 3], &[]);
        d.extend(packet_msg(2, 4, &[4, 5, 6, 7, 8], &[]));
        // An NLMSG_ERROR with -ENOENT for request 9.
        let mut err = Vec::new();
        err.extend_from_slice(&36u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&0u16.to_ne_bytes());
        err.extend_from_slice(&9u32.to_ne_bytes());
        err.extend_from_slice(&0u32.to_ne_bytes());
        err.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        d.extend(err);
        let msgs = parse_all(&d);
        assert_eq!(msgs.len(), 3);
        let ids: Vec<u32> = msgs
            .iter()
            .filter_map(|m| match m {
                Ok(Msg::Packet(p)) => Some(p.id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(
            msgs[2],
            Ok(Msg::Ack {
                errno: libc::ENOENT,
                seq: 9
            })
        );
    }

    #[test]
    fn hostile_framing_is_refused_without_panic() {
        let good = packet_msg(5, 0, &[9; 40], &[]);
        // Every prefix, and every single corrupted byte: never a panic, never a payload
        // range outside the datagram.
        for cut in 0..good.len() {
            for m in parse_all(&good[..cut]).into_iter().flatten() {
                if let Msg::Packet(p) = m {
                    assert!(p.payload.end <= cut);
                }
            }
        }
        for i in 0..good.len() {
            for x in [0u8, 1, 3, 0x7f, 0xff] {
                let mut d = good.clone();
                d[i] = x;
                for m in parse_all(&d).into_iter().flatten() {
                    if let Msg::Packet(p) = m {
                        assert!(p.payload.end <= d.len());
                    }
                }
            }
        }
        // An error message whose errno cannot be negated (found by fuzzing).
        let mut d = Vec::new();
        d.extend_from_slice(&20u32.to_ne_bytes());
        d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        d.extend_from_slice(&[0; 10]);
        d.extend_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(parse_all(&d), [Err(Malformed)]);
        // No packet header or no payload: malformed.
        let mut d = Vec::new();
        put_nlmsg_hdr(&mut d, NLMSG_HDR + NFGEN_HDR, NFQNL_MSG_PACKET, 0, 0, 0);
        assert_eq!(parse_all(&d), [Err(Malformed)]);
    }

    #[test]
    fn verdict_with_payload_frames_like_the_kernel_expects() {
        let mut out = Vec::new();
        verdict_header(&mut out, 7, 42, NF_ACCEPT, Some(5));
        assert_eq!(out.len(), VERDICT_FIXED + NLA_HDR);
        // The message length covers the padded payload that follows.
        assert_eq!(u32_ne(&out, 0) as usize, VERDICT_FIXED + NLA_HDR + 8);
        assert_eq!(u16_ne(&out, 4), NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_VERDICT);
        assert_eq!(&out[18..20], &7u16.to_be_bytes());
        // Verdict attribute: verdict, then id, both big-endian.
        assert_eq!(u16_ne(&out, 22), NFQA_VERDICT_HDR);
        assert_eq!(&out[24..28], &NF_ACCEPT.to_be_bytes());
        assert_eq!(&out[28..32], &42u32.to_be_bytes());
        assert_eq!(usize::from(u16_ne(&out, 32)), NLA_HDR + 5);
        assert_eq!(u16_ne(&out, 34), NFQA_PAYLOAD);

        let mut v = Verdicts::default();
        v.push(7, 1, NF_DROP, None);
        v.push(7, 2, NF_ACCEPT, Some((0, 0..5)));
        assert_eq!(v.len(), 2);
        assert_eq!(v.parts[0].0, VERDICT_FIXED);
        assert_eq!(v.parts[1].0, 2 * VERDICT_FIXED + NLA_HDR);
    }

    #[test]
    fn config_request_binds_copies_and_sets_flags() {
        let req = config_request(3, 77, u16::MAX, 8192, true, false);
        assert_eq!(u32_ne(&req, 0) as usize, req.len());
        assert_eq!(u16_ne(&req, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_ne(&req, 8), 77);
        let mut at = NLMSG_HDR + NFGEN_HDR;
        let mut seen = Vec::new();
        while at < req.len() {
            let len = usize::from(u16_ne(&req, at));
            let ty = u16_ne(&req, at + 2);
            seen.push((ty, req[at + 4..at + len].to_vec()));
            at += align4(len);
        }
        assert_eq!(seen[0], (NFQA_CFG_CMD, vec![NFQNL_CFG_CMD_BIND, 0, 0, 2]));
        assert_eq!(
            seen[1],
            (NFQA_CFG_PARAMS, vec![0, 0, 0xff, 0xff, NFQNL_COPY_PACKET])
        );
        assert_eq!(
            seen[2],
            (NFQA_CFG_QUEUE_MAXLEN, 8192u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            seen[3],
            (NFQA_CFG_FLAGS, NFQA_CFG_F_GSO.to_be_bytes().to_vec())
        );
    }
}
