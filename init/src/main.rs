//! gatehouse-init: PID 1 of the Gatehouse appliance.
//!
//! Boot sequence: mounts -> modules -> sysctls -> data partition -> clock and
//! entropy -> hostname -> network -> services (from services.toml) -> watchdog.
//! Then a loop that pets the watchdog, reaps children, drives the supervisor
//! and turns signals into actions (procd's mapping: SIGTERM and Ctrl-Alt-Del
//! reboot, SIGUSR1/SIGUSR2 power off; SIGHUP reloads the service table).

use init::health::{self, Observed, Verdict};
use init::logring::{self, Rings};
use init::process::{self, Procs};
use init::services;
use init::supervise::{self, Service, Supervisor};
use init::update_record::{self, BootKind, Last, Store};
use init::watchdog::{self, Watchdog};
use init::{
    bootslot, clock, data, hotplug, lan_probe, log, modules, mounts, net, prefetch, priority, rauc,
    settings, shutdown, sysctl, wake, wlan,
};

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{SigSet, Signal};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONSOLE_PROGRAM: &str = "/usr/sbin/gatehouse-console";

/// Used when the image's services.toml is unreadable: enough to serve the
/// LAN and to get in over the console.
const FALLBACK_SERVICES: &str = r#"
[[service]]
name = "gatewayd"
command = ["/usr/sbin/gatewayd"]
failsafe_command = ["/usr/sbin/gatewayd", "--no-config"]
ready = "notify"
[[service]]
name = "console"
command = ["/usr/sbin/gatehouse-console"]
tty = "console"
crash_limit = 0
"#;

/// One named step of the boot timeline, in seconds since the kernel started.
struct Step(String, f64);

fn write_timeline(steps: &[Step]) {
    // In the order they happened: steps on threads (coldplug, the module list) end out of
    // the order they are recorded in.
    let mut steps: Vec<&Step> = steps.iter().collect();
    steps.sort_by(|a, b| a.1.total_cmp(&b.1));
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

fn step(steps: &mut Vec<Step>, name: &str) {
    steps.push(Step(name.to_string(), log::since_boot()));
}

fn console_tty() -> String {
    // The last console= on the command line is /dev/console; prefer a real tty
    // so the shell gets job control.
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| s.split_whitespace().last().map(|t| format!("/dev/{t}")))
        .unwrap_or_else(|| "/dev/console".into())
}

fn load_services(failsafe: bool) -> Vec<services::Spec> {
    let (specs, errors) = services::load(failsafe, FALLBACK_SERVICES);
    for e in errors {
        log!("services: {e}");
    }
    specs
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("gatehouse-init must run as PID 1");
        std::process::exit(1);
    }
    let steps = vec![Step("kernel".into(), log::since_boot())];
    // The kernel starts init with an almost empty environment; services inherit this.
    // (Set here, before any thread: the environment is not for changing under threads.)
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // Big temporary files (RAUC's downloads of bundles given as a URL) go to the data
    // partition, not RAM; the directory is made once /data is mounted.
    std::env::set_var("TMPDIR", tmp_dir());
    // Services start while the image's modules still load; this names the file that
    // says they are in (gatewayd's NAT waits for it).
    std::env::set_var(modules::READY_ENV, modules::READY_FILE);
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
    let rings = Arc::new(Rings::new(logring::RING_BYTES));
    log::set_rings(rings.clone());
    log!("Gatehouse init {} starting", env!("CARGO_PKG_VERSION"));
    if let Err(e) = logring::serve(rings.clone(), logring::SOCKET) {
        log!("log socket {}: {e}", logring::SOCKET);
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    // PID 1 must not exit: a panic (already printed by the default hook)
    // ends in the recovery console, or in a fallback reboot on a trial boot.
    let terminals = process::Terminals::default();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot_and_run(&sigs, rings.clone(), terminals.clone(), &cmdline, steps)
    }));
    if let Err(e) = run {
        let msg = e
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| e.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        rescue(&sigs, rings, terminals, &cmdline, msg);
    }
}

/// The `gatehouse.inject=` fault-injection knob (QEMU tests only), or "".
fn inject_knob(cmdline: &str) -> &str {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gatehouse.inject="))
        .unwrap_or_default()
}

/// After a fatal error: a trial boot reboots at once so the bootloader falls
/// back; otherwise running services are left alone (the LAN keeps working)
/// and only the recovery console is supervised, with the watchdog still fed.
fn rescue(
    sigs: &SigSet,
    rings: Arc<Rings>,
    terminals: process::Terminals,
    cmdline: &str,
    why: &str,
) -> ! {
    log!("init: fatal error: {why}");
    let slot = bootslot::booted_slot(cmdline);
    let store = Store::new(update_record::DIR);
    process::kill_terminals(&terminals, CONSOLE_PROGRAM);
    let mut host = Procs::new(rings, console_tty(), false, terminals);
    let mut wd = watchdog::timeout_from_cmdline(cmdline).and_then(Watchdog::open);
    // A trial is known from /data's update record or, when the error came
    // before /data was mounted (or with no record: a slot switch), from GRUB's
    // flag for a slot other than the confirmed one, unless this boot has been
    // confirmed since (the flag stays on the command line).
    let pending = slot.as_ref().and_then(|b| {
        match update_record::classify(store.pending(), store.last().as_ref(), b) {
            BootKind::Trial(p) => Some(p),
            _ => None,
        }
    });
    let flagged = bootslot::still_on_trial(cmdline, slot.as_deref(), bootslot::confirmed);
    let trial = pending.is_some() || flagged;
    let console: Vec<_> = services::parse(FALLBACK_SERVICES, "built-in services")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.tty.is_some())
        .collect();
    let mut sup = Supervisor::new(console);
    if trial {
        log!("init: this is a trial boot; rebooting so the bootloader falls back");
        // The slot we fall back to reports why; without this it could only
        // say that the new slot never reported healthy (as it does when /data
        // was not mounted yet).
        if let Some(p) = pending {
            let reason = format!("init hit a fatal error: {why}");
            if let Err(e) = store.set_last(&Last::rolled_back(&p, reason, now_unix())) {
                log!("update: cannot record the failure: {e}");
            }
        }
        if let Some(b) = &slot {
            rauc::mark_booted_bad(b);
        }
        shutdown::run(&mut sup, &mut host, &mut wd, RebootMode::RB_AUTOBOOT);
    }
    log!("init: only the recovery console is supervised now; reboot from its menu");
    loop {
        if let Some(w) = wd.as_mut() {
            w.pet();
        }
        match wake::wait_signal(sigs, Duration::from_millis(500)) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                shutdown::run(&mut sup, &mut host, &mut wd, RebootMode::RB_AUTOBOOT)
            }
            Some(Signal::SIGUSR1) | Some(Signal::SIGUSR2) => {
                shutdown::run(&mut sup, &mut host, &mut wd, RebootMode::RB_POWER_OFF)
            }
            _ => {}
        }
        process::reap(&mut sup, &mut host);
        sup.tick(Instant::now(), &mut host);
    }
}

/// The boot sequence, then the supervision loop; never returns.
fn boot_and_run(
    sigs: &SigSet,
    rings: Arc<Rings>,
    terminals: process::Terminals,
    cmdline: &str,
    mut steps: Vec<Step>,
) {
    // Modules load while /data is checked and mounted, and the image's list
    // while the network comes up. Only the filesystems those mounts need come
    // first (the initramfs has usually loaded them); the network waits for the
    // NIC drivers and the bridge, the services for the rest.
    modules::load(modules::FILESYSTEMS);
    // Fault injection for the QEMU test of a fatal error before /data is
    // mounted; inert unless GRUB flagged this boot as a trial.
    if inject_knob(cmdline) == "panic-before-data" && bootslot::trial_from_cmdline(cmdline) {
        panic!("gatehouse.inject=panic-before-data on the kernel command line");
    }
    let (coldplugged, coldplug_done) = std::sync::mpsc::channel();
    let loading = std::thread::spawn(move || {
        // The bridge beside the hardware drivers: the kernel loads modules in parallel,
        // and the network needs both.
        let bridge = std::thread::spawn(|| modules::load(modules::NETWORK));
        modules::coldplug();
        let _ = bridge.join();
        let _ = coldplugged.send(log::since_boot());
        // From here on nothing waits for this thread, while gatewayd starts beside it.
        if let Err(e) = priority::nice_this_thread(10) {
            log!("modules: cannot lower the loader's priority: {e}");
        }
        modules::load_fixed_list();
        log::since_boot()
    });
    prefetch::start(services::IMAGE_FILE);
    let mut to_grow = data::mount_data();
    data::link_partlabels();
    if let Err(e) = bootslot::mount_esp() {
        log!("bootslot: {e}");
    }
    clock::at_boot();
    machine_id();
    step(&mut steps, "mounts");
    let t = coldplug_done.recv().unwrap_or_else(|_| log::since_boot());
    steps.push(Step("coldplug".into(), t));
    // From here on, devices that appear are hotplug's (coldplug had the others).
    let uevents = hotplug::Uevents::open();
    // Before the network: rp_filter's default applies to links made later.
    sysctl::apply(sysctl::ROUTER);
    let settings = settings::load();
    if let Err(e) = nix::unistd::sethostname(&settings.hostname) {
        log!("hostname: {e}");
    }
    net::bring_up(&settings);
    step(&mut steps, "network");
    // The services start without waiting for the rest of the module list (see `Loading`).
    let mut loading = Loading(Some(loading));
    let tmp = tmp_dir();
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        log!("{tmp}: {e}");
    }

    let booted = bootslot::booted_slot(cmdline);
    let store = Store::new(update_record::DIR);
    let kind = match &booted {
        Some(b) => update_record::classify(store.pending(), store.last().as_ref(), b),
        None => BootKind::Normal,
    };
    let mut gate = Gate {
        kind,
        slot: booted.unwrap_or_default(),
        store,
        limit: health::limit_from_cmdline(cmdline),
        lan: settings.lan_address,
        modules_loaded: false,
        observed: Observed::default(),
        probe: None,
        last_probe: None,
        rauc_seen: false,
        done: false,
    };
    gate.announce();

    let _ = std::fs::create_dir_all("/run/dbus");
    let mut config_watch = wlan::FileWatch::new(settings::CONFIG);
    let mut wlan_cfg = wlan::load(settings.failsafe);
    let mut wlan_state = wlan::WlanState::default();
    wlan::poll(&wlan_cfg, &mut wlan_state);
    let mut host = Procs::new(rings, console_tty(), settings.failsafe, terminals);
    let mut sup = Supervisor::new(load_services(settings.failsafe));
    let mut services_text = String::new();
    sup.tick(Instant::now(), &mut host);
    step(&mut steps, "services");
    write_timeline(&steps);
    let mut wd = watchdog::timeout_from_cmdline(cmdline).and_then(Watchdog::open);
    let waker = wake::Waker::new(sigs);
    // Fault-injection knobs for the QEMU tests of the fatal-error path:
    // "panic" once a boot is healthy, "panic-on-trial" as soon as the services
    // of a trial boot are started (it stays inert on every other boot, so the
    // slot fallen back to boots with the same command line).
    let inject = inject_knob(cmdline);

    loop {
        if inject == "panic" && gate.done {
            panic!("gatehouse.inject=panic on the kernel command line");
        }
        if inject == "panic-on-trial" && matches!(gate.kind, BootKind::Trial(_)) && !gate.done {
            panic!("gatehouse.inject=panic-on-trial on the kernel command line");
        }
        if let Some(w) = wd.as_mut() {
            w.pet();
        }
        // The data partition grows once the LAN is served (or half a minute on, if
        // gatewayd never gets ready), beside the services at the lowest priority.
        let served = sup
            .get(MAIN_SERVICE)
            .is_some_and(|s| s.first_ready.is_some());
        if to_grow.is_some() && (served || log::since_boot() > 30.0) {
            grow_data(to_grow.take());
        }
        if let Some(t) = loading.finished() {
            steps.push(Step("modules".into(), t));
            write_timeline(&steps);
            gate.modules_loaded = true;
        }
        if let Some(mode) = gate.step(&sup.services) {
            step(&mut steps, "health-failed");
            write_timeline(&steps);
            shutdown::run(&mut sup, &mut host, &mut wd, mode);
        }
        let mut changed = false;
        // Services that become ready during boot are milestones of it.
        // Each at the moment the supervisor saw it, not at this round's (later) look.
        for svc in sup.services.iter().filter(|_| !gate.done) {
            let name = format!("{}-ready", svc.spec.name);
            if let Some(at) = svc.first_ready {
                if !steps.iter().any(|s| s.0 == name) {
                    let ago = Instant::now().saturating_duration_since(at).as_secs_f64();
                    steps.push(Step(name, log::since_boot() - ago));
                    changed = true;
                }
            }
        }
        if gate.done && !steps.iter().any(|s| s.0 == "healthy") {
            step(&mut steps, "healthy");
            changed = true;
        }
        if changed {
            write_timeline(&steps);
        }
        // Quicker rounds while a service is getting ready: its readiness is a
        // boot milestone (gatewayd's is DHCP answering).
        let now = Instant::now();
        let pace = if sup.awaiting_ready(now, Duration::from_secs(30)) {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(500)
        };
        // A service due to restart sooner (gatewayd after a crash: its flows are waiting)
        // is started on time, not on the next round.
        let pace = sup
            .next_due()
            .map_or(pace, |t| pace.min(t.saturating_duration_since(now)));
        let signal = {
            let mut fds = host.notify_fds();
            fds.extend(uevents.as_ref().map(|u| u.fd()));
            waker.wait(&fds, pace)
        };
        host.read_notify();
        match signal {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                shutdown::run(&mut sup, &mut host, &mut wd, RebootMode::RB_AUTOBOOT)
            }
            Some(Signal::SIGUSR1) | Some(Signal::SIGUSR2) => {
                shutdown::run(&mut sup, &mut host, &mut wd, RebootMode::RB_POWER_OFF)
            }
            Some(Signal::SIGHUP) => {
                log!("services: reloading the service table");
                sup.reload(load_services(settings.failsafe), Instant::now(), &mut host);
            }
            _ => {}
        }
        process::reap(&mut sup, &mut host);
        if let Some(u) = &uevents {
            let events = u.drain();
            if !events.is_empty() {
                hotplug::handle(&events, &settings);
            }
        }
        let now = Instant::now();
        // `[wlan]` edits apply live: the access point follows the file.
        if config_watch.changed() {
            let cfg = wlan::load(settings.failsafe);
            if cfg != wlan_cfg {
                log!("wlan: the settings changed; applying them");
                wlan_state.new_settings(&wlan_cfg, &cfg);
                wlan_cfg = cfg;
            }
        }
        // Radios come and go (USB dongles); hostapd reads its file only at start.
        if wlan::poll(&wlan_cfg, &mut wlan_state) == wlan::Change::RestartHostapd {
            sup.restart("hostapd", now, &mut host);
        }
        sup.tick(now, &mut host);
        write_services(&sup.services, now, &mut services_text);
    }
}

/// `data::grow` on a thread of its own at the lowest CPU priority.
fn grow_data(dev: Option<String>) {
    let Some(dev) = dev else { return };
    let spawned = std::thread::Builder::new()
        .name("grow-data".into())
        .spawn(move || {
            let _ = priority::nice_this_thread(19);
            data::grow(&dev);
        });
    if let Err(e) = spawned {
        log!("data: cannot start growing: {e}");
    }
}

/// Where services keep big temporary files.
fn tmp_dir() -> String {
    format!("{}/tmp", update_record::DIR)
}

/// The image's module list, loading on its own thread while the services start: DHCP,
/// DNS and the UI need none of it, and it is the longest step of a boot.
struct Loading(Option<std::thread::JoinHandle<f64>>);

impl Loading {
    /// Once, when the list is in: the time it was done. Applies the settings that exist
    /// only then and tells the services (the file in `modules::READY_ENV`).
    fn finished(&mut self) -> Option<f64> {
        let handle = self.0.take_if(|h| h.is_finished())?;
        let t = handle.join().unwrap_or_else(|_| log::since_boot());
        sysctl::apply(sysctl::CONNTRACK);
        modules::announce_ready();
        Some(t)
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
    /// The health probe's veth pair is made only once the module list is in (veth is on it).
    modules_loaded: bool,
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
        .and_then(|s| s.running_for(Instant::now()))
}

/// Services a trial boot needs running: essential ones (not the optional
/// WLAN access point), not the console menus (terminals), and not those
/// whose condition is unmet.
fn expected(s: &Service) -> bool {
    s.spec.essential
        && s.spec.tty.is_none()
        && s.spec
            .condition
            .as_deref()
            .is_none_or(|p| std::path::Path::new(p).exists())
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
            .filter(|s| expected(s) && s.pid().is_none())
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
            .filter(|s| expected(s) && s.restarts >= health::CRASH_LOOP_RESTARTS)
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
            && self.modules_loaded
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

/// Publishes service states for the recovery console, when their text changed
/// (it has a seconds granularity, and the loop can run every 50 ms).
fn write_services(services: &[Service], now: Instant, last: &mut String) {
    let text: String = services
        .iter()
        .map(|s| supervise::status_line(s, now) + "\n")
        .collect();
    if text == *last {
        return;
    }
    *last = text.clone();
    let tmp = "/run/gatehouse/services.tmp";
    if std::fs::write(tmp, text).is_ok() {
        let _ = std::fs::rename(tmp, "/run/gatehouse/services");
    }
}
