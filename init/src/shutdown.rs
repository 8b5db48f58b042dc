//! Orderly, bounded shutdown: services in reverse dependency order, then
//! everything else, then the disk, then reboot(2).

use crate::log;
use crate::supervise::{Host, Supervisor};
use crate::watchdog::Watchdog;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::time::{Duration, Instant};

/// All services together get this long, whatever their own stop timeouts say.
const SERVICES_MAX: Duration = Duration::from_secs(15);
const REST_GRACE: Duration = Duration::from_secs(2);

/// Reaps until no child is left or the deadline passes. Returns true if none left.
fn reap_until(deadline: Instant, wd: &mut Option<Watchdog>) -> bool {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    return false;
                }
                if let Some(w) = wd {
                    w.pet();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => {}
            Err(_) => return true, // ECHILD: nothing left
        }
    }
}

pub fn run(
    sup: &mut Supervisor,
    host: &mut dyn Host,
    wd: &mut Option<Watchdog>,
    mode: RebootMode,
) -> ! {
    log!("shutdown: stopping services");
    let deadline = Instant::now() + SERVICES_MAX;
    loop {
        let now = Instant::now();
        sup.stop_all(now, host);
        crate::process::reap(sup, host);
        if sup.all_stopped() {
            break;
        }
        if now >= deadline {
            log!("shutdown: services still running after {SERVICES_MAX:?}");
            break;
        }
        if let Some(w) = wd {
            w.pet();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log!("shutdown: terminating remaining processes");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGTERM);
    if !reap_until(Instant::now() + REST_GRACE, wd) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGKILL);
        reap_until(Instant::now() + REST_GRACE, wd);
    }
    crate::clock::save();
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
    // reboot(2) does not return on success. If it failed, stop petting: the
    // watchdog (if any) resets the machine.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
