//! What wakes PID 1's main loop: a signal it handles (a child's exit, a reboot
//! request), a descriptor becoming readable (a service's readiness line, a
//! uevent), or the end of the round.
//!
//! Why not sigtimedwait alone: a readiness line then waited for the next round,
//! up to 50 ms of every boot's "DHCP answering" and of every service's start
//! behind it. The signals stay blocked and arrive through a signalfd, so one
//! poll waits for all of them.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

pub struct Waker {
    /// None if the kernel refused a signalfd: then signals are waited for with
    /// sigtimedwait, and descriptors are seen only once a round.
    sfd: Option<SignalFd>,
    set: SigSet,
}

impl Waker {
    /// `set` must already be blocked in this thread (and every other), or its
    /// signals would not queue for the signalfd.
    pub fn new(set: &SigSet) -> Self {
        let sfd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| crate::log!("init: no signalfd ({e}); readiness is seen once a round"))
            .ok();
        Self { sfd, set: *set }
    }

    /// Waits up to `timeout` for a signal of the set or for one of `fds` to be
    /// readable (or hung up). Returns the signal, if one came; the others stay
    /// queued for the next calls.
    pub fn wait(&self, fds: &[BorrowedFd<'_>], timeout: Duration) -> Option<Signal> {
        let Some(sfd) = &self.sfd else {
            return wait_signal(&self.set, timeout);
        };
        if let Some(s) = take(sfd) {
            return Some(s);
        }
        let mut polled: Vec<PollFd<'_>> = std::iter::once(sfd.as_fd())
            .chain(fds.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        // EINTR and the like: the caller's round runs and calls again.
        let _ = poll(&mut polled, ms);
        take(sfd)
    }
}

fn take(sfd: &SignalFd) -> Option<Signal> {
    match sfd.read_signal() {
        Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
        _ => None,
    }
}

/// Waits up to `timeout` for one of the blocked signals in `set`.
pub fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait reads a valid sigset and timespec; info may be null.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    // The signal tests live in one test: the mask is per thread, and each test
    // runs on a thread of its own.
    #[test]
    fn a_readable_descriptor_or_a_signal_ends_the_wait_early() {
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR2);
        set.thread_block().unwrap();
        let w = Waker::new(&set);
        assert!(w.sfd.is_some());

        let (r, wr) = nix::unistd::pipe().unwrap();
        let t = Instant::now();
        assert_eq!(w.wait(&[r.as_fd()], Duration::from_millis(300)), None);
        assert!(t.elapsed() >= Duration::from_millis(250), "timed out early");

        std::fs::File::from(wr).write_all(b"READY=1\n").unwrap();
        let t = Instant::now();
        assert_eq!(w.wait(&[r.as_fd()], Duration::from_secs(10)), None);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the readiness line did not wake it"
        );

        // To this thread alone: the process-wide kill could land on another test's thread.
        // SAFETY: signals this very thread, which blocks SIGUSR2.
        assert_eq!(
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) },
            0
        );
        let t = Instant::now();
        assert_eq!(w.wait(&[], Duration::from_secs(10)), Some(Signal::SIGUSR2));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
