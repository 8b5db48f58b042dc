//! Confirms the booted slot to the bootloader (RAUC's GRUB convention).
//!
//! GRUB sets `<SLOT>_TRY=1` before it boots a slot; a slot still marked so at
//! the next boot is skipped, which is the automatic rollback. Once this boot is
//! healthy, init marks it good through RAUC (`rauc.rs`); the direct grubenv
//! edit here is the fallback when RAUC is not running, and the console's.
//!
//! `CONFIRMED` in the grubenv names the slot last confirmed healthy. GRUB puts
//! `gatehouse.trial` on the command line of any other slot it boots in the
//! normal way (a new install, or a switch the owner asked for), so init knows
//! a trial boot before /data, which holds the update record, is mounted: a
//! fatal error that early still reboots to the confirmed slot.

use crate::log;

pub const ESP_PARTNAME: &str = "esp";
pub const GRUBENV: &str = "EFI/BOOT/grubenv";
const HEADER: &str = "# GRUB Environment Block\n";
/// GRUB's environment block is exactly one 1 KiB block, padded with '#'.
const BLOCK: usize = 1024;

/// The slot this boot came from, from `rauc.slot=` on the kernel command line.
pub fn booted_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
}

/// Parses a grubenv block into ordered key/value pairs.
pub fn parse(block: &str) -> Option<Vec<(String, String)>> {
    let body = block.strip_prefix(HEADER)?;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Serializes pairs into a padded 1 KiB block; `None` if they do not fit.
pub fn render(vars: &[(String, String)]) -> Option<Vec<u8>> {
    let mut out = String::from(HEADER);
    for (k, v) in vars {
        out.push_str(&format!("{k}={v}\n"));
    }
    if out.len() > BLOCK {
        return None;
    }
    let mut bytes = out.into_bytes();
    bytes.resize(BLOCK, b'#');
    Some(bytes)
}

pub fn set(vars: &mut Vec<(String, String)>, key: &str, value: &str) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(kv) => kv.1 = value.to_string(),
        None => vars.push((key.to_string(), value.to_string())),
    }
}

/// The grubenv variable naming the slot last confirmed healthy.
pub const CONFIRMED: &str = "CONFIRMED";
/// What GRUB adds to the command line of a slot other than the confirmed one.
pub const TRIAL_FLAG: &str = "gatehouse.trial";

/// Marks `slot` good and out of trial: OK=1, TRY=0, and the confirmed slot.
pub fn mark_good(vars: &mut Vec<(String, String)>, slot: &str) {
    set(vars, &format!("{slot}_OK"), "1");
    set(vars, &format!("{slot}_TRY"), "0");
    set(vars, CONFIRMED, slot);
}

/// Whether GRUB booted this as a trial (see the module comment).
pub fn trial_from_cmdline(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == TRIAL_FLAG)
}

/// Whether a boot GRUB flagged is still on trial: the flag stays on the command line after
/// init confirmed the slot, so it counts only while another slot (or none that could be
/// read) is the confirmed one. `confirmed` (which reads the grubenv) runs only for a
/// flagged boot.
pub fn still_on_trial(
    cmdline: &str,
    booted: Option<&str>,
    confirmed: impl FnOnce() -> Option<String>,
) -> bool {
    trial_from_cmdline(cmdline) && booted.is_some() && confirmed().as_deref() != booted
}

/// Makes `slot` the first choice of the next boots. Only a slot marked good
/// may be chosen; its trial flag is cleared so GRUB will take it.
pub fn prefer(vars: &mut Vec<(String, String)>, slot: &str) -> Result<(), String> {
    let get = |k: &str| vars.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    if get(&format!("{slot}_OK")).as_deref() != Some("1") {
        return Err(format!("slot {slot} is not marked good"));
    }
    let order = get("ORDER").unwrap_or_else(|| "A B".into());
    let mut slots: Vec<&str> = vec![slot];
    slots.extend(order.split_whitespace().filter(|s| *s != slot));
    let order = slots.join(" ");
    set(vars, "ORDER", &order);
    set(vars, &format!("{slot}_TRY"), "0");
    Ok(())
}

/// Value of `key` in parsed grubenv pairs.
pub fn get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Where init keeps the ESP mounted, for RAUC's GRUB backend (grub-editenv).
pub const ESP_MOUNT: &str = "/boot/efi";

/// Mounts the ESP (vfat) on `target` with mount options `data`.
fn mount_esp_on(target: &str, data: Option<&str>) -> Result<(), String> {
    let dev = crate::data::find_partition(ESP_PARTNAME).ok_or("no ESP partition")?;
    let flags = nix::mount::MsFlags::MS_NOSUID
        | nix::mount::MsFlags::MS_NODEV
        | nix::mount::MsFlags::MS_NOEXEC;
    nix::mount::mount(Some(dev.as_str()), target, Some("vfat"), flags, data)
        .map_err(|e| format!("mount {dev} on {target}: {e}"))
}

/// Mounts the ESP at `ESP_MOUNT` for the life of the system. `flush` writes
/// each file out on close, so the grubenv is on disk once an edit returns.
pub fn mount_esp() -> Result<(), String> {
    mount_esp_on(ESP_MOUNT, Some("flush"))
}

/// Runs `f` on the grubenv: on the ESP init mounted, or (when that is not
/// there) with the ESP mounted just for this.
fn with_grubenv<T>(f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, String> {
    let mounted = format!("{ESP_MOUNT}/{GRUBENV}");
    if std::path::Path::new(&mounted).exists() {
        return f(&mounted);
    }
    let mnt = format!("/run/gatehouse/esp-{}", std::process::id());
    let _ = std::fs::create_dir_all(&mnt);
    mount_esp_on(&mnt, None)?;
    let result = f(&format!("{mnt}/{GRUBENV}"));
    let _ = nix::mount::umount(mnt.as_str());
    let _ = std::fs::remove_dir(&mnt);
    result
}

/// The grubenv's variables.
pub fn read_env() -> Result<Vec<(String, String)>, String> {
    with_grubenv(|path| {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        parse(&text).ok_or_else(|| format!("{path}: not a grubenv"))
    })
}

/// Applies `edit` to the grubenv and writes it back atomically.
pub fn edit_env(
    edit: impl FnOnce(&mut Vec<(String, String)>) -> Result<(), String>,
) -> Result<(), String> {
    with_grubenv(|path| {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut vars = parse(&text).ok_or_else(|| format!("{path}: not a grubenv"))?;
        edit(&mut vars)?;
        let bytes = render(&vars).ok_or("grubenv would exceed 1 KiB")?;
        crate::atomic_file::write(std::path::Path::new(path), &bytes)
            .map_err(|e| format!("{path}: {e}"))
    })
}

/// Marks the booted slot good. Errors are logged: an unconfirmed slot only
/// means the next boot tries the other one.
pub fn confirm_boot() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(slot) = booted_slot(&cmdline) else {
        log!("bootslot: no rauc.slot= on the command line; nothing to confirm");
        return;
    };
    let result = edit_env(|vars| {
        mark_good(vars, &slot);
        Ok(())
    });
    match result {
        Ok(()) => log!("bootslot: slot {slot} confirmed good"),
        Err(e) => log!("bootslot: {e}; slot {slot} stays unconfirmed"),
    }
}

/// The slot last confirmed healthy, if the grubenv can be read and names one.
pub fn confirmed() -> Option<String> {
    read_env()
        .ok()
        .and_then(|vars| get(&vars, CONFIRMED).map(str::to_string))
}

/// Records `slot` as the confirmed one, after RAUC marked it good (RAUC's GRUB
/// backend knows only OK and TRY). Writes only on a change: the ESP is flash.
pub fn note_confirmed(slot: &str) {
    let result = read_env().and_then(|vars| {
        if get(&vars, CONFIRMED) == Some(slot) {
            return Ok(false);
        }
        edit_env(|vars| {
            set(vars, CONFIRMED, slot);
            Ok(())
        })
        .map(|()| true)
    });
    match result {
        Ok(true) => log!("bootslot: slot {slot} is now the confirmed one"),
        Ok(false) => {}
        Err(e) => log!("bootslot: recording slot {slot} as confirmed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &str) -> String {
        let mut s = format!("{HEADER}{body}");
        while s.len() < BLOCK {
            s.push('#');
        }
        s
    }

    #[test]
    fn slot_from_cmdline() {
        assert_eq!(
            booted_slot("console=ttyS0 rauc.slot=B quiet").as_deref(),
            Some("B")
        );
        assert_eq!(booted_slot("console=ttyS0"), None);
        assert_eq!(booted_slot("rauc.slot=../x"), None);
    }

    fn vars(body: &str) -> Vec<(String, String)> {
        parse(&block(body)).unwrap()
    }

    #[test]
    fn marks_only_the_booted_slot() {
        let mut v = vars("ORDER=A B\nA_OK=1\nA_TRY=1\nB_OK=1\nB_TRY=1\n");
        mark_good(&mut v, "A");
        let out = render(&v).unwrap();
        assert_eq!(out.len(), BLOCK);
        let v = parse(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(get(&v, "A_TRY"), Some("0"));
        assert_eq!(get(&v, "A_OK"), Some("1"));
        assert_eq!(get(&v, "B_TRY"), Some("1"));
        assert_eq!(get(&v, "ORDER"), Some("A B"));
        assert_eq!(get(&v, CONFIRMED), Some("A"));
    }

    #[test]
    fn a_flagged_boot_is_on_trial_until_confirmed() {
        let flagged = "rauc.slot=B gatehouse.trial";
        let is = |s: &'static str| move || Some(s.to_string());
        assert!(still_on_trial(flagged, Some("B"), is("A")));
        assert!(
            still_on_trial(flagged, Some("B"), || None),
            "unreadable: trust GRUB"
        );
        assert!(
            !still_on_trial(flagged, Some("B"), is("B")),
            "confirmed since"
        );
        let unread = || -> Option<String> { panic!("the grubenv is read only for a flagged boot") };
        assert!(
            !still_on_trial("rauc.slot=A", Some("A"), unread),
            "not flagged"
        );
        assert!(!still_on_trial("gatehouse.trial", None, is("A")), "no slot");
    }

    #[test]
    fn trial_flag_is_a_whole_word() {
        assert!(trial_from_cmdline(
            "console=ttyS0 rauc.slot=B gatehouse.trial quiet"
        ));
        assert!(!trial_from_cmdline("console=ttyS0 rauc.slot=A quiet"));
        assert!(!trial_from_cmdline("gatehouse.trials gatehouse.trial=0"));
    }

    #[test]
    fn prefer_puts_a_good_slot_first() {
        let mut v = vars("ORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=1\n");
        prefer(&mut v, "B").unwrap();
        assert_eq!(get(&v, "ORDER"), Some("B A"));
        assert_eq!(get(&v, "B_TRY"), Some("0"));
        let mut v = vars("ORDER=A B\nA_OK=1\nB_OK=0\n");
        assert!(prefer(&mut v, "B").is_err());
        assert_eq!(get(&v, "ORDER"), Some("A B"));
    }

    #[test]
    fn rejects_non_grubenv_and_overflow() {
        assert!(parse("hello").is_none());
        let huge = vec![("K".to_string(), "v".repeat(BLOCK))];
        assert!(render(&huge).is_none());
    }
}
