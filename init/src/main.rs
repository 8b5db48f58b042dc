//! gatehouse-init: PID 1 of the Gatehouse appliance.
//!
//! Boot sequence: mounts -> modules -> sysctls -> data partition -> hostname
//! -> network -> services. Then a loop that reaps children, restarts services
//! and turns signals into shutdown (procd's mapping: SIGTERM and Ctrl-Alt-Del
//! reboot, SIGUSR1/SIGUSR2 power off).

use init::supervise::{self, Service, Spec, State};
use init::{bootslot, data, log, modules, mounts, net, settings, shutdown, sysctl};

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
    steps.push(Step("mounts", log::since_boot()));
    let settings = settings::load();
    if let Err(e) = nix::unistd::sethostname(&settings.hostname) {
        log!("hostname: {e}");
    }
    net::bring_up(&settings);
    steps.push(Step("network", log::since_boot()));

    let mut services = vec![
        Service::new(Spec {
            name: "gatewayd".into(),
            program: "/usr/sbin/gatewayd".into(),
            args: if settings.failsafe {
                vec!["--no-config".into()]
            } else {
                vec![]
            },
            tty: None,
        }),
        Service::new(Spec {
            name: "console".into(),
            program: "/usr/sbin/gatehouse-console".into(),
            args: vec![],
            tty: Some(console_tty()),
        }),
    ];
    for svc in services.iter_mut() {
        svc.poll_start(Instant::now());
    }
    steps.push(Step("services", log::since_boot()));
    write_timeline(&steps);

    // The boot counts as good once gatewayd has stayed up this long.
    const HEALTHY_AFTER: Duration = Duration::from_secs(10);
    let mut confirmed = false;
    loop {
        if !confirmed {
            if let State::Running { since, .. } = services[0].state {
                if since.elapsed() >= HEALTHY_AFTER {
                    bootslot::confirm_boot();
                    confirmed = true;
                }
            }
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
