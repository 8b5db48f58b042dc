//! Service supervision: start, capture output to the console, restart with
//! backoff when a service dies.
//!
//! State machine per service: Stopped -> Running(pid) -> (exit) -> Waiting(until)
//! -> Running(pid) ... The backoff doubles from 1 s up to 30 s and resets after
//! a service has run for 60 s.

use crate::log;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// Attach to a terminal instead of piping output (the console shell).
    pub tty: Option<String>,
    /// Start only once this path exists: the readiness of what it depends on
    /// (e.g. the D-Bus socket for RAUC).
    pub after: Option<String>,
}

#[derive(Debug)]
pub enum State {
    Running { pid: Pid, since: Instant },
    Waiting { until: Instant },
}

pub struct Service {
    pub spec: Spec,
    pub state: State,
    pub backoff: Duration,
    pub restarts: u32,
}

/// Next backoff after a service that ran for `ran` exits.
pub fn next_backoff(current: Duration, ran: Duration) -> Duration {
    if ran >= STABLE_AFTER {
        BACKOFF_MIN
    } else {
        (current * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
    }
}

impl Service {
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            state: State::Waiting {
                until: Instant::now(),
            },
            backoff: BACKOFF_MIN / 2,
            restarts: 0,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            State::Waiting { .. } => None,
        }
    }

    /// Starts the service if it is waiting and its time has come.
    pub fn poll_start(&mut self, now: Instant) {
        if let State::Waiting { until } = self.state {
            let ready = self
                .spec
                .after
                .as_ref()
                .is_none_or(|p| std::path::Path::new(p).exists());
            if now >= until && ready {
                match spawn(&self.spec) {
                    Ok(pid) => {
                        log!("{} started (pid {pid})", self.spec.name);
                        self.state = State::Running { pid, since: now };
                    }
                    Err(e) => {
                        log!("{} failed to start: {e}", self.spec.name);
                        self.on_exit(now, now);
                    }
                }
            }
        }
    }

    /// Records an exit and schedules the restart.
    pub fn on_exit(&mut self, since: Instant, now: Instant) {
        self.backoff = next_backoff(self.backoff, now - since);
        self.restarts += 1;
        self.state = State::Waiting {
            until: now + self.backoff,
        };
    }
}

fn spawn(spec: &Spec) -> std::io::Result<Pid> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    let tty = spec.tty.clone();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // PID 1 blocks the signals it waits on; children must not inherit that.
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)?;
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if tty.is_some() {
                // stdin is the terminal: make it our controlling tty.
                if libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    if let Some(t) = &spec.tty {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(t)?;
        cmd.stdin(f.try_clone()?).stdout(f.try_clone()?).stderr(f);
        let child = cmd.spawn()?;
        return Ok(Pid::from_raw(child.id() as i32));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let name = spec.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                crate::log::line(&name, &line);
            }
        });
    }
    // The Child handle is dropped without wait(): PID 1 reaps every child itself.
    Ok(Pid::from_raw(child.id() as i32))
}

/// One line of /run/gatehouse/services, for the console's status page.
pub fn status_line(svc: &Service, now: Instant) -> String {
    let state = match svc.state {
        State::Running { pid, since } => {
            format!("running pid {pid} for {}s", (now - since).as_secs())
        }
        State::Waiting { until } => {
            format!(
                "restarting in {}s",
                until.saturating_duration_since(now).as_secs()
            )
        }
    };
    format!("{:<10} {state}, {} restarts", svc.spec.name, svc.restarts)
}

/// Sends `sig` to a running service's process group.
pub fn signal(svc: &Service, sig: Signal) {
    if let Some(pid) = svc.pid() {
        let _ = nix::sys::signal::killpg(pid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let quick = Duration::from_secs(1);
        let mut b = BACKOFF_MIN / 2;
        let mut seen = vec![];
        for _ in 0..8 {
            b = next_backoff(b, quick);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(next_backoff(BACKOFF_MAX, STABLE_AFTER), BACKOFF_MIN);
    }
}
