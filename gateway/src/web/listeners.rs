//! What listens on the router itself, read from procfs: the sockets in
//! `/proc/net/{tcp,tcp6,udp,udp6}` (TCP in LISTEN, UDP not connected to a peer)
//! and, through the socket inodes behind `/proc/[pid]/fd/*`, the processes that
//! hold them. The text parsers are pure; `collect` reads a procfs root given by
//! the caller, so tests can hand it a fake tree.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// TCP_LISTEN in the kernel's socket state numbering.
const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: what an unconnected (bound, receiving from anyone) UDP socket shows.
const UDP_UNCONNECTED: u8 = 0x07;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One listening socket as a `/proc/net` table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub proto: Proto,
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// Who can reach a listener, judged by the address it is bound to (the firewall
/// may still drop what arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Bound to every address (0.0.0.0, ::) or to the WAN address.
    Wan,
    /// Bound to a LAN-side address only.
    Lan,
    /// Loopback: the router itself only.
    Local,
}

impl Reach {
    pub fn describe(self) -> &'static str {
        match self {
            Reach::Wan => "WAN and LAN",
            Reach::Lan => "LAN only",
            Reach::Local => "this router only",
        }
    }
}

/// A listener for the ports page: sockets with one protocol, address and port
/// merged (SO_REUSEPORT groups, sockets shared after fork).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// Names (`comm`) of the processes holding the socket; empty if none could
    /// be found (a kernel socket, or a process we may not look into).
    pub processes: Vec<String>,
    pub reach: Reach,
}

/// A hex address from a `/proc/net` line: 8 digits for IPv4, 32 for IPv6. The
/// kernel prints each 32-bit word as a native-endian integer.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// "0100007F:0035" -> (127.0.0.1, 53).
fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    Some((parse_hex_addr(a)?, u16::from_str_radix(p, 16).ok()?))
}

/// The listening sockets in one `/proc/net/{tcp,tcp6,udp,udp6}` text. Lines that
/// do not parse (the header among them) are skipped.
pub fn parse_net(text: &str, proto: Proto) -> Vec<Socket> {
    let wanted = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => UDP_UNCONNECTED,
    };
    text.lines()
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = parse_endpoint(f.get(1)?)?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            (state == wanted).then_some(Socket {
                proto,
                addr,
                port,
                inode,
            })
        })
        .collect()
}

/// The inode of an fd link target such as `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Where a listener bound to `addr` can be reached from.
pub fn reach(addr: IpAddr, wan: Option<Ipv4Addr>) -> Reach {
    let v4 = match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    if addr.is_unspecified() || v4.is_some_and(|a| a.is_unspecified() || Some(a) == wan) {
        Reach::Wan
    } else if addr.is_loopback() || v4.is_some_and(|a| a.is_loopback()) {
        Reach::Local
    } else {
        Reach::Lan
    }
}

/// Merges sockets into listeners, naming the processes through `owners`
/// (inode -> process names), sorted by port, protocol and address.
pub fn merge(
    sockets: &[Socket],
    owners: &HashMap<u64, BTreeSet<String>>,
    wan: Option<Ipv4Addr>,
) -> Vec<Listener> {
    let mut by_key: BTreeMap<(u16, Proto, IpAddr), BTreeSet<String>> = BTreeMap::new();
    for s in sockets {
        let names = by_key.entry((s.port, s.proto, s.addr)).or_default();
        if let Some(o) = owners.get(&s.inode) {
            names.extend(o.iter().cloned());
        }
    }
    by_key
        .into_iter()
        .map(|((port, proto, address), names)| Listener {
            proto,
            address,
            port,
            processes: names.into_iter().collect(),
            reach: reach(address, wan),
        })
        .collect()
}

/// Socket inode -> names of the processes holding it, from `<root>/[pid]/fd`.
/// Processes that vanish or may not be looked into are skipped.
fn owners(root: &Path, wanted: &BTreeSet<u64>) -> HashMap<u64, BTreeSet<String>> {
    let mut out: HashMap<u64, BTreeSet<String>> = HashMap::new();
    let Ok(procs) = std::fs::read_dir(root) else {
        return out;
    };
    for p in procs.filter_map(Result::ok) {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let mut comm: Option<String> = None;
        for fd in fds.filter_map(Result::ok) {
            let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
                .filter(|i| wanted.contains(i))
            else {
                continue;
            };
            let comm = comm.get_or_insert_with(|| {
                std::fs::read_to_string(p.path().join("comm"))
                    .map(|c| c.trim_end().to_string())
                    .unwrap_or_else(|_| format!("pid {}", name.to_string_lossy()))
            });
            out.entry(inode).or_default().insert(comm.clone());
        }
    }
    out
}

/// Everything listening, read from the procfs at `root` (`/proc`). Blocking
/// file I/O: call it off the async workers.
pub fn collect(root: &Path, wan: Option<Ipv4Addr>) -> Vec<Listener> {
    let mut sockets = Vec::new();
    for (file, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
    ] {
        if let Ok(text) = std::fs::read_to_string(root.join("net").join(file)) {
            sockets.extend(parse_net(&text, proto));
        }
    }
    let wanted: BTreeSet<u64> = sockets
        .iter()
        .map(|s| s.inode)
        .filter(|i| *i != 0)
        .collect();
    merge(&sockets, &owners(root, &wanted), wan)
}

/// How long a reading is reused. Reading /proc/net/tcp walks the kernel's whole socket
/// hash (sized by the RAM, not by what is open), and what listens changes rarely.
const MAX_AGE: Duration = Duration::from_secs(2);

/// The last `collect`, reused for `MAX_AGE` while the WAN address is the same.
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<Reading>>,
}

/// When it was taken, for which WAN address, and what it found.
type Reading = (Instant, Option<Ipv4Addr>, Vec<Listener>);

impl Cache {
    /// `collect(root, wan)`, or a reading at most `MAX_AGE` old. Blocking, as `collect`.
    pub fn get(&self, root: &Path, wan: Option<Ipv4Addr>) -> Vec<Listener> {
        let lock = || self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, w, v)) = &*lock() {
            if at.elapsed() < MAX_AGE && *w == wan {
                return v.clone();
            }
        }
        let v = collect(root, wan);
        *lock() = Some((Instant::now(), wan, v.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As a little-endian machine prints them (every target gatewayd ships for).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0101A8C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0101A8C0:0050 0A01A8C0:C350 01 00000000:00000000 02:000A7B2C 00000000     0        0 1003 2 0000000000000000 20 4 30 10 -1
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000501A8C0:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0101A8C0:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
  101: 0101A8C0:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
  102: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3003 2 0000000000000000 0
  103: 0A00000A:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 3004 2 0000000000000000 0
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_listeners_only() {
        let v = parse_net(TCP, Proto::Tcp);
        assert_eq!(v.len(), 3, "the established connection is not a listener");
        assert_eq!(
            (v[0].addr, v[0].port, v[0].inode),
            (ip("127.0.0.1"), 631, 1001)
        );
        assert_eq!((v[1].addr, v[1].port), (ip("192.168.1.1"), 80));
        assert_eq!((v[2].addr, v[2].port), (ip("0.0.0.0"), 22));
    }

    #[test]
    fn ipv6_words_are_native_endian() {
        let v = parse_net(TCP6, Proto::Tcp);
        assert_eq!((v[0].addr, v[0].port), (ip("::"), 8080));
        assert_eq!((v[1].addr, v[1].port), (ip("::1"), 25));
        assert_eq!(v[2].addr, ip("::ffff:192.168.1.5"));
    }

    #[test]
    fn udp_bound_but_not_connected() {
        let v = parse_net(UDP, Proto::Udp);
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].addr, v[0].port), (ip("192.168.1.1"), 53));
        assert_eq!((v[2].addr, v[2].port), (ip("0.0.0.0"), 67));
        assert!(parse_net("garbage\n\n 0: zz:0035 0 07", Proto::Udp).is_empty());
    }

    #[test]
    fn fd_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn reach_by_bound_address() {
        let wan = Some(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(reach(ip("0.0.0.0"), wan), Reach::Wan);
        assert_eq!(reach(ip("::"), wan), Reach::Wan);
        assert_eq!(reach(ip("203.0.113.7"), wan), Reach::Wan);
        assert_eq!(reach(ip("::ffff:203.0.113.7"), wan), Reach::Wan);
        assert_eq!(reach(ip("192.168.1.1"), wan), Reach::Lan);
        assert_eq!(reach(ip("192.168.1.1"), None), Reach::Lan);
        assert_eq!(reach(ip("127.0.0.1"), wan), Reach::Local);
        assert_eq!(reach(ip("::1"), wan), Reach::Local);
    }

    #[test]
    fn reuseport_sockets_merge_with_their_processes() {
        let udp = parse_net(UDP, Proto::Udp);
        let mut owners: HashMap<u64, BTreeSet<String>> = HashMap::new();
        owners.entry(3001).or_default().insert("gatewayd".into());
        owners.entry(3002).or_default().insert("gatewayd".into());
        let v = merge(&udp, &owners, None);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].port, 53);
        assert_eq!(v[0].processes, vec!["gatewayd".to_string()]);
        assert_eq!(v[0].reach, Reach::Lan);
        assert_eq!(v[1].port, 67);
        assert!(v[1].processes.is_empty());
        assert_eq!(v[1].reach, Reach::Wan);
    }

    #[test]
    fn collect_reads_a_fake_procfs() {
        let root = std::env::temp_dir().join(format!(
            "gh-listeners-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(root.join("net")).unwrap();
        std::fs::write(root.join("net/tcp"), TCP).unwrap();
        std::fs::write(root.join("net/udp"), UDP).unwrap();
        // tcp6 and udp6 absent: IPv6 disabled.
        for (pid, comm, links) in [
            ("1", "init", vec!["socket:[1004]", "/dev/console"]),
            (
                "42",
                "gatewayd",
                vec!["socket:[1002]", "socket:[3001]", "socket:[3002]"],
            ),
            ("43", "gatewayd", vec!["socket:[3001]"]),
        ] {
            let fd = root.join(pid).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            std::fs::write(root.join(pid).join("comm"), format!("{comm}\n")).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, fd.join(i.to_string())).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("self")).unwrap();
        let v = collect(&root, Some(Ipv4Addr::new(203, 0, 113, 7)));
        let row = |port: u16, proto: Proto| {
            v.iter()
                .find(|l| l.port == port && l.proto == proto)
                .unwrap()
        };
        assert_eq!(row(22, Proto::Tcp).processes, vec!["init".to_string()]);
        assert_eq!(row(22, Proto::Tcp).reach, Reach::Wan);
        assert_eq!(row(80, Proto::Tcp).processes, vec!["gatewayd".to_string()]);
        assert_eq!(row(53, Proto::Udp).processes, vec!["gatewayd".to_string()]);
        assert_eq!(row(631, Proto::Tcp).reach, Reach::Local);
        assert!(row(631, Proto::Tcp).processes.is_empty());
        assert_eq!(v.len(), 5);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
