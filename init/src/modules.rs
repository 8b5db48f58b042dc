//! Kernel modules: the image's fixed list, loaded with busybox modprobe.

use crate::log;
use std::process::Command;

pub const LIST: &str = "/etc/gatehouse/modules";

/// The environment variable that names `READY_FILE` to the services.
pub const READY_ENV: &str = "GATEHOUSE_MODULES_READY";
/// Created once the image's list is loaded: services start before that, and those that
/// need the list (gatewayd's NAT) wait for this file.
pub const READY_FILE: &str = "/run/gatehouse/modules-loaded";

/// Creates `READY_FILE` (after the list was loaded, whatever failed: a missing module
/// is reported by the list's log line, and waiting longer would not bring it).
pub fn announce_ready() {
    let made = std::fs::create_dir_all("/run/gatehouse").and_then(|()| {
        let when = format!("{:.3}\n", log::since_boot());
        crate::atomic_file::write(std::path::Path::new(READY_FILE), when.as_bytes())
    });
    if let Err(e) = made {
        log!("modules: cannot create {READY_FILE}: {e}");
    }
}

pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

fn modprobe(args: &[&str]) -> bool {
    Command::new("/bin/modprobe")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Filesystems the boot mounts itself (/data, the ESP). They are loaded
/// before the rest of the modules load in the background: a mount that asks
/// the kernel for a module another modprobe is still loading fails with
/// ENODEV ("request_module fs-ext4 succeeded, but still no fs").
pub const FILESYSTEMS: &[&str] = &[
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
];

/// What the network bring-up needs besides the NIC drivers (coldplug's):
/// br-lan. Loaded before it, so the bridge is never asked of a module that
/// another modprobe is still loading.
pub const NETWORK: &[&str] = &["bridge"];

/// Loads `names` in one modprobe call; false if any failed.
pub fn load(names: &[&str]) -> bool {
    // The initramfs usually loaded them already: skip the exec then.
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|m| !std::path::Path::new("/sys/module").join(m).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let mut args = vec!["-a"];
    args.extend(&missing);
    let ok = modprobe(&args);
    if !ok {
        log!("modules: some of {names:?} failed to load");
    }
    ok
}

/// Loads the image's fixed list. One `modprobe -a` for the lot (each exec is
/// costly early in boot); only if that reports a failure, one call per module
/// to name the ones that are missing.
pub fn load_fixed_list() {
    let text = match std::fs::read_to_string(LIST) {
        Ok(t) => t,
        Err(e) => {
            log!("no module list {LIST}: {e}");
            return;
        }
    };
    let mods = parse_list(&text);
    let mut args = vec!["-a"];
    args.extend(&mods);
    let failed: Vec<&str> = if modprobe(&args) {
        Vec::new()
    } else {
        mods.iter().copied().filter(|m| !modprobe(&[m])).collect()
    };
    log!(
        "modules: {} loaded, {} failed {:?}",
        mods.len() - failed.len(),
        failed.len(),
        failed
    );
}

/// Every distinct modalias the kernel exposes under `dir` (sysfs devices).
pub fn modaliases(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            // Symlinks are skipped: sysfs links back up the tree.
            modaliases(&e.path(), out);
        } else if ft.is_file() && e.file_name() == "modalias" {
            if let Ok(a) = std::fs::read_to_string(e.path()) {
                let a = a.trim();
                if !a.is_empty() {
                    out.insert(a.to_string());
                }
            }
        }
    }
}

/// Coldplug: loads the drivers for the hardware present, so any NIC or disk
/// controller whose module is in the image works without a rebuild.
pub fn coldplug() {
    let mut aliases = std::collections::BTreeSet::new();
    modaliases(std::path::Path::new("/sys/devices"), &mut aliases);
    let mut args = vec!["-a", "-q"];
    args.extend(aliases.iter().map(String::as_str));
    // Aliases without a module in the image fail quietly; that is expected.
    modprobe(&args);
    log!(
        "coldplug: {} device aliases offered to modprobe",
        aliases.len()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_modaliases_below_a_tree() {
        let root = std::env::temp_dir().join(format!("gh-modalias-{}", std::process::id()));
        let dev = root.join("pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00001AF4d00001000sv*\n").unwrap();
        std::fs::write(root.join("pci0000:00/modalias"), "\n").unwrap();
        let mut out = std::collections::BTreeSet::new();
        super::modaliases(&root, &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            vec!["pci:v00001AF4d00001000sv*"]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn list_parsing() {
        assert_eq!(
            super::parse_list("virtio_net\n# comment\n\n bridge  # the LAN\n"),
            vec!["virtio_net", "bridge"]
        );
    }
}
