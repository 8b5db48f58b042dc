//! Tells the supervisor when gatewayd serves the LAN.
//!
//! init starts gatewayd with `ready = "notify"`: it reads a line on the
//! descriptor named in `$NOTIFY_FD`, and the line wakes it at once. The line is
//! sent when every LAN listener this config enables (DHCP, DNS) is bound, which
//! is the boot's "DHCP answering" milestone. Without `$NOTIFY_FD` (the netns
//! tests, a shell) nothing is sent.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};

/// The environment variable init names the descriptor in.
pub const ENV: &str = "NOTIFY_FD";

/// A listener that must be bound before gatewayd counts as serving the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Dhcp,
    Dns,
}

pub struct Readiness {
    state: Mutex<State>,
}

struct State {
    pending: Vec<Part>,
    out: Option<File>,
}

impl Readiness {
    /// Takes over the descriptor in `$NOTIFY_FD`. Call it once, before any thread
    /// starts: it clears the variable, so nothing else claims the descriptor, and
    /// marks the descriptor close-on-exec, so the programs gatewayd runs (udhcpc)
    /// do not hold init's pipe open.
    pub fn from_env(parts: &[Part]) -> Arc<Self> {
        let fd = std::env::var(ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok());
        std::env::remove_var(ENV);
        let out = fd.filter(|&fd| fd > 2 && set_cloexec(fd)).map(|fd| {
            // SAFETY: init opened this descriptor for us alone; it is open (checked by
            // set_cloexec) and, with the variable cleared, nothing else takes it.
            unsafe { File::from_raw_fd(fd) }
        });
        Self::new(parts, out)
    }

    /// `out` gets the line once every part in `parts` is up (at once if there are none).
    pub fn new(parts: &[Part], out: Option<File>) -> Arc<Self> {
        let r = Arc::new(Self {
            state: Mutex::new(State {
                pending: parts.to_vec(),
                out,
            }),
        });
        r.check();
        r
    }

    /// Marks `part` bound. Later calls for it (a listener bound again) change nothing.
    pub fn up(&self, part: Part) {
        self.lock().pending.retain(|p| *p != part);
        self.check();
    }

    /// Whether every part is up (the line went out, if there was a descriptor).
    #[cfg(test)]
    fn is_ready(&self) -> bool {
        self.lock().pending.is_empty()
    }

    fn check(&self) {
        let mut s = self.lock();
        if !s.pending.is_empty() {
            return;
        }
        // Dropping the file closes the descriptor: the line is sent once.
        if let Some(mut f) = s.out.take() {
            if let Err(e) = f.write_all(b"READY=1\n") {
                eprintln!("gatewayd: could not tell init it is ready: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn set_cloexec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's flags; a closed
    // descriptor makes them fail with EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    fn line(r: &mut File) -> String {
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn the_line_comes_once_every_listener_is_up_and_the_pipe_closes() {
        let (mut r, w) = pipe();
        let ready = Readiness::new(&[Part::Dhcp, Part::Dns], Some(w));
        ready.up(Part::Dns);
        ready.up(Part::Dns);
        assert!(!ready.is_ready());
        ready.up(Part::Dhcp);
        assert!(ready.is_ready());
        ready.up(Part::Dhcp);
        // read_to_string ends only at EOF: the descriptor was closed after one line.
        assert_eq!(line(&mut r), "READY=1\n");
    }

    #[test]
    fn with_nothing_to_wait_for_the_line_comes_at_once() {
        let (mut r, w) = pipe();
        let ready = Readiness::new(&[], Some(w));
        assert!(ready.is_ready());
        assert_eq!(line(&mut r), "READY=1\n");
    }

    #[test]
    fn without_a_descriptor_nothing_is_sent() {
        let ready = Readiness::new(&[Part::Dhcp], None);
        ready.up(Part::Dhcp);
        assert!(ready.is_ready());
    }
}
