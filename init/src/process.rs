//! The supervisor's real host: forks services, wires their output into the
//! log rings, and runs the readiness checks.

use crate::logring::Rings;
use crate::services::{Ready, Spec};
use crate::supervise::Host;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The descriptor a `ready = "notify"` service writes its readiness line to
/// (also named in $NOTIFY_FD).
pub const NOTIFY_FD: i32 = 3;

pub struct Procs {
    pub rings: Arc<Rings>,
    /// The active system console, for `tty = "console"`.
    pub console: String,
    /// Booted with gatehouse.failsafe: services run their failsafe_command.
    pub failsafe: bool,
    /// Read ends of the notify pipes of services not yet ready.
    notify: HashMap<String, OwnedFd>,
    /// Services whose readiness line has been read and not yet reported.
    notified: HashSet<String>,
    /// Pids of the terminal services (the console menus) ever started,
    /// shared with main: after a fatal error, init's rescue loop replaces them.
    pub terminals: Terminals,
}

pub type Terminals = Arc<std::sync::Mutex<Vec<Pid>>>;

/// Kills the terminal services still running (their whole process groups),
/// so that a new console menu owns the terminal alone.
pub fn kill_terminals(t: &Terminals, program: &str) {
    for pid in t.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        // A pid reaped long ago may have been reused: check what runs there.
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.starts_with(program.as_bytes()) {
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
        }
    }
}

impl Procs {
    pub fn new(rings: Arc<Rings>, console: String, failsafe: bool, terminals: Terminals) -> Self {
        Self {
            rings,
            console,
            failsafe,
            notify: HashMap::new(),
            notified: HashSet::new(),
            terminals,
        }
    }

    /// The notify pipes still waiting for a line, for the main loop to wait on:
    /// a line wakes it at once. Nothing is read here: a line read before the
    /// wait would leave the wait with nothing to wake it.
    pub fn notify_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.notify.values().map(|fd| fd.as_fd()).collect()
    }

    /// Reads the notify pipes, after each wait: a line marks its service ready
    /// (the next `is_ready` reports it), an end without one closes the pipe (that
    /// run of the service is never ready). Without this, a pipe closed by a
    /// service that died would wake every wait at once.
    pub fn read_notify(&mut self) {
        let mut buf = [0u8; 64];
        let notified = &mut self.notified;
        self.notify
            .retain(|name, fd| match nix::unistd::read(&*fd, &mut buf) {
                Ok(0) => false,
                Ok(_) => {
                    notified.insert(name.clone());
                    false
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => true,
                Err(_) => false,
            });
    }
}

fn capture(rings: Arc<Rings>, name: String, echo: bool, stream: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            crate::log::service_line(&rings, &name, &line, echo);
        }
    });
}

impl Host for Procs {
    fn spawn(&mut self, spec: &Spec) -> std::io::Result<Pid> {
        let mut cmd = Command::new(&spec.program);
        match (&spec.failsafe_args, self.failsafe) {
            (Some(a), true) => cmd.args(a),
            _ => cmd.args(&spec.args),
        };
        cmd.envs(&spec.env);
        if let Some(u) = &spec.user {
            let user = nix::unistd::User::from_name(u)
                .map_err(std::io::Error::from)?
                .ok_or_else(|| std::io::Error::other(format!("no user {u}")))?;
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            cmd.env("HOME", &user.dir).env("USER", u);
        }
        let notify_w = if spec.ready == Ready::Notify {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            nix::fcntl::fcntl(
                &r,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            self.notify.insert(spec.name.clone(), r);
            self.notified.remove(&spec.name);
            cmd.env("NOTIFY_FD", NOTIFY_FD.to_string());
            Some(w)
        } else {
            None
        };
        let wfd = notify_w.as_ref().map(|w| w.as_raw_fd());
        let tty = spec.tty.is_some();
        let nice = spec.nice;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // PID 1 blocks the signals it waits on; children must not inherit that.
                SigSet::empty()
                    .thread_set_mask()
                    .map_err(std::io::Error::from)?;
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if nice != 0 && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if tty && libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(w) = wfd {
                    // dup2 leaves the new descriptor without FD_CLOEXEC.
                    if libc::dup2(w, NOTIFY_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        if let Some(t) = &spec.tty {
            let path = if t == "console" { &self.console } else { t };
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?;
            cmd.stdin(f.try_clone()?).stdout(f.try_clone()?).stderr(f);
        } else {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        drop(notify_w);
        let pid = Pid::from_raw(child.id() as i32);
        if spec.tty.is_some() {
            let mut t = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
            t.retain(|p| nix::sys::signal::kill(*p, None).is_ok());
            t.push(pid);
        }
        if let Some(out) = child.stdout.take() {
            capture(self.rings.clone(), spec.name.clone(), spec.console_log, out);
        }
        if let Some(err) = child.stderr.take() {
            capture(self.rings.clone(), spec.name.clone(), spec.console_log, err);
        }
        // The Child handle is dropped without wait(): PID 1 reaps every child itself.
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, sig: Signal) {
        // The whole process group: services lead their own (setsid).
        let _ = nix::sys::signal::killpg(pid, sig);
    }

    fn is_ready(&mut self, spec: &Spec, _pid: Pid) -> bool {
        match &spec.ready {
            Ready::Started => true,
            Ready::Notify => {
                self.read_notify();
                self.notified.remove(&spec.name)
            }
            Ready::Tcp(addr) => {
                std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            }
            Ready::Udp(port) => udp_bound(*port),
            Ready::Path(p) => std::path::Path::new(p).exists(),
        }
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn jitter(&mut self) -> f64 {
        let mut b = [0u8; 4];
        // SAFETY: getrandom writes at most b.len() bytes into b.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
        if n != b.len() as isize {
            return 0.5;
        }
        u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
    }

    fn log(&mut self, msg: &str) {
        crate::log::line("init", msg);
    }
}

/// Reaps every exited child of the main thread, orphans included (PID 1's main
/// thread inherits them), and tells the supervisor about its services' exits.
/// Children that helper threads started (modprobe, sfdisk, resize2fs, the health
/// probe) are left to those threads, which wait for them: `__WNOTHREAD` keeps
/// them out of this wait, which would otherwise take their exit status away.
/// Must be called on the main thread, which starts the services.
pub fn reap(sup: &mut crate::supervise::Supervisor, host: &mut dyn Host) {
    while let Some((pid, how)) = reap_one() {
        if let Some(how) = how {
            sup.exited(pid, &how, std::time::Instant::now(), host);
        }
    }
}

/// One exited child of the calling thread and how it ended (None for a stop or a
/// continue); None when there is none.
fn reap_one() -> Option<(nix::unistd::Pid, Option<String>)> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WNOTHREAD)) {
        Ok(WaitStatus::Exited(pid, code)) => Some((pid, Some(format!("exit {code}")))),
        Ok(WaitStatus::Signaled(pid, sig, _)) => Some((pid, Some(format!("signal {sig}")))),
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(other) => other.pid().map(|pid| (pid, None)),
    }
}

/// Whether any socket is bound to UDP `port` (IPv4 or IPv6).
pub fn udp_bound(port: u16) -> bool {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|t| udp_table_has(&t, port))
}

/// /proc/net/udp lines look like `  0: 0100007F:0035 00000000:0000 07 ...`.
pub fn udp_table_has(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|local| local.rsplit(':').next())
            .is_some_and(|p| p == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_leaves_other_threads_children_alone() {
        // A helper thread runs commands and waits for each, as the module loader does
        // while the main loop reaps: every wait must get its own child's status.
        let helper = std::thread::spawn(|| {
            (0..20)
                .map(|_| std::process::Command::new("true").status())
                .filter(|r| r.as_ref().map_or(true, |s| !s.success()))
                .count()
        });
        let mut reaped = 0;
        while !helper.is_finished() {
            while reap_one().is_some() {
                reaped += 1;
            }
        }
        assert_eq!(
            helper.join().unwrap(),
            0,
            "a wait lost its child to the reaper"
        );
        assert_eq!(reaped, 0);
    }

    #[test]
    fn a_line_that_came_before_the_wait_ends_it_and_a_silent_close_drops_the_pipe() {
        let specs = crate::services::parse(
            r#"
            [[service]]
            name = "says"
            command = ["/bin/sh", "-c", "sleep 1; echo READY=1 >&3; sleep 10"]
            ready = "notify"
            [[service]]
            name = "silent"
            command = ["/bin/sh", "-c", "exec 3>&-; sleep 10"]
            ready = "notify"
            "#,
            "test",
        )
        .unwrap();
        let mut host = Procs::new(
            Arc::new(Rings::new(4096)),
            "/dev/null".into(),
            false,
            Terminals::default(),
        );
        let pids: Vec<Pid> = specs.iter().map(|s| host.spawn(s).unwrap()).collect();
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR1);
        set.thread_block().unwrap();
        let waker = crate::wake::Waker::new(&set);

        // The silent service closed its descriptor: its pipe is no longer waited on.
        let t = std::time::Instant::now();
        while host.notify_fds().len() != 1 && t.elapsed() < Duration::from_millis(900) {
            std::thread::sleep(Duration::from_millis(10));
            host.read_notify();
        }
        assert_eq!(
            host.notify_fds().len(),
            1,
            "the closed pipe is still waited on"
        );
        assert!(!host.is_ready(&specs[1], pids[1]));

        // The line arrives while nothing waits; the next wait must still end at once.
        std::thread::sleep(Duration::from_millis(1500));
        let t = std::time::Instant::now();
        let fds = host.notify_fds();
        assert_eq!(waker.wait(&fds, Duration::from_secs(10)), None);
        drop(fds);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the line did not end the wait"
        );
        host.read_notify();
        assert!(host.is_ready(&specs[0], pids[0]));
        assert!(host.notify_fds().is_empty());

        for pid in pids {
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }

    #[test]
    fn finds_a_bound_udp_port() {
        let t = "  sl  local_address rem_address   st\n   \
                 0: 0101A8C0:0043 00000000:0000 07 00000000:00000000\n   \
                 1: 00000000:0035 00000000:0000 07 00000000:00000000\n";
        assert!(udp_table_has(t, 53));
        assert!(udp_table_has(t, 67));
        assert!(!udp_table_has(t, 123));
        assert!(!udp_table_has(t, 0x0101), "the address is not the port");
    }
}
