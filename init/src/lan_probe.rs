//! Runs the health checks from the LAN side, as a client would see them.
//!
//! A veth pair joins br-lan; its far end goes into a network namespace of its
//! own where `/usr/lib/gatehouse/lan-probe` (busybox udhcpc, nslookup, nc)
//! asks for a lease, a DNS answer and the admin page. Links are made over
//! netlink (rtnetlink). The probe process is not waited for here: PID 1's loop
//! reaps every child, so its end is seen as EOF on its output.

use crate::health::Observed;
use futures::TryStreamExt;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOST_END: &str = "gh-probe";
const FAR_END: &str = "gh-probe-c";
const SCRIPT: &str = "/usr/lib/gatehouse/lan-probe";
const TIMEOUT: Duration = Duration::from_secs(40);

/// The checks' results, parsed from the probe's "<check> ok|fail: why" lines.
#[derive(Debug, Default, PartialEq)]
pub struct ProbeResult {
    pub dhcp: Option<Result<(), String>>,
    pub dns: Option<Result<(), String>>,
    pub ui: Option<Result<(), String>>,
}

pub fn parse_line(line: &str, r: &mut ProbeResult) {
    let Some((check, rest)) = line.trim().split_once(' ') else {
        return;
    };
    let outcome = if rest == "ok" {
        Ok(())
    } else {
        Err(rest.strip_prefix("fail: ").unwrap_or(rest).to_string())
    };
    match check {
        "dhcp" => r.dhcp = Some(outcome),
        "dns" => r.dns = Some(outcome),
        "ui" => r.ui = Some(outcome),
        _ => {}
    }
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> Result<u32, String> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(format!("no link {name}")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

async fn plumb(bridge: &str, pid: u32) -> Result<(), String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    if let Ok(old) = index_of(&handle, HOST_END).await {
        let _ = handle.link().del(old).execute().await;
    }
    handle
        .link()
        .add()
        .veth(HOST_END.into(), FAR_END.into())
        .execute()
        .await
        .map_err(|e| format!("veth: {e}"))?;
    let far = index_of(&handle, FAR_END).await?;
    handle
        .link()
        .set(far)
        .setns_by_pid(pid)
        .execute()
        .await
        .map_err(|e| format!("move {FAR_END}: {e}"))?;
    let br = index_of(&handle, bridge).await?;
    let host = index_of(&handle, HOST_END).await?;
    handle
        .link()
        .set(host)
        .controller(br)
        .up()
        .execute()
        .await
        .map_err(|e| format!("{HOST_END} into {bridge}: {e}"))
}

async fn unplumb() {
    if let Ok((conn, handle, _)) = rtnetlink::new_connection() {
        tokio::spawn(conn);
        if let Ok(i) = index_of(&handle, HOST_END).await {
            let _ = handle.link().del(i).execute().await;
        }
    }
}

/// One round of the LAN checks through `bridge`, whose address is `lan`.
pub fn run(bridge: &str, lan: Ipv4Addr) -> ProbeResult {
    let mut result = ProbeResult::default();
    let fail_all = |why: String| ProbeResult {
        dhcp: Some(Err(why.clone())),
        dns: Some(Err(why.clone())),
        ui: Some(Err(why)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail_all(format!("probe runtime: {e}")),
    };
    let mut child = match Command::new("unshare")
        .args(["-n", SCRIPT, &lan.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail_all(format!("cannot start {SCRIPT}: {e}")),
    };
    let pid = child.id();
    // The link may only move once the child has its own namespace: moved
    // earlier, it would land in ours and the probe would never see it.
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let entered = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == ours && Instant::now() < entered
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = rt.block_on(plumb(bridge, pid)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::SIGKILL,
        );
        rt.block_on(unplumb());
        return fail_all(format!("probe link: {e}"));
    }
    // Bounded: a hung probe is killed, which ends its output.
    let deadline = Instant::now() + TIMEOUT;
    let watchdog = std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
                return;
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::SIGKILL,
        );
    });
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            parse_line(&line, &mut result);
        }
    }
    let _ = watchdog.join();
    rt.block_on(unplumb());
    result
}

/// The WAN check: a cable (carrier) and, if so, a default route through it.
pub fn wan_state(wan: &str) -> (bool, Option<Result<(), String>>) {
    let carrier = std::fs::read_to_string(format!("/sys/class/net/{wan}/carrier"))
        .is_ok_and(|c| c.trim() == "1");
    if !carrier {
        return (false, None);
    }
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    (true, Some(default_route_via(&routes, wan)))
}

pub fn default_route_via(routes: &str, wan: &str) -> Result<(), String> {
    let found = routes.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[0] == wan && f[1] == "00000000"
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "cable in, but no default route via {wan} (no DHCP lease?)"
        ))
    }
}

/// Fills the probe's and the WAN's parts of `o`.
pub fn observe(bridge: &str, lan: Ipv4Addr, wan: &str, o: &mut Observed) {
    let r = run(bridge, lan);
    o.dhcp = r.dhcp;
    o.dns = r.dns;
    o.ui = r.ui;
    let (cable, state) = wan_state(wan);
    o.wan_cable = cable;
    o.wan = state;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_lines() {
        let mut r = ProbeResult::default();
        for l in [
            "dhcp ok",
            "dns fail: connection timed out",
            "garbage",
            "ui ok\n",
        ] {
            parse_line(l, &mut r);
        }
        assert_eq!(r.dhcp, Some(Ok(())));
        assert_eq!(r.dns, Some(Err("connection timed out".into())));
        assert_eq!(r.ui, Some(Ok(())));
    }

    #[test]
    fn default_route() {
        let t =
            "Iface\tDestination\tGateway\nwan\t00000000\t0100630A\nbr-lan\t0001A8C0\t00000000\n";
        assert!(default_route_via(t, "wan").is_ok());
        assert!(default_route_via(t, "br-lan").is_err());
        assert!(default_route_via("Iface\n", "wan").is_err());
    }
}
