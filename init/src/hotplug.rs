//! Devices that appear after boot: a USB ethernet adapter, a card in a hotplug
//! slot. The kernel announces them as uevents on a NETLINK_KOBJECT_UEVENT
//! socket, which the main loop drains each round (there is no udev or mdev in
//! the image). A device with a modalias gets its driver loaded, as coldplug does
//! at boot; a new ethernet port then gets the role the boot's rule gives it
//! (`net::late_role`).
//!
//! The socket opens once boot-time coldplug is done: the devices present at
//! boot are coldplug's, and loading their drivers again would only slow the boot.

use crate::log;
use crate::settings::Settings;
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// The kernel's own multicast group (udevd re-broadcasts on group 2).
const KERNEL_GROUP: u32 = 1;

/// One kernel uevent, the fields used here.
#[derive(Debug, Default, PartialEq)]
pub struct Uevent {
    pub action: String,
    pub subsystem: String,
    pub modalias: Option<String>,
    /// For SUBSYSTEM=net: the link's name.
    pub interface: Option<String>,
}

/// Parses a kernel uevent: "ACTION@DEVPATH" then NUL-separated KEY=VALUE
/// pairs. Anything else (udevd's "libudev" messages) is None.
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    let mut parts = msg.split(|&b| b == 0).filter(|p| !p.is_empty());
    let head = std::str::from_utf8(parts.next()?).ok()?;
    let (action, _devpath) = head.split_once('@')?;
    let mut ev = Uevent {
        action: action.to_string(),
        ..Default::default()
    };
    for p in parts {
        let Ok(kv) = std::str::from_utf8(p) else {
            continue;
        };
        match kv.split_once('=') {
            Some(("SUBSYSTEM", v)) => ev.subsystem = v.to_string(),
            Some(("MODALIAS", v)) if !v.is_empty() => ev.modalias = Some(v.to_string()),
            Some(("INTERFACE", v)) if !v.is_empty() => ev.interface = Some(v.to_string()),
            _ => {}
        }
    }
    Some(ev)
}

/// What a round of events asks for: the modaliases to load drivers for, and
/// the network links that appeared, each once and in order.
pub fn wanted(events: &[Uevent]) -> (Vec<&str>, Vec<&str>) {
    let mut aliases: Vec<&str> = Vec::new();
    let mut links: Vec<&str> = Vec::new();
    for ev in events.iter().filter(|e| e.action == "add") {
        if let Some(m) = ev.modalias.as_deref() {
            if !aliases.contains(&m) {
                aliases.push(m);
            }
        }
        if ev.subsystem == "net" {
            if let Some(i) = ev.interface.as_deref() {
                if !links.contains(&i) {
                    links.push(i);
                }
            }
        }
    }
    (aliases, links)
}

pub struct Uevents {
    fd: OwnedFd,
}

impl Uevents {
    pub fn open() -> Option<Self> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            socket::SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .and_then(|fd| {
            socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP))?;
            Ok(fd)
        });
        match fd {
            Ok(fd) => Some(Self { fd }),
            Err(e) => {
                log!("hotplug: uevent socket: {e}; devices plugged in later are not handled");
                None
            }
        }
    }

    /// The socket, for the main loop to wait on: a device's arrival wakes it.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The events waiting on the socket.
    pub fn drain(&self) -> Vec<Uevent> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break,
                Ok(n) => out.extend(parse(&buf[..n])),
                Err(nix::errno::Errno::EINTR) => continue,
                // The buffer overflowed while we were busy: some events are lost.
                Err(nix::errno::Errno::ENOBUFS) => {
                    log!("hotplug: uevents lost (socket buffer full)");
                    continue;
                }
                Err(_) => break,
            }
        }
        out
    }
}

/// Acts on a round of events: one modprobe for the new modaliases, started and
/// not waited for (the main loop reaps it; a driver's probe can be slow), and a
/// role for each new ethernet port.
pub fn handle(events: &[Uevent], settings: &Settings) {
    let (aliases, links) = wanted(events);
    if !aliases.is_empty() {
        let spawned = Command::new("/bin/modprobe")
            .args(["-a", "-q"])
            .args(&aliases)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            log!("hotplug: modprobe: {e}");
        }
    }
    for link in links {
        crate::net::adopt(link, settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in fields {
            v.extend_from_slice(f.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_a_kernel_uevent() {
        let m = msg(&[
            "add@/devices/pci0000:00/0000:00:1c.0/0000:01:00.0",
            "ACTION=add",
            "DEVPATH=/devices/pci0000:00/0000:00:1c.0/0000:01:00.0",
            "SUBSYSTEM=pci",
            "MODALIAS=pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            "SEQNUM=1234",
        ]);
        let ev = parse(&m).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem, "pci");
        assert_eq!(
            ev.modalias.as_deref(),
            Some("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00")
        );
        assert_eq!(ev.interface, None);
    }

    #[test]
    fn rejects_what_is_not_a_kernel_uevent() {
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"\xff\xfe@x\0"), None);
    }

    #[test]
    fn a_round_wants_each_alias_and_link_once() {
        let evs = vec![
            Uevent {
                action: "add".into(),
                subsystem: "pci".into(),
                modalias: Some("pci:a".into()),
                interface: None,
            },
            Uevent {
                action: "add".into(),
                subsystem: "pci".into(),
                modalias: Some("pci:a".into()),
                interface: None,
            },
            Uevent {
                action: "add".into(),
                subsystem: "net".into(),
                modalias: None,
                interface: Some("eth2".into()),
            },
            // Removals and changes ask for nothing.
            Uevent {
                action: "remove".into(),
                subsystem: "net".into(),
                modalias: None,
                interface: Some("eth3".into()),
            },
            Uevent {
                action: "change".into(),
                subsystem: "usb".into(),
                modalias: Some("usb:b".into()),
                interface: None,
            },
        ];
        let (aliases, links) = wanted(&evs);
        assert_eq!(aliases, ["pci:a"]);
        assert_eq!(links, ["eth2"]);
    }
}
