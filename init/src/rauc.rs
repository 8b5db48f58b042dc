//! RAUC over D-Bus (zbus, blocking): marking slots good or bad. The grubenv
//! edit in `bootslot` is the fallback when RAUC is not running, so a boot is
//! never left unconfirmed because the update service is down.

use crate::{bootslot, log};

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
trait Installer {
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
}

/// How long PID 1 waits on the bus: a wedged dbus-daemon or RAUC must not stop
/// it from reaping and taking signals.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a D-Bus call on a thread of its own, giving up after `CALL_TIMEOUT`.
fn bounded<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(CALL_TIMEOUT)
        .map_err(|_| format!("no answer on D-Bus within {} s", CALL_TIMEOUT.as_secs()))?
}

/// Is RAUC answering on the system bus?
pub fn ready() -> bool {
    bounded(|| {
        let conn = zbus::blocking::Connection::system().map_err(|e| e.to_string())?;
        InstallerProxyBlocking::new(&conn)
            .and_then(|p| p.boot_slot())
            .map_err(|e| e.to_string())
    })
    .is_ok()
}

/// `Mark(state, ident)`: state good|bad|active, ident booted|other|slot name.
pub fn mark(state: &str, ident: &str) -> Result<String, String> {
    let (state, ident) = (state.to_string(), ident.to_string());
    bounded(move || {
        let conn = zbus::blocking::Connection::system().map_err(|e| format!("system bus: {e}"))?;
        let proxy = InstallerProxyBlocking::new(&conn).map_err(|e| e.to_string())?;
        let (slot, msg) = proxy
            .mark(&state, &ident)
            .map_err(|e| format!("rauc: {e}"))?;
        Ok(format!("{slot}: {msg}"))
    })
}

/// Marks the booted slot good through RAUC, or by editing the grubenv when
/// RAUC cannot be reached.
pub fn mark_booted_good(slot: &str) {
    match mark("good", "booted") {
        Ok(m) => {
            log!("bootslot: slot {slot} confirmed good through RAUC ({m})");
            bootslot::note_confirmed(slot);
        }
        Err(e) => {
            log!("bootslot: {e}; editing the grubenv directly");
            bootslot::confirm_boot();
        }
    }
}

/// Marks the booted slot bad (the bootloader then prefers the other one).
pub fn mark_booted_bad(slot: &str) {
    match mark("bad", "booted") {
        Ok(m) => log!("bootslot: marked bad through RAUC ({m})"),
        Err(e) => {
            log!("bootslot: {e}; editing the grubenv directly");
            let r = bootslot::edit_env(|vars| {
                bootslot::set(vars, &format!("{slot}_OK"), "0");
                bootslot::set(vars, &format!("{slot}_TRY"), "0");
                Ok(())
            });
            if let Err(e) = r {
                log!("bootslot: {e}; the try counter alone will fall back");
            }
        }
    }
}
