//! gatehouse-init: PID 1 of the Gatehouse appliance.
//!
//! Boot sequence: mounts -> modules -> sysctls -> data partition -> hostname
//! -> network -> services. Then a loop that reaps children, restarts services
//! and turns signals into shutdown (procd's mapping: SIGTERM and Ctrl-Alt-Del
//! reboot, SIGUSR1/SIGUSR2 power off).

use init::health::{self, Observed, Verdict};
use init::supervise::{self, Service, Spec, State};
use init::update_record::{self, BootKind, Last, Store};
use init::{
    bootslot, data, lan_probe, log, modules, mounts, net, rauc, settings, shutdown, sysctl,
};

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::time::{Duration, Instant};

/// One named step of the boot timeline, in seconds since the kernel started.
struct Step(&'static str, f64);

fn write_timeline(steps: &[Step]) {
    let body: Vec<String> = steps
        .iter()
        .map(|Step(name, t)| format!("{{\"step\":\"{name}\",\"t\":{t:.3}}}"))
        .collect();
    let _ = std::fs::create_dir_all("/run/gatehouse");
    let tmp = "/run/gatehouse/boot.json.tmp";
    if std::fs::write(tmp, format!("[{}]\n", body.join(","))).is_ok() {
        let _ = std::fs::rename(tmp, "/run/gatehouse/boot.json");
    }
    let line: Vec<String> = steps
        .iter()
        .map(|Step(n, t)| format!("{n}={t:.2}s"))
        .collect();
    log!("boot timeline: {}", line.join(" "));
}

fn console_tty() -> String {
    // The last console= on the command line is /dev/console; prefer a real tty
    // so the shell gets job control.
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| s.split_whitespace().last().map(|t| format!("/dev/{t}")))
        .unwrap_or_else(|| "/dev/console".into())
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("gatehouse-init must run as PID 1");
        std::process::exit(1);
    }
    let mut steps = vec![Step("kernel", log::since_boot())];
    // The kernel starts init with an almost empty environment; services inherit this.
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
    ] {
        sigs.add(s);
    }
    let _ = sigs.thread_block();
    // Ctrl-Alt-Del becomes SIGINT to us instead of an instant reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);

    mounts::early();
    log!("Gatehouse init {} starting", env!("CARGO_PKG_VERSION"));
    modules::load_fixed_list();
    modules::coldplug();
    steps.push(Step("modules", log::since_boot()));
    sysctl::apply(sysctl::ROUTER);
    data::mount_data();
    data::link_partlabels();
    if let Err(e) = bootslot::mount_esp() {
        log!("bootslot: {e}");
    }
    machine_id();
    // Big temporary files (RAUC's downloads of bundles given as a URL) go to the
    // data partition, not RAM. Every service inherits this.
    let tmp = format!("{}/tmp", update_record::DIR);
    let _ = std::fs::remove_dir_all(&tmp);
    if std::fs::create_dir_all(&tmp).is_ok() {
        std::env::set_var("TMPDIR", &tmp);
    }
    steps.push(Step("mounts", log::since_boot()));
    let settings = settings::load();
    if let Err(e) = nix::unistd::sethostname(&settings.hostname) {
        log!("hostname: {e}");
    }
    net::bring_up(&settings);
    steps.push(Step("network", log::since_boot()));

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let booted = bootslot::booted_slot(&cmdline);
    let store = Store::new(update_record::DIR);
    let kind = match &booted {
        Some(b) => update_record::classify(store.pending(), store.last().as_ref(), b),
        None => BootKind::Normal,
    };
    let mut gate = Gate {
        kind,
        slot: booted.unwrap_or_default(),
        store,
        limit: health::limit_from_cmdline(&cmdline),
        lan: settings.lan_address,
        observed: Observed::default(),
        probe: None,
        last_probe: None,
        rauc_seen: false,
        done: false,
    };
    gate.announce();

    let _ = std::fs::create_dir_all("/run/dbus");
    let mut services = vec![
        Service::new(Spec {
            name: "dbus".into(),
            program: "/usr/bin/dbus-daemon".into(),
            args: vec![
                "--system".into(),
                "--nofork".into(),
                "--nopidfile".into(),
                "--nosyslog".into(),
            ],
            tty: None,
            after: None,
        }),
        Service::new(Spec {
            name: "rauc".into(),
            program: "/usr/bin/rauc".into(),
            args: vec!["service".into()],
            tty: None,
            after: Some("/run/dbus/system_bus_socket".into()),
        }),
        Service::new(Spec {
            name: "gatewayd".into(),
            program: "/usr/sbin/gatewayd".into(),
            args: if settings.failsafe {
                vec!["--no-config".into()]
            } else {
                vec![]
            },
            tty: None,
            after: None,
        }),
        Service::new(Spec {
            name: "console".into(),
            program: "/usr/sbin/gatehouse-console".into(),
            args: vec![],
            tty: Some(console_tty()),
            after: None,
        }),
    ];
    for svc in services.iter_mut() {
        svc.poll_start(Instant::now());
    }
    steps.push(Step("services", log::since_boot()));
    write_timeline(&steps);

    loop {
        if let Some(mode) = gate.step(&services) {
            steps.push(Step("health-failed", log::since_boot()));
            write_timeline(&steps);
            shutdown::run(&mut services, mode);
        }
        if gate.done && !steps.iter().any(|s| s.0 == "healthy") {
            steps.push(Step("healthy", log::since_boot()));
            write_timeline(&steps);
        }
        match wait_signal(&sigs, Duration::from_millis(500)) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                shutdown::run(&mut services, RebootMode::RB_AUTOBOOT)
            }
            Some(Signal::SIGUSR1) | Some(Signal::SIGUSR2) => {
                shutdown::run(&mut services, RebootMode::RB_POWER_OFF)
            }
            _ => {}
        }
        reap(&mut services);
        let now = Instant::now();
        for svc in services.iter_mut() {
            svc.poll_start(now);
        }
        write_services(&services, now);
    }
}

/// A stable machine id on the data partition (/etc/machine-id links to it),
/// which D-Bus wants.
fn machine_id() {
    let path = "/data/machine-id";
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= 32) {
        return;
    }
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most bytes.len() bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        bytes = (log::since_boot().to_bits() as u128 ^ std::process::id() as u128).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Err(e) =
        init::atomic_file::write(std::path::Path::new(path), format!("{hex}\n").as_bytes())
    {
        log!("machine-id: {e}");
    }
}

/// The service whose steady run confirms a normal boot.
const MAIN_SERVICE: &str = "gatewayd";
/// A normal boot counts as good once gatewayd has stayed up this long.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Pause between two rounds of the LAN probe in a trial boot.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Decides when this boot is confirmed to the bootloader (see `health` and
/// `update_record` for the states).
struct Gate {
    kind: BootKind,
    slot: String,
    store: Store,
    limit: Duration,
    lan: std::net::Ipv4Addr,
    observed: Observed,
    probe: Option<std::sync::mpsc::Receiver<Observed>>,
    last_probe: Option<Instant>,
    rauc_seen: bool,
    done: bool,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn running_for(services: &[Service], name: &str) -> Option<Duration> {
    services
        .iter()
        .find(|s| s.spec.name == name)
        .and_then(|s| match s.state {
            State::Running { since, .. } => Some(since.elapsed()),
            State::Waiting { .. } => None,
        })
}

impl Gate {
    fn announce(&mut self) {
        match &self.kind {
            BootKind::Normal => {}
            BootKind::Trial(p) => log!(
                "update: trial boot of {} in slot {} (from {} in slot {}); health limit {} s",
                p.to_version,
                p.to_slot,
                p.from_version,
                p.from_slot,
                self.limit.as_secs()
            ),
            BootKind::RolledBack { pending, recorded } => {
                log!(
                    "update: rolled back to slot {}: the update to {} in slot {} failed",
                    self.slot,
                    pending.to_version,
                    pending.to_slot
                );
                if !recorded {
                    let reason = update_record::silent_failure_reason(pending);
                    if let Err(e) =
                        self.store
                            .set_last(&Last::rolled_back(pending, reason, now_unix()))
                    {
                        log!("update: cannot record the rollback: {e}");
                    }
                }
                self.store.clear_pending();
            }
        }
    }

    /// One look at the boot; returns a reboot when a trial failed.
    fn step(&mut self, services: &[Service]) -> Option<RebootMode> {
        if self.done {
            return None;
        }
        if let BootKind::Trial(p) = self.kind.clone() {
            return self.step_trial(services, &p);
        }
        // Normal (and rolled-back) boots: gatewayd up for a while, and RAUC
        // answering (or given a minute to), as before any update.
        let up = running_for(services, MAIN_SERVICE).is_some_and(|d| d >= HEALTHY_AFTER);
        if !up || !(rauc::ready() || log::since_boot() > 90.0) {
            return None;
        }
        rauc::mark_booted_good(&self.slot);
        if let BootKind::RolledBack { pending, .. } = &self.kind {
            match rauc::mark("bad", &pending.to_slot_name()) {
                Ok(m) => log!("update: slot {} marked bad ({m})", pending.to_slot),
                Err(e) => log!("update: cannot mark slot {} bad: {e}", pending.to_slot),
            }
        }
        self.done = true;
        None
    }

    fn step_trial(
        &mut self,
        services: &[Service],
        p: &update_record::Pending,
    ) -> Option<RebootMode> {
        let o = &mut self.observed;
        o.not_running = services
            .iter()
            .filter(|s| s.spec.tty.is_none() && s.pid().is_none())
            .map(|s| s.spec.name.clone())
            .collect();
        // Once RAUC has answered it stays counted as ready; its process state
        // (restarts, exits) is watched like every other service's.
        if o.not_running.is_empty() && !self.rauc_seen {
            self.rauc_seen = rauc::ready();
            if !self.rauc_seen {
                o.not_running.push("rauc (not on D-Bus)".into());
            }
        }
        o.crash_loop = services
            .iter()
            .filter(|s| s.spec.tty.is_none() && s.restarts >= health::CRASH_LOOP_RESTARTS)
            .map(|s| (s.spec.name.clone(), s.restarts))
            .next();
        if let Some(rx) = &self.probe {
            if let Ok(r) = rx.try_recv() {
                let (nr, cl) = (o.not_running.clone(), o.crash_loop.clone());
                *o = Observed {
                    not_running: nr,
                    crash_loop: cl,
                    ..r
                };
                self.probe = None;
                self.last_probe = Some(Instant::now());
                let failing = health::failing(o);
                if !failing.is_empty() {
                    log!("health: waiting for {}", failing.join("; "));
                }
            }
        }
        let probe_due = self.probe.is_none()
            && running_for(services, MAIN_SERVICE).is_some_and(|d| d >= Duration::from_secs(2))
            && self.last_probe.is_none_or(|t| t.elapsed() >= PROBE_EVERY);
        if probe_due {
            let (tx, rx) = std::sync::mpsc::channel();
            let lan = self.lan;
            std::thread::spawn(move || {
                let mut o = Observed::default();
                lan_probe::observe(net::BRIDGE, lan, net::WAN, &mut o);
                let _ = tx.send(o);
            });
            self.probe = Some(rx);
        }
        let elapsed = Duration::from_secs_f64(log::since_boot());
        match health::decide(&self.observed, elapsed, self.limit) {
            Verdict::Waiting => None,
            Verdict::Good => {
                let t = log::since_boot();
                log!(
                    "health: slot {} healthy after {t:.1} s: DHCP, DNS, UI{} answer",
                    self.slot,
                    if self.observed.wan_cable { ", WAN" } else { "" }
                );
                rauc::mark_booted_good(&self.slot);
                if let Err(e) = self.store.set_last(&Last::good(p, now_unix(), t)) {
                    log!("update: cannot record the result: {e}");
                }
                self.store.clear_pending();
                self.done = true;
                None
            }
            Verdict::Bad(reason) => {
                log!(
                    "health: slot {} failed its trial: {reason}; rolling back",
                    self.slot
                );
                if let Err(e) = self
                    .store
                    .set_last(&Last::rolled_back(p, reason, now_unix()))
                {
                    log!("update: cannot record the failure: {e}");
                }
                rauc::mark_booted_bad(&self.slot);
                self.done = true;
                Some(RebootMode::RB_AUTOBOOT)
            }
        }
    }
}

/// Publishes service states for the recovery console (rewritten each wake;
/// it is a few hundred bytes on tmpfs).
fn write_services(services: &[Service], now: Instant) {
    let text: String = services
        .iter()
        .map(|s| supervise::status_line(s, now) + "\n")
        .collect();
    let tmp = "/run/gatehouse/services.tmp";
    if std::fs::write(tmp, text).is_ok() {
        let _ = std::fs::rename(tmp, "/run/gatehouse/services");
    }
}

/// Waits up to `timeout` for one of the blocked signals in `set`.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait reads a valid sigset and timespec; info may be null.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

/// Reaps every exited child, orphans included, and notes service exits.
fn reap(services: &mut [Service]) {
    loop {
        let (pid, how) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exit {code}")),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("signal {sig}")),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        let now = Instant::now();
        for svc in services.iter_mut() {
            if let State::Running { pid: p, since } = svc.state {
                if p == pid {
                    // Helpers the service left behind (it led its own process
                    // group) must not outlive it and run twice after the restart.
                    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
                    svc.on_exit(since, now);
                    log!(
                        "{} (pid {pid}) ended: {how}; restart in {:?}",
                        svc.spec.name,
                        svc.backoff
                    );
                }
            }
        }
    }
}
