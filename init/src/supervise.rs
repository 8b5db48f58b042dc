//! The supervisor's state machine: dependency-ordered start, readiness,
//! restart with exponential backoff and jitter, crash-loop hold, ordered stop.
//!
//! Per service:
//!
//! ```text
//!   Blocked --(deps ready, condition met)--> Running{ready:false}
//!   Running{ready:false} --(readiness check passes)--> Running{ready:true}
//!   Running --(exit)--> Backoff{until} --(time)--> Blocked ...
//!   Running --(exit, crash_limit quick exits in a row)--> Held{until} --> Blocked
//!   Running --(stop / condition gone)--> Stopping{deadline} --(exit)--> Blocked
//!   Stopping --(deadline)--> SIGKILL, Stopping{killed}
//! ```
//!
//! All process and clock effects go through [`Host`], so the logic is tested
//! with fake processes; `process.rs` is the real host.

use crate::services::{Ready, Spec};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Waiting for its dependencies or its condition.
    Blocked,
    Running {
        pid: Pid,
        since: Instant,
        ready: bool,
    },
    /// Exited; restarts at `until`.
    Backoff { until: Instant },
    /// Crash loop: not restarted before `until`.
    Held { until: Instant },
    Stopping {
        pid: Pid,
        deadline: Instant,
        killed: bool,
    },
    /// Stopped for shutdown; never started again.
    Stopped,
}

/// What the supervisor needs from the outside world.
pub trait Host {
    fn spawn(&mut self, spec: &Spec) -> std::io::Result<Pid>;
    fn signal(&mut self, pid: Pid, sig: Signal);
    /// The service's readiness check (spec.ready) passes now.
    fn is_ready(&mut self, spec: &Spec, pid: Pid) -> bool;
    fn exists(&self, path: &str) -> bool;
    /// A random number in [0, 1), for backoff jitter.
    fn jitter(&mut self) -> f64;
    fn log(&mut self, msg: &str);
}

#[derive(Debug)]
pub struct Service {
    pub spec: Spec,
    pub state: State,
    /// The last restart delay (before jitter); zero before the first.
    pub backoff: Duration,
    /// Restarts since boot, for the status page and the trial-boot gate.
    pub restarts: u32,
    /// Quick exits in a row (runs shorter than reset_after).
    pub quick_exits: u32,
    pub crash_loops: u32,
    /// Set once, when the service first became ready (boot timeline).
    pub first_ready: Option<Instant>,
}

impl Service {
    pub fn new(spec: Spec) -> Self {
        Self {
            backoff: Duration::ZERO,
            spec,
            state: State::Blocked,
            restarts: 0,
            quick_exits: 0,
            crash_loops: 0,
            first_ready: None,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Running { ready: true, .. })
    }

    /// How long it has been running, if it is.
    pub fn running_for(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Running { since, .. } => Some(now - since),
            _ => None,
        }
    }
}

/// The next backoff after a run of `ran`: the minimum first, then doubled up
/// to the maximum, back to the minimum after a run long enough to count as
/// healthy.
pub fn next_backoff(spec: &Spec, current: Duration, ran: Duration) -> Duration {
    if ran >= spec.reset_after || current.is_zero() {
        spec.backoff_min
    } else {
        (current * 2).clamp(spec.backoff_min, spec.backoff_max)
    }
}

/// `d` spread by ±20% so services that died together do not restart in step.
pub fn with_jitter(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.8 + 0.4 * r.clamp(0.0, 1.0))
}

pub struct Supervisor {
    pub services: Vec<Service>,
    /// Services a reload removed or changed, stopping; a new instance with
    /// the same name waits until its old one is gone.
    draining: Vec<Service>,
    /// Shutdown in progress: nothing starts any more.
    stopping: bool,
}

impl Supervisor {
    /// `specs` must be in dependency order (services::order).
    pub fn new(specs: Vec<Spec>) -> Self {
        Self {
            services: specs.into_iter().map(Service::new).collect(),
            draining: vec![],
            stopping: false,
        }
    }

    /// Applies a new table (SIGHUP): unchanged services keep running,
    /// removed or changed ones are stopped, new ones start on the next tick.
    pub fn reload(&mut self, specs: Vec<Spec>, now: Instant, host: &mut dyn Host) {
        let mut old = std::mem::take(&mut self.services);
        for spec in specs {
            match old.iter().position(|s| s.spec.name == spec.name) {
                Some(i) if old[i].spec == spec => self.services.push(old.remove(i)),
                _ => self.services.push(Service::new(spec)),
            }
        }
        for mut svc in old {
            if let State::Running { pid, .. } = svc.state {
                host.log(&format!("{}: removed or changed; stopping", svc.spec.name));
                begin_stop(&mut svc, pid, now, host);
            }
            if svc.pid().is_some() {
                self.draining.push(svc);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.spec.name == name)
    }

    fn deps_ready(&self, i: usize) -> bool {
        self.services[i]
            .spec
            .after
            .iter()
            .all(|d| self.get(d).is_some_and(|s| s.is_ready()))
    }

    /// One round: readiness checks, due starts, conditions, stop deadlines.
    pub fn tick(&mut self, now: Instant, host: &mut dyn Host) {
        for svc in &mut self.draining {
            kill_if_overdue(svc, now, host);
        }
        for i in 0..self.services.len() {
            let cond_ok = self.services[i]
                .spec
                .condition
                .as_deref()
                .is_none_or(|p| host.exists(p));
            let deps_ok = self.deps_ready(i);
            let svc = &mut self.services[i];
            match svc.state.clone() {
                State::Backoff { until } | State::Held { until } if now >= until => {
                    if matches!(svc.state, State::Held { .. }) {
                        svc.quick_exits = 0;
                        svc.backoff = Duration::ZERO;
                    }
                    svc.state = State::Blocked;
                }
                State::Running { pid, since, ready } => {
                    if !cond_ok {
                        host.log(&format!(
                            "{}: {} is gone; stopping",
                            svc.spec.name,
                            svc.spec.condition.as_deref().unwrap_or_default()
                        ));
                        begin_stop(svc, pid, now, host);
                    } else if !ready && host.is_ready(&svc.spec, pid) {
                        svc.state = State::Running {
                            pid,
                            since,
                            ready: true,
                        };
                        if svc.first_ready.is_none() {
                            svc.first_ready = Some(now);
                        }
                        host.log(&format!("{} ready", svc.spec.name));
                    }
                }
                State::Stopping { .. } => kill_if_overdue(svc, now, host),
                _ => {}
            }
            let old_gone = !self.draining.iter().any(|d| d.spec.name == svc.spec.name);
            if svc.state == State::Blocked && !self.stopping && cond_ok && deps_ok && old_gone {
                start(svc, now, host);
            }
        }
    }

    /// A child exited; returns false if it was no service of ours (an orphan).
    pub fn exited(&mut self, pid: Pid, how: &str, now: Instant, host: &mut dyn Host) -> bool {
        if let Some(i) = self.draining.iter().position(|s| s.pid() == Some(pid)) {
            let svc = self.draining.remove(i);
            host.signal(pid, Signal::SIGKILL);
            host.log(&format!("{} (pid {pid}) stopped: {how}", svc.spec.name));
            return true;
        }
        let Some(svc) = self.services.iter_mut().find(|s| s.pid() == Some(pid)) else {
            return false;
        };
        // Helpers it left in its process group must not outlive it and run
        // twice after the restart.
        host.signal(pid, Signal::SIGKILL);
        match svc.state.clone() {
            State::Stopping { .. } => {
                host.log(&format!("{} (pid {pid}) stopped: {how}", svc.spec.name));
                svc.state = if self.stopping {
                    State::Stopped
                } else {
                    State::Blocked
                };
            }
            State::Running { since, .. } => on_crash(svc, now - since, how, pid, now, host),
            _ => {}
        }
        true
    }

    /// Stops one service now (it starts again on the next tick unless its
    /// condition is gone): used when its configuration changed.
    pub fn restart(&mut self, name: &str, now: Instant, host: &mut dyn Host) {
        if let Some(svc) = self.services.iter_mut().find(|s| s.spec.name == name) {
            match svc.state {
                State::Running { pid, .. } => begin_stop(svc, pid, now, host),
                State::Backoff { .. } => svc.state = State::Blocked,
                _ => {}
            }
        }
    }

    /// Shutdown: stops services in reverse dependency order. A service gets
    /// its stop signal once everything that depends on it has stopped. Call
    /// repeatedly (with `exited` in between) until `all_stopped`.
    pub fn stop_all(&mut self, now: Instant, host: &mut dyn Host) {
        self.stopping = true;
        for svc in &mut self.draining {
            if let State::Running { pid, .. } = svc.state {
                begin_stop(svc, pid, now, host);
            }
        }
        for i in (0..self.services.len()).rev() {
            let name = self.services[i].spec.name.clone();
            let dependents_down = self
                .services
                .iter()
                .filter(|s| s.spec.after.contains(&name))
                .all(|s| s.pid().is_none());
            let svc = &mut self.services[i];
            match svc.state {
                State::Running { pid, .. } if dependents_down => begin_stop(svc, pid, now, host),
                State::Running { .. } | State::Stopping { .. } | State::Stopped => {}
                _ => svc.state = State::Stopped,
            }
        }
        self.tick(now, host);
    }

    /// Whether a service that started less than `window` ago is not ready yet.
    /// The main loop then looks more often, so that readiness, and the services
    /// waiting on it, are not held back by its usual pace. A service that never
    /// becomes ready stops counting after the window. `notify` services do not
    /// count: their line wakes the loop by itself.
    pub fn awaiting_ready(&self, now: Instant, window: Duration) -> bool {
        self.services.iter().any(|s| {
            s.spec.ready != Ready::Notify
                && matches!(s.state, State::Running { ready: false, since, .. } if now - since < window)
        })
    }

    /// The earliest moment a timer of ours runs out (a restart or a stop deadline), so the
    /// main loop can wake for it instead of on its next regular round.
    pub fn next_due(&self) -> Option<Instant> {
        self.services
            .iter()
            .chain(&self.draining)
            .filter_map(|s| match s.state {
                State::Backoff { until } | State::Held { until } => Some(until),
                State::Stopping {
                    deadline,
                    killed: false,
                    ..
                } => Some(deadline),
                _ => None,
            })
            .min()
    }

    pub fn all_stopped(&self) -> bool {
        self.draining.is_empty() && self.services.iter().all(|s| s.pid().is_none())
    }
}

fn start(svc: &mut Service, now: Instant, host: &mut dyn Host) {
    match host.spawn(&svc.spec) {
        Ok(pid) => {
            host.log(&format!("{} started (pid {pid})", svc.spec.name));
            let ready = svc.spec.ready == crate::services::Ready::Started;
            if ready && svc.first_ready.is_none() {
                svc.first_ready = Some(now);
            }
            svc.state = State::Running {
                pid,
                since: now,
                ready,
            };
        }
        Err(e) => on_crash(
            svc,
            Duration::ZERO,
            &format!("cannot start: {e}"),
            Pid::from_raw(0),
            now,
            host,
        ),
    }
}

fn kill_if_overdue(svc: &mut Service, now: Instant, host: &mut dyn Host) {
    if let State::Stopping {
        pid,
        deadline,
        killed: false,
    } = svc.state
    {
        if now >= deadline {
            host.log(&format!(
                "{} did not stop within {:?}; killing it",
                svc.spec.name, svc.spec.stop_timeout
            ));
            host.signal(pid, Signal::SIGKILL);
            svc.state = State::Stopping {
                pid,
                deadline,
                killed: true,
            };
        }
    }
}

fn begin_stop(svc: &mut Service, pid: Pid, now: Instant, host: &mut dyn Host) {
    host.signal(pid, svc.spec.stop_signal);
    svc.state = State::Stopping {
        pid,
        deadline: now + svc.spec.stop_timeout,
        killed: false,
    };
}

fn on_crash(
    svc: &mut Service,
    ran: Duration,
    how: &str,
    pid: Pid,
    now: Instant,
    host: &mut dyn Host,
) {
    svc.restarts += 1;
    if ran >= svc.spec.reset_after {
        svc.quick_exits = 0;
    }
    svc.quick_exits += 1;
    svc.backoff = next_backoff(&svc.spec, svc.backoff, ran);
    if svc.spec.crash_limit > 0 && svc.quick_exits >= svc.spec.crash_limit {
        svc.crash_loops += 1;
        svc.state = State::Held {
            until: now + svc.spec.crash_hold,
        };
        host.log(&format!(
            "{} (pid {pid}) ended: {how}; crash loop ({} quick exits in a row), held for {:?}",
            svc.spec.name, svc.quick_exits, svc.spec.crash_hold
        ));
        return;
    }
    let delay = with_jitter(svc.backoff, host.jitter());
    svc.state = State::Backoff { until: now + delay };
    host.log(&format!(
        "{} (pid {pid}) ended: {how}; restart in {:.1}s",
        svc.spec.name,
        delay.as_secs_f64()
    ));
}

/// One line of /run/gatehouse/services, for the console's status page.
pub fn status_line(svc: &Service, now: Instant) -> String {
    let left = |t: Instant| t.saturating_duration_since(now).as_secs();
    let state = match &svc.state {
        State::Blocked => match &svc.spec.condition {
            Some(c) if svc.spec.after.is_empty() => format!("waiting for {c}"),
            _ => "waiting for its dependencies".to_string(),
        },
        State::Running { pid, since, ready } => format!(
            "{} pid {pid} for {}s",
            if *ready { "running" } else { "starting" },
            (now - *since).as_secs()
        ),
        State::Backoff { until } => format!("restarting in {}s", left(*until)),
        State::Held { until } => format!("crash loop, next try in {}s", left(*until)),
        State::Stopping { pid, .. } => format!("stopping pid {pid}"),
        State::Stopped => "stopped".to_string(),
    };
    format!("{:<10} {state}, {} restarts", svc.spec.name, svc.restarts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{self, Ready};
    use std::collections::HashSet;

    /// Fake processes: spawns get increasing pids, signals are recorded,
    /// readiness and paths are whatever the test says.
    #[derive(Default)]
    struct Fake {
        next: i32,
        spawned: Vec<(String, i32)>,
        signals: Vec<(i32, Signal)>,
        ready: HashSet<String>,
        paths: HashSet<String>,
        logs: Vec<String>,
        fail_spawn: bool,
    }

    impl Host for Fake {
        fn spawn(&mut self, spec: &Spec) -> std::io::Result<Pid> {
            if self.fail_spawn {
                return Err(std::io::Error::other("no such file"));
            }
            self.next += 1;
            self.spawned.push((spec.name.clone(), self.next));
            Ok(Pid::from_raw(self.next))
        }
        fn signal(&mut self, pid: Pid, sig: Signal) {
            self.signals.push((pid.as_raw(), sig));
        }
        fn is_ready(&mut self, spec: &Spec, _: Pid) -> bool {
            self.ready.contains(&spec.name)
        }
        fn exists(&self, path: &str) -> bool {
            self.paths.contains(path)
        }
        fn jitter(&mut self) -> f64 {
            0.5
        }
        fn log(&mut self, msg: &str) {
            self.logs.push(msg.to_string());
        }
    }

    fn table(text: &str) -> Supervisor {
        Supervisor::new(services::order(services::parse(text, "t").unwrap()).unwrap())
    }

    const BUS_WEB: &str = r#"
        [[service]]
        name = "bus"
        command = ["/bus"]
        ready = "notify"
        [[service]]
        name = "web"
        command = ["/web"]
        after = ["bus"]
        stop_timeout = 2.0
    "#;

    fn pid_of(s: &Supervisor, name: &str) -> Pid {
        s.get(name).unwrap().pid().unwrap()
    }

    #[test]
    fn starts_in_dependency_order_after_readiness() {
        let mut s = table(BUS_WEB);
        let mut h = Fake::default();
        let t = Instant::now();
        s.tick(t, &mut h);
        assert_eq!(h.spawned, [("bus".to_string(), 1)]);
        s.tick(t + Duration::from_secs(1), &mut h);
        assert_eq!(h.spawned.len(), 1, "web waits until bus is ready");
        h.ready.insert("bus".into());
        s.tick(t + Duration::from_secs(2), &mut h);
        // bus became ready during this tick, web starts in the same round.
        assert_eq!(h.spawned.last().unwrap().0, "web");
        assert!(
            s.get("web").unwrap().is_ready(),
            "ready = started by default"
        );
    }

    #[test]
    fn awaits_readiness_only_within_the_window() {
        let mut s = table(BUS_WEB);
        let mut h = Fake::default();
        let t = Instant::now();
        let w = Duration::from_secs(30);
        assert!(!s.awaiting_ready(t, w), "nothing started yet");
        s.tick(t, &mut h);
        assert!(
            !s.awaiting_ready(t + Duration::from_secs(1), w),
            "a notify service's line wakes the loop by itself"
        );
        s.services[0].spec.ready = Ready::Path("/run/bus".into());
        assert!(s.awaiting_ready(t + Duration::from_secs(1), w));
        assert!(
            !s.awaiting_ready(t + Duration::from_secs(31), w),
            "a service that never gets ready stops counting"
        );
        h.ready.insert("bus".into());
        s.tick(t + Duration::from_secs(2), &mut h);
        assert!(
            !s.awaiting_ready(t + Duration::from_secs(2), w),
            "bus ready, web is ready once started"
        );
    }

    #[test]
    fn next_due_is_the_earliest_restart_or_stop_deadline() {
        let mut s = table(
            "[[service]]\nname = \"a\"\ncommand = [\"/a\"]\nbackoff_min = 0.05\n\
             [[service]]\nname = \"b\"\ncommand = [\"/b\"]\nstop_timeout = 2.0\n",
        );
        let mut h = Fake::default();
        let t = Instant::now();
        s.tick(t, &mut h);
        assert_eq!(s.next_due(), None, "both running: nothing to wake for");
        // a crashes: its restart is due after 50 ms +-20%, not on a 500 ms round.
        assert!(s.exited(pid_of(&s, "a"), "killed", t, &mut h));
        let due = s.next_due().expect("a restart is due");
        assert!(due >= t + Duration::from_millis(40) && due <= t + Duration::from_millis(60));
        s.tick(due, &mut h);
        assert!(s.get("a").unwrap().pid().is_some(), "restarted when due");
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_caps_and_resets() {
        let mut s = table("[[service]]\nname = \"a\"\ncommand = [\"/a\"]\ncrash_limit = 100");
        let mut h = Fake::default();
        let mut t = Instant::now();
        let mut delays = vec![];
        for _ in 0..7 {
            s.tick(t, &mut h);
            let pid = pid_of(&s, "a");
            t += Duration::from_millis(100);
            assert!(s.exited(pid, "exit 1", t, &mut h));
            let State::Backoff { until } = s.get("a").unwrap().state else {
                panic!("not backing off: {:?}", s.get("a").unwrap().state)
            };
            delays.push((until - t).as_secs());
            s.tick(t + Duration::from_millis(500), &mut h);
            assert!(s.get("a").unwrap().pid().is_none(), "restarted too early");
            t = until;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        // A long healthy run resets the backoff to the minimum.
        s.tick(t, &mut h);
        let pid = pid_of(&s, "a");
        t += Duration::from_secs(61);
        s.exited(pid, "exit 1", t, &mut h);
        assert_eq!(s.get("a").unwrap().backoff, Duration::from_secs(1));
        assert_eq!(s.get("a").unwrap().restarts, 8);
    }

    #[test]
    fn jitter_spreads_by_a_fifth() {
        let d = Duration::from_secs(10);
        assert_eq!(with_jitter(d, 0.0), Duration::from_secs(8));
        assert_eq!(with_jitter(d, 1.0), Duration::from_secs(12));
    }

    #[test]
    fn crash_loop_is_held_and_reported_then_retried() {
        let mut s = table(
            "[[service]]\nname = \"a\"\ncommand = [\"/a\"]\ncrash_limit = 3\ncrash_hold = 100.0",
        );
        let mut h = Fake::default();
        let mut t = Instant::now();
        for _ in 0..3 {
            s.tick(t, &mut h);
            let pid = pid_of(&s, "a");
            s.exited(pid, "signal SIGSEGV", t, &mut h);
            t += Duration::from_secs(40);
        }
        let a = s.get("a").unwrap();
        assert!(matches!(a.state, State::Held { .. }), "{:?}", a.state);
        assert_eq!(a.crash_loops, 1);
        assert!(h.logs.last().unwrap().contains("crash loop (3 quick exits"));
        s.tick(t, &mut h);
        assert!(
            s.get("a").unwrap().pid().is_none(),
            "held services stay down"
        );
        s.tick(t + Duration::from_secs(100), &mut h);
        let a = s.get("a").unwrap();
        assert!(a.pid().is_some(), "retried after the hold");
        assert_eq!((a.quick_exits, a.backoff), (0, Duration::ZERO));
    }

    #[test]
    fn a_program_that_cannot_start_backs_off_like_a_crash() {
        let mut s = table("[[service]]\nname = \"a\"\ncommand = [\"/missing\"]");
        let mut h = Fake {
            fail_spawn: true,
            ..Fake::default()
        };
        s.tick(Instant::now(), &mut h);
        assert!(matches!(s.get("a").unwrap().state, State::Backoff { .. }));
        assert!(
            h.logs[0].contains("cannot start: no such file"),
            "{:?}",
            h.logs
        );
    }

    #[test]
    fn stops_in_reverse_order_then_kills_after_timeout() {
        let mut s = table(BUS_WEB);
        let mut h = Fake::default();
        h.ready.insert("bus".into());
        let t = Instant::now();
        s.tick(t, &mut h);
        s.tick(t, &mut h);
        let (bus, web) = (pid_of(&s, "bus"), pid_of(&s, "web"));
        s.stop_all(t, &mut h);
        assert_eq!(h.signals, [(web.as_raw(), Signal::SIGTERM)], "web first");
        // web ignores TERM: KILL after its 2 s stop timeout, bus still waits.
        s.stop_all(t + Duration::from_secs(1), &mut h);
        assert_eq!(h.signals.len(), 1);
        s.stop_all(t + Duration::from_secs(2), &mut h);
        assert_eq!(h.signals[1], (web.as_raw(), Signal::SIGKILL));
        s.exited(web, "signal SIGKILL", t + Duration::from_secs(2), &mut h);
        s.stop_all(t + Duration::from_secs(2), &mut h);
        assert!(h.signals.contains(&(bus.as_raw(), Signal::SIGTERM)));
        s.exited(bus, "exit 0", t + Duration::from_secs(3), &mut h);
        assert!(s.all_stopped());
        s.tick(t + Duration::from_secs(60), &mut h);
        assert_eq!(h.spawned.len(), 2, "nothing restarts during shutdown");
        assert_eq!(s.get("bus").unwrap().restarts, 0, "a stop is no crash");
    }

    #[test]
    fn condition_gates_start_and_its_loss_stops_the_service() {
        let mut s =
            table("[[service]]\nname = \"ap\"\ncommand = [\"/ap\"]\ncondition = \"/run/ap.conf\"");
        let mut h = Fake::default();
        let t = Instant::now();
        s.tick(t, &mut h);
        assert!(h.spawned.is_empty());
        h.paths.insert("/run/ap.conf".into());
        s.tick(t, &mut h);
        let pid = pid_of(&s, "ap");
        h.paths.clear();
        s.tick(t, &mut h);
        assert_eq!(h.signals, [(pid.as_raw(), Signal::SIGTERM)]);
        s.exited(pid, "exit 0", t, &mut h);
        assert_eq!(s.get("ap").unwrap().state, State::Blocked);
        assert_eq!(s.get("ap").unwrap().restarts, 0);
    }

    #[test]
    fn restart_stops_and_starts_again_without_counting_a_crash() {
        let mut s = table("[[service]]\nname = \"a\"\ncommand = [\"/a\"]\nready = \"notify\"");
        let mut h = Fake::default();
        let t = Instant::now();
        s.tick(t, &mut h);
        let pid = pid_of(&s, "a");
        s.restart("a", t, &mut h);
        s.exited(pid, "exit 0", t, &mut h);
        s.tick(t, &mut h);
        assert_eq!(h.spawned.len(), 2);
        assert_eq!(s.get("a").unwrap().restarts, 0);
        assert_eq!(s.get("a").unwrap().spec.ready, Ready::Notify);
    }

    #[test]
    fn reload_keeps_unchanged_restarts_changed_and_drops_removed() {
        let three = "[[service]]\nname = \"keep\"\ncommand = [\"/k\"]\n\
                     [[service]]\nname = \"change\"\ncommand = [\"/c\"]\n\
                     [[service]]\nname = \"gone\"\ncommand = [\"/g\"]\n";
        let mut s = table(three);
        let mut h = Fake::default();
        let t = Instant::now();
        s.tick(t, &mut h);
        let (keep, change, gone) = (pid_of(&s, "keep"), pid_of(&s, "change"), pid_of(&s, "gone"));
        let new = "[[service]]\nname = \"keep\"\ncommand = [\"/k\"]\n\
                   [[service]]\nname = \"change\"\ncommand = [\"/c\", \"-v\"]\n\
                   [[service]]\nname = \"added\"\ncommand = [\"/a\"]\n";
        s.reload(services::parse(new, "t").unwrap(), t, &mut h);
        assert_eq!(
            h.signals,
            [
                (change.as_raw(), Signal::SIGTERM),
                (gone.as_raw(), Signal::SIGTERM)
            ]
        );
        s.tick(t, &mut h);
        assert_eq!(h.spawned.last().unwrap().0, "added");
        assert!(
            s.get("change").unwrap().pid().is_none(),
            "waits for the old one"
        );
        assert!(!s.all_stopped());
        s.exited(change, "exit 0", t, &mut h);
        s.exited(gone, "exit 0", t, &mut h);
        s.tick(t, &mut h);
        assert_eq!(h.spawned.last().unwrap().0, "change");
        assert_eq!(pid_of(&s, "keep"), keep, "unchanged keeps running");
        assert!(s.get("gone").is_none());
    }

    #[test]
    fn orphans_are_not_mistaken_for_services() {
        let mut s = table(BUS_WEB);
        let mut h = Fake::default();
        s.tick(Instant::now(), &mut h);
        assert!(!s.exited(Pid::from_raw(999), "exit 0", Instant::now(), &mut h));
        assert!(h.signals.is_empty());
    }
}
