//! The service table: what PID 1 starts and supervises, read from a TOML file
//! in the image (`/etc/gatehouse/services.toml`) plus optional owner-added
//! services on the data partition (`/data/gatehouse/services.toml`).
//!
//! Parsing and validation are pure: unknown keys, unknown dependencies, cycles
//! and duplicate names are errors with the file and the service named, and
//! the result is already in dependency order.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub const IMAGE_FILE: &str = "/etc/gatehouse/services.toml";
pub const DATA_FILE: &str = "/data/gatehouse/services.toml";

/// When a started service counts as ready, so that its dependents may start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Ready {
    /// As soon as the process runs.
    Started,
    /// The service writes a line to the file descriptor named in `$NOTIFY_FD`.
    Notify,
    /// A TCP connection to this address succeeds.
    Tcp(std::net::SocketAddr),
    /// A socket is bound to this UDP port (looked up in /proc/net/udp*;
    /// probing with a datagram would need a protocol-specific question).
    Udp(u16),
    /// This path exists (e.g. a daemon's control socket).
    Path(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// Replaces `args` when booted with `gatehouse.failsafe`.
    pub failsafe_args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Run as this user (name from /etc/passwd); root when unset.
    pub user: Option<String>,
    /// Services that must be ready before this one starts.
    pub after: Vec<String>,
    /// Start only while this path exists (e.g. a generated config file).
    pub condition: Option<String>,
    pub ready: Ready,
    /// Attach to a terminal instead of capturing output ("console" = the
    /// active system console).
    pub tty: Option<String>,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A run this long resets the backoff and the crash-loop count.
    pub reset_after: Duration,
    /// This many quick exits in a row is a crash loop: reported, and the
    /// service is held off for `crash_hold` before the next try (0: never).
    pub crash_limit: u32,
    pub crash_hold: Duration,
    /// Copy the service's output to the console as well as its log ring.
    pub console_log: bool,
    /// Counts for the health of a trial boot (false: optional, e.g. the WLAN
    /// access point, whose trouble must never roll an update back).
    pub essential: bool,
    /// CPU priority, -20..19 (0 by default): services that may come up slower than the
    /// LAN's (the update service) yield to it while a boot's services start together.
    pub nice: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    command: Vec<String>,
    failsafe_command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    user: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    condition: Option<String>,
    ready: Option<Ready>,
    tty: Option<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<f64>,
    backoff_min: Option<f64>,
    backoff_max: Option<f64>,
    reset_after: Option<f64>,
    crash_limit: Option<u32>,
    crash_hold: Option<f64>,
    console_log: Option<bool>,
    essential: Option<bool>,
    nice: Option<i32>,
}

fn secs(v: Option<f64>, default: f64, what: &str, name: &str) -> Result<Duration, String> {
    let v = v.unwrap_or(default);
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!(
            "service {name}: {what} = {v} is out of range 0..86400 s"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn signal(v: Option<&str>, name: &str) -> Result<nix::sys::signal::Signal, String> {
    let s = v.unwrap_or("TERM");
    let full = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    full.parse()
        .map_err(|_| format!("service {name}: unknown stop_signal {s:?}"))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn to_spec(e: Entry) -> Result<Spec, String> {
    let name = e.name;
    if !valid_name(&name) {
        return Err(format!(
            "service name {name:?}: use 1-32 letters, digits, '-' or '_'"
        ));
    }
    let split = |cmd: Vec<String>, key: &str| -> Result<(String, Vec<String>), String> {
        let mut it = cmd.into_iter();
        match it.next() {
            Some(p) if p.starts_with('/') => Ok((p, it.collect())),
            Some(p) => Err(format!(
                "service {name}: {key} must start with an absolute path, not {p:?}"
            )),
            None => Err(format!("service {name}: {key} is empty")),
        }
    };
    let (program, args) = split(e.command, "command")?;
    let failsafe_args = match e.failsafe_command {
        Some(c) => {
            let (p, a) = split(c, "failsafe_command")?;
            if p != program {
                return Err(format!(
                    "service {name}: failsafe_command must run the same program as command"
                ));
            }
            Some(a)
        }
        None => None,
    };
    let backoff_min = secs(e.backoff_min, 1.0, "backoff_min", &name)?;
    let backoff_max = secs(e.backoff_max, 30.0, "backoff_max", &name)?;
    if backoff_min.is_zero() || backoff_max < backoff_min {
        return Err(format!(
            "service {name}: need 0 < backoff_min <= backoff_max"
        ));
    }
    let nice = e.nice.unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(format!(
            "service {name}: nice = {nice} is out of range -20..19"
        ));
    }
    Ok(Spec {
        nice,
        program,
        args,
        failsafe_args,
        env: e.env,
        user: e.user,
        after: e.after,
        condition: e.condition,
        ready: e.ready.unwrap_or(Ready::Started),
        tty: e.tty,
        stop_signal: signal(e.stop_signal.as_deref(), &name)?,
        stop_timeout: secs(e.stop_timeout, 5.0, "stop_timeout", &name)?,
        backoff_min,
        backoff_max,
        reset_after: secs(e.reset_after, 60.0, "reset_after", &name)?,
        crash_limit: e.crash_limit.unwrap_or(5),
        crash_hold: secs(e.crash_hold, 300.0, "crash_hold", &name)?,
        console_log: e.console_log.unwrap_or(true),
        essential: e.essential.unwrap_or(true),
        name,
    })
}

/// Parses one services file (`origin` names it in errors).
pub fn parse(text: &str, origin: &str) -> Result<Vec<Spec>, String> {
    // One line per error: it is logged, and the console shows one line each.
    let f: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            1 + text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        });
        match line {
            Some(l) => format!("{origin}: line {l}: {}", e.message().trim()),
            None => format!("{origin}: {}", e.message().trim()),
        }
    })?;
    f.service
        .into_iter()
        .map(to_spec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{origin}: {e}"))
}

/// Checks the combined table and puts it in dependency order (a service
/// after everything it names in `after`; otherwise file order is kept).
pub fn order(specs: Vec<Spec>) -> Result<Vec<Spec>, String> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("service {n} is declared twice"));
        }
    }
    for s in &specs {
        for d in &s.after {
            if !names.contains(&d.as_str()) {
                return Err(format!(
                    "service {}: after names unknown service {d}",
                    s.name
                ));
            }
        }
    }
    let mut placed: Vec<Spec> = Vec::with_capacity(specs.len());
    let mut left = specs;
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|s| s.after.iter().all(|d| placed.iter().any(|p| &p.name == d)));
        match ready {
            Some(i) => placed.push(left.remove(i)),
            None => {
                let cycle: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "services {} depend on each other in a cycle",
                    cycle.join(", ")
                ));
            }
        }
    }
    Ok(placed)
}

/// Reads the image's table and the owner's additions. A broken owner file is
/// reported and skipped; a broken image file falls back to `fallback` so the
/// recovery console still comes up.
pub fn load(failsafe: bool, fallback: &str) -> (Vec<Spec>, Vec<String>) {
    let mut errors = vec![];
    let image = std::fs::read_to_string(IMAGE_FILE)
        .map_err(|e| format!("{IMAGE_FILE}: {e}"))
        .and_then(|t| parse(&t, IMAGE_FILE));
    let mut specs = match image {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            parse(fallback, "built-in services").unwrap_or_default()
        }
    };
    if !failsafe {
        if let Ok(text) = std::fs::read_to_string(DATA_FILE) {
            match parse(&text, DATA_FILE) {
                Ok(extra) => {
                    let mut all = specs.clone();
                    all.extend(extra);
                    match order(all.clone()) {
                        Ok(_) => specs = all,
                        Err(e) => errors.push(format!("{DATA_FILE}: {e}; ignored")),
                    }
                }
                Err(e) => errors.push(format!("{e}; ignored")),
            }
        }
    }
    match order(specs.clone()) {
        Ok(s) => (s, errors),
        Err(e) => {
            errors.push(format!("{IMAGE_FILE}: {e}"));
            let s = parse(fallback, "built-in services").unwrap_or_default();
            (order(s).unwrap_or_default(), errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
        [[service]]
        name = "web"
        command = ["/usr/sbin/web", "--port", "80"]
        after = ["bus"]
        ready = { tcp = "127.0.0.1:80" }
        stop_signal = "INT"
        stop_timeout = 2.5
        env = { RUST_LOG = "info" }

        [[service]]
        name = "bus"
        command = ["/usr/bin/bus"]
        ready = { path = "/run/bus.sock" }
        failsafe_command = ["/usr/bin/bus", "--safe"]
    "#;

    #[test]
    fn parses_and_orders_by_dependency() {
        let specs = order(parse(TABLE, "t").unwrap()).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bus", "web"]);
        let web = &specs[1];
        assert_eq!(web.args, ["--port", "80"]);
        assert_eq!(web.ready, Ready::Tcp("127.0.0.1:80".parse().unwrap()));
        assert_eq!(web.stop_signal, nix::sys::signal::Signal::SIGINT);
        assert_eq!(web.stop_timeout, Duration::from_millis(2500));
        assert_eq!(web.env["RUST_LOG"], "info");
        assert_eq!(
            specs[0].failsafe_args.as_deref(),
            Some(&["--safe".to_string()][..])
        );
        assert_eq!(specs[0].crash_limit, 5);
    }

    #[test]
    fn rejects_what_would_misbehave_at_runtime() {
        let bad = [
            ("[[service]]\nname = \"a\"\ncommand = []", "empty"),
            ("[[service]]\nname = \"a\"\ncommand = [\"sh\"]", "absolute path"),
            ("[[service]]\nname = \"a b\"\ncommand = [\"/x\"]", "letters"),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\nstop_signal = \"NOPE\"",
                "stop_signal",
            ),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\nrestart = 1",
                "line 4: unknown field `restart`",
            ),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\nbackoff_min = 5.0\nbackoff_max = 1.0",
                "backoff_min",
            ),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\nnice = 20",
                "nice = 20 is out of range",
            ),
        ];
        for (text, want) in bad {
            let e = parse(text, "f.toml").unwrap_err();
            assert!(
                e.contains(want) && e.starts_with("f.toml") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn the_image_table_parses_and_orders() {
        let text = include_str!("../../overlays/etc/gatehouse/services.toml");
        let specs = order(parse(text, "services.toml").unwrap()).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        for n in ["dbus", "rauc", "gatewayd", "hostapd", "console"] {
            assert!(names.contains(&n), "{names:?}");
        }
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("dbus") < pos("rauc"));
        let console = &specs[pos("console")];
        assert_eq!(
            (console.crash_limit, console.tty.as_deref()),
            (0, Some("console"))
        );
        assert!(!specs[pos("hostapd")].essential && specs[pos("gatewayd")].essential);
        // The update service yields to the LAN's at boot, but never waits for it: a broken
        // gatewayd must not keep the console from installing a fixed bundle.
        assert_eq!(
            (specs[pos("rauc")].nice, specs[pos("gatewayd")].nice),
            (10, 0)
        );
        assert!(specs[pos("dbus")].after.is_empty() && specs[pos("rauc")].after == ["dbus"]);
    }

    #[test]
    fn reports_unknown_dependencies_duplicates_and_cycles() {
        let one = |n: &str, after: &[&str]| {
            let mut s = parse(
                &format!("[[service]]\nname = \"{n}\"\ncommand = [\"/x\"]"),
                "t",
            )
            .unwrap()
            .remove(0);
            s.after = after.iter().map(|a| a.to_string()).collect();
            s
        };
        let e = order(vec![one("a", &["zz"])]).unwrap_err();
        assert!(e.contains("unknown service zz"), "{e}");
        let e = order(vec![one("a", &[]), one("a", &[])]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = order(vec![one("a", &["b"]), one("b", &["a"]), one("c", &[])]).unwrap_err();
        assert!(e.contains("a, b") && e.contains("cycle"), "{e}");
    }
}
