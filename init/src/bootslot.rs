//! Confirms the booted slot to the bootloader (RAUC's GRUB convention).
//!
//! GRUB sets `<SLOT>_TRY=1` before it boots a slot; a slot still marked so at
//! the next boot is skipped, which is the automatic rollback. Once this boot is
//! healthy, init clears the flag in the grubenv on the ESP. The A/B update work
//! will route this through RAUC's mark-good; the file format stays the same.

use crate::log;
use std::io::Write;

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

/// Marks `slot` good in the grubenv text: OK=1, TRY=0.
pub fn mark_good(block: &str, slot: &str) -> Option<Vec<u8>> {
    let mut vars = parse(block)?;
    set(&mut vars, &format!("{slot}_OK"), "1");
    set(&mut vars, &format!("{slot}_TRY"), "0");
    render(&vars)
}

/// Mounts the ESP, rewrites the grubenv atomically, unmounts. Errors are logged:
/// an unconfirmed slot only means the next boot tries the other one.
pub fn confirm_boot() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(slot) = booted_slot(&cmdline) else {
        log!("bootslot: no rauc.slot= on the command line; nothing to confirm");
        return;
    };
    let Some(dev) = crate::data::find_partition(ESP_PARTNAME) else {
        log!("bootslot: no ESP partition; slot {slot} stays unconfirmed");
        return;
    };
    let mnt = "/run/gatehouse/esp";
    let _ = std::fs::create_dir_all(mnt);
    let flags = nix::mount::MsFlags::MS_NOSUID
        | nix::mount::MsFlags::MS_NODEV
        | nix::mount::MsFlags::MS_NOEXEC;
    if let Err(e) = nix::mount::mount(Some(dev.as_str()), mnt, Some("vfat"), flags, None::<&str>) {
        log!("bootslot: mount {dev}: {e}; slot {slot} stays unconfirmed");
        return;
    }
    let path = format!("{mnt}/{GRUBENV}");
    let result = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| mark_good(&text, &slot).ok_or_else(|| "unreadable grubenv".to_string()))
        .and_then(|bytes| write_atomic(&path, &bytes).map_err(|e| e.to_string()));
    match result {
        Ok(()) => log!("bootslot: slot {slot} confirmed good"),
        Err(e) => log!("bootslot: {path}: {e}; slot {slot} stays unconfirmed"),
    }
    let _ = nix::mount::umount(mnt);
}

fn write_atomic(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = format!("{path}.new");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    nix::unistd::sync();
    Ok(())
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

    #[test]
    fn marks_only_the_booted_slot() {
        let env = block("ORDER=A B\nA_OK=1\nA_TRY=1\nB_OK=1\nB_TRY=1\n");
        let out = mark_good(&env, "A").unwrap();
        assert_eq!(out.len(), BLOCK);
        let text = String::from_utf8(out).unwrap();
        let vars = parse(&text).unwrap();
        let get = |k: &str| vars.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A_TRY"), Some("0"));
        assert_eq!(get("A_OK"), Some("1"));
        assert_eq!(get("B_TRY"), Some("1"));
        assert_eq!(get("ORDER"), Some("A B"));
    }

    #[test]
    fn rejects_non_grubenv_and_overflow() {
        assert!(mark_good("hello", "A").is_none());
        let huge = vec![("K".to_string(), "v".repeat(BLOCK))];
        assert!(render(&huge).is_none());
    }
}
