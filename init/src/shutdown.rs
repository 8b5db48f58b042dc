//! Orderly, bounded shutdown: services, then everything else, then the disk.

use crate::log;
use crate::supervise::{self, Service};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::time::{Duration, Instant};

const SERVICE_GRACE: Duration = Duration::from_secs(5);
const REST_GRACE: Duration = Duration::from_secs(2);

/// Reaps until no child is left or the deadline passes. Returns true if none left.
fn reap_until(deadline: Instant) -> bool {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => {}
            Err(_) => return true, // ECHILD: nothing left
        }
    }
}

pub fn run(services: &mut [Service], mode: RebootMode) -> ! {
    log!("shutdown: stopping services");
    for svc in services.iter().rev() {
        supervise::signal(svc, Signal::SIGTERM);
    }
    reap_until(Instant::now() + SERVICE_GRACE);
    log!("shutdown: terminating remaining processes");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGTERM);
    if !reap_until(Instant::now() + REST_GRACE) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGKILL);
        reap_until(Instant::now() + REST_GRACE);
    }
    nix::unistd::sync();
    // The ESP first: a FAT left mounted at power-off is marked dirty.
    let _ = nix::mount::umount2(crate::bootslot::ESP_MOUNT, nix::mount::MntFlags::empty());
    if let Err(e) = nix::mount::umount2(crate::data::MOUNTPOINT, nix::mount::MntFlags::empty()) {
        log!("shutdown: umount /data: {e}; remounting read-only");
        let _ = nix::mount::mount(
            None::<&str>,
            crate::data::MOUNTPOINT,
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    nix::unistd::sync();
    log!("shutdown: {mode:?}");
    let _ = nix::sys::reboot::reboot(mode);
    // reboot(2) does not return on success; if it failed, there is nothing
    // better to do than wait for the watchdog or the owner.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
