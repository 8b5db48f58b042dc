//! Batched UDP I/O for the DNS server: one `recvmmsg` reads up to [`BATCH`] queries with their
//! senders, one `sendmmsg` (or as few as the kernel allows) sends the answers. Also used by
//! `dns-ceiling`, the benchmark's zero-work server, so the two share the same system calls.

use std::mem::MaybeUninit;
use std::net::SocketAddr;

/// Datagrams read (and answers sent) per system call.
pub const BATCH: usize = 32;
/// Largest query accepted over UDP; longer datagrams are dropped (MSG_TRUNC).
pub const MAX_UDP_QUERY: usize = 4096;

/// Receive buffers and headers for one batch, reused forever.
pub struct RecvBatch {
    pub bufs: Vec<[u8; MAX_UDP_QUERY]>,
    pub addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    pub hdrs: Vec<libc::mmsghdr>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        // SAFETY: these are plain C structs for which all-zero is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_hdr: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            bufs: vec![[0u8; MAX_UDP_QUERY]; BATCH],
            addrs: vec![zero_addr; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![zero_hdr; BATCH],
        }
    }

    /// Blocks until at least one datagram is there, then takes what else is
    /// queued (at most `BATCH`). Returns how many were read.
    pub fn recv(&mut self, fd: libc::c_int) -> std::io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_UDP_QUERY,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at a buffer, address and iovec owned by
        // `self`, which outlives the call; the lengths match the allocations.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Sends `outs[..n]` to `addrs[..n]` with as few sendmmsg calls as possible.
/// Datagrams the kernel will not take right now are dropped (clients retry).
pub fn send_all(
    fd: libc::c_int,
    outs: &[Vec<u8>],
    addrs: &[(libc::sockaddr_storage, libc::socklen_t)],
    n: usize,
) {
    let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for i in 0..n {
        iovs[i].write(libc::iovec {
            iov_base: outs[i].as_ptr() as *mut libc::c_void,
            iov_len: outs[i].len(),
        });
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&addrs[i].0 as *const libc::sockaddr_storage) as *mut libc::c_void;
        h.msg_namelen = addrs[i].1;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
    }
    let mut off = 0;
    while off < n {
        // SAFETY: headers [off, n) point at live buffers and addresses that
        // outlive the call; the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs[off..].as_mut_ptr(),
                (n - off) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            off += r as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // EAGAIN, or this datagram's destination is unusable: skip one.
        off += 1;
    }
}

/// The address the kernel wrote into a recvmmsg header.
pub fn to_socket_addr(a: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::from((
                std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
            )))
        }
        _ => None,
    }
}
