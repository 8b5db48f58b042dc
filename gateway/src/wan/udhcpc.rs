//! WAN DHCP client: supervises busybox `udhcpc` on the WAN interface.
//!
//! udhcpc is small, proven and already in the image, so we drive it rather than
//! write a client. Its hook script configures the interface (busybox `ip`) and
//! then prints one machine-readable line, which we parse into [`WanStatus`].

use super::WanStatus;
use crate::context::Context;
use std::net::Ipv4Addr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

/// Prefix of the hook's report line on udhcpc's stdout.
const TAG: &str = "GATEHOUSE-WAN";

const HOOK: &str = r#"#!/bin/sh
# udhcpc hook, written by gatewayd. Configures the WAN and reports to gatewayd.
case "$1" in
deconfig)
    # After a gatewayd restart the address it had stays until this client has asked for
    # it again: NATed flows keep going. Only the first deconfig is skipped.
    if [ -n "$GATEHOUSE_KEEP_ONCE" ] && rm "$GATEHOUSE_KEEP_ONCE" 2>/dev/null; then
        ip link set dev "$interface" up
        echo "GATEHOUSE-WAN kept"
        exit 0
    fi
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    echo "GATEHOUSE-WAN deconfig"
    ;;
bound|renew)
    # The same address again is left alone: removing it would drop the routes with it.
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-24} "; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
    fi
    if [ -n "$router" ]; then
        set -- $router
        ip route replace default via "$1" dev "$interface"
    fi
    echo "GATEHOUSE-WAN bound ip=$ip mask=${mask:-24} router=$(echo $router | cut -d' ' -f1) dns=$(echo $dns | tr ' ' ',') lease=$lease"
    ;;
leasefail|nak)
    echo "GATEHOUSE-WAN $1"
    ;;
esac
exit 0
"#;

/// One report from the hook.
#[derive(Debug, PartialEq)]
pub enum Event {
    Bound {
        ip: Ipv4Addr,
        prefix_len: u8,
        router: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
    Deconfig,
    Other,
}

/// Parses a hook line; `None` for lines that are udhcpc's own chatter.
pub fn parse_line(line: &str) -> Option<Event> {
    let rest = line.strip_prefix(TAG)?.trim();
    let mut words = rest.split_whitespace();
    match words.next()? {
        "bound" => {
            let mut ip = None;
            let mut prefix_len = 24;
            let mut router = None;
            let mut dns = Vec::new();
            for kv in words {
                let (k, v) = kv.split_once('=')?;
                match k {
                    "ip" => ip = v.parse().ok(),
                    "mask" => prefix_len = v.parse().ok().filter(|m| *m <= 32)?,
                    "router" => router = v.parse().ok(),
                    "dns" => dns = v.split(',').filter_map(|d| d.parse().ok()).collect(),
                    _ => {}
                }
            }
            Some(Event::Bound {
                ip: ip?,
                prefix_len,
                router,
                dns,
            })
        }
        "deconfig" => Some(Event::Deconfig),
        _ => Some(Event::Other),
    }
}

/// Runs udhcpc forever, restarting it with a delay if it exits, and at once
/// when `restart` is notified (the WAN cable came back).
pub async fn run(
    ctx: Context,
    tx: watch::Sender<WanStatus>,
    restart: std::sync::Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let hook = ctx.run_dir.join("udhcpc-hook");
    write_hook(&hook)?;
    let iface = ctx.config.wan.interface.clone();
    // An address on the WAN now is the lease of a gatewayd that just died: ask for it
    // again and keep it meanwhile (see the hook). A later restart (new link) starts fresh.
    let mut keep = crate::nat::interface_ipv4(&iface);
    let keep_marker = ctx.run_dir.join("udhcpc-keep");
    loop {
        let mut cmd = Command::new("busybox");
        cmd.args([
            "udhcpc", "-f", "-t", "5", "-T", "2", "-A", "5", "-i", &iface, "-s",
        ])
        .arg(&hook)
        .args(["-x", &format!("hostname:{}", ctx.config.system.hostname)])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
        match keep.take() {
            Some(addr) if std::fs::write(&keep_marker, b"").is_ok() => {
                eprintln!("wan: keeping {addr} on {iface} while asking for it again");
                cmd.args(["-r", &addr.to_string()])
                    .env("GATEHOUSE_KEEP_ONCE", &keep_marker);
            }
            _ => {
                let _ = std::fs::remove_file(&keep_marker);
            }
        }
        // kill_on_drop does not run when gatewayd is killed outright; this does, so a
        // restarted gatewayd never finds a second client on the WAN.
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wan: cannot start udhcpc: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                continue;
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut restarting = false;
        loop {
            let line = tokio::select! {
                l = lines.next_line() => match l {
                    Ok(Some(line)) => line,
                    _ => break,
                },
                _ = restart.notified() => {
                    // A fresh client: DISCOVER now, not a renew with the old server.
                    let _ = child.kill().await;
                    eprintln!("wan: restarting udhcpc on {iface}");
                    forget_lease(&tx);
                    restarting = true;
                    break;
                }
            };
            match parse_line(&line) {
                Some(Event::Bound {
                    ip,
                    prefix_len,
                    router,
                    dns,
                }) => {
                    eprintln!("wan: {iface} bound {ip}/{prefix_len} router {router:?} dns {dns:?}");
                    tx.send_modify(|s| {
                        if s.address != Some(ip) {
                            s.since = Some(crate::clock::unix_now());
                        }
                        s.address = Some(ip);
                        s.prefix_len = prefix_len;
                        s.gateway = router;
                        s.dns = dns;
                    });
                }
                Some(Event::Deconfig) => {
                    tx.send_modify(|s| {
                        s.address = None;
                        s.gateway = None;
                        s.since = None;
                    });
                }
                Some(Event::Other) => eprintln!("wan: {line}"),
                None => eprintln!("wan: udhcpc: {line}"),
            }
        }
        let status = child.wait().await;
        if restarting {
            continue;
        }
        eprintln!("wan: udhcpc exited ({status:?}); restarting in 2 s");
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = restart.notified() => {}
        }
    }
}

/// The old lease is of no use on a new link: no address until the new one.
fn forget_lease(tx: &watch::Sender<WanStatus>) {
    tx.send_modify(|s| {
        s.address = None;
        s.gateway = None;
        s.since = None;
    });
}

fn write_hook(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, HOOK)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bound() {
        let e = parse_line("GATEHOUSE-WAN bound ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3,1.1.1.1 lease=86400");
        assert_eq!(
            e,
            Some(Event::Bound {
                ip: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                router: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            })
        );
    }

    #[test]
    fn bound_without_router_or_dns() {
        let e = parse_line("GATEHOUSE-WAN bound ip=10.0.2.15 mask=16 router= dns= lease=60");
        assert!(matches!(
            e,
            Some(Event::Bound {
                prefix_len: 16,
                router: None,
                ..
            })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_line("udhcpc: sending discover"), None);
        assert_eq!(parse_line("GATEHOUSE-WAN bound mask=24"), None);
        assert_eq!(parse_line("GATEHOUSE-WAN bound ip=1.2.3.4 mask=99"), None);
        assert_eq!(parse_line("GATEHOUSE-WAN deconfig"), Some(Event::Deconfig));
    }
}
