//! The data partition: found by GPT partition name, checked, created on first
//! boot, mounted at /data, and grown to the end of the medium once the LAN is
//! served (`grow`). If it cannot be had, /data is a tmpfs so the router still
//! routes; the console says that nothing will persist.

use crate::ext4_super;
use crate::log;
use crate::mounts::mount_one;
use nix::mount::MsFlags;
use std::process::Command;

pub const PARTNAME: &str = "data";
pub const MOUNTPOINT: &str = "/data";

/// Finds `/dev/<name>` of the partition whose GPT name is `partname`.
pub fn find_partition(partname: &str) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/block").ok()?;
    for entry in dir.flatten() {
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        if let Some(dev) = partition_from_uevent(&uevent, partname) {
            return Some(format!("/dev/{dev}"));
        }
    }
    None
}

/// Makes /dev/disk/by-partlabel/<GPT name> links (there is no udev), so
/// RAUC's system.conf can name the slots the same way on every medium.
pub fn link_partlabels() {
    let dir = "/dev/disk/by-partlabel";
    let _ = std::fs::create_dir_all(dir);
    let Ok(entries) = std::fs::read_dir("/sys/class/block") else {
        return;
    };
    for entry in entries.flatten() {
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        let field = |k: &str| {
            uevent
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::to_string)
        };
        if let (Some(name), Some(dev)) = (field("PARTNAME="), field("DEVNAME=")) {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                continue;
            }
            let link = format!("{dir}/{name}");
            let _ = std::fs::remove_file(&link);
            if let Err(e) = std::os::unix::fs::symlink(format!("../../{dev}"), &link) {
                log!("data: {link}: {e}");
            }
        }
    }
}

pub fn partition_from_uevent(uevent: &str, partname: &str) -> Option<String> {
    let mut name = None;
    let mut dev = None;
    for line in uevent.lines() {
        if let Some(v) = line.strip_prefix("PARTNAME=") {
            name = Some(v);
        } else if let Some(v) = line.strip_prefix("DEVNAME=") {
            dev = Some(v);
        }
    }
    (name == Some(partname))
        .then(|| dev.map(str::to_string))
        .flatten()
}

/// The bytes where an ext superblock would be (whether one is there is the view's to say).
fn read_superblock(dev: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = vec![0u8; ext4_super::LEN];
    let mut f = std::fs::File::open(dev).ok()?;
    f.seek(SeekFrom::Start(ext4_super::OFFSET)).ok()?;
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// `e2fsck -p` when the superblock asks for it (see ext4_super for why not always).
fn check(dev: &str, sb: &ext4_super::Superblock) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match sb.fsck_reason(now) {
        Some(why) => {
            log!("data: checking {dev} (e2fsck -p): {why}");
            run("/sbin/e2fsck", &["-p", dev]);
        }
        None => log!("data: {dev} was cleanly unmounted; no check due"),
    }
}

fn run(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).output() {
        Ok(o) => {
            if !o.status.success() {
                log!(
                    "{cmd} {args:?}: {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            // e2fsck -p exits 1 when it fixed something: that is success.
            o.status
                .code()
                .is_some_and(|c| c == 0 || (cmd.ends_with("e2fsck") && c == 1))
        }
        Err(e) => {
            log!("{cmd}: {e}");
            false
        }
    }
}

/// /data on a RAM disk: the router keeps working, nothing persists.
fn volatile_data() {
    mount_one(
        "tmpfs",
        MOUNTPOINT,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64m"),
    );
}

/// Written by the recovery console; the next boot re-creates the filesystem.
pub const RESET_MARKER: &str = "/data/.factory-reset";

fn format(dev: &str) -> bool {
    // 4 KiB blocks and one inode per 16 KiB, as for a large filesystem: a first boot
    // formats the image's small partition, which `grow` then stretches over the card.
    run(
        "/sbin/mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-i",
            "16384",
            "-L",
            "gatehouse-data",
            dev,
        ],
    )
}

fn mount_ext4(dev: &str) -> nix::Result<()> {
    let _ = std::fs::create_dir_all(MOUNTPOINT);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(Some(dev), MOUNTPOINT, Some("ext4"), flags, None::<&str>)
}

/// Mounts the data partition on /data: the device, or None when /data is volatile.
pub fn mount_data() -> Option<String> {
    let Some(dev) = find_partition(PARTNAME) else {
        log!("no partition named {PARTNAME:?}: /data is volatile");
        volatile_data();
        return None;
    };
    let bytes = read_superblock(&dev);
    match bytes
        .as_deref()
        .and_then(ext4_super::Superblock::new_checked)
    {
        Some(sb) => check(&dev, &sb),
        None => {
            log!("{dev} has no filesystem: creating ext4 (first boot)");
            if !format(&dev) {
                volatile_data();
                return None;
            }
        }
    }
    let mut mounted = mount_ext4(&dev);
    if mounted.is_ok() && std::path::Path::new(RESET_MARKER).exists() {
        log!("factory reset requested: erasing settings and leases on {dev}");
        let _ = nix::mount::umount(MOUNTPOINT);
        if !format(&dev) {
            volatile_data();
            return None;
        }
        mounted = mount_ext4(&dev);
    }
    match mounted {
        Ok(()) => {
            log!(
                "data partition {dev} mounted on {MOUNTPOINT} ({} MiB)",
                mounted_mib()
            );
            Some(dev)
        }
        Err(e) => {
            log!("mount {dev} on {MOUNTPOINT}: {e}; /data is volatile");
            volatile_data();
            None
        }
    }
}

fn mounted_mib() -> u64 {
    nix::sys::statvfs::statvfs(MOUNTPOINT)
        .map(|v| (v.blocks() * v.fragment_size()) >> 20)
        .unwrap_or(0)
}

/// How far the filesystem may fall short of its partition and be left so: resize2fs
/// leaves out a last block group too small to hold its own metadata (a few MiB).
const GROW_SLACK: u64 = 16 << 20;

/// Grows the partition of the mounted `/data` (`dev`) to the end of its medium, and the
/// filesystem online to fill it, so a large card gets used. Does nothing once done; a
/// growth cut short (a power cut) is finished on a later boot. It runs once the LAN is
/// served: sfdisk and resize2fs, paged in cold, took a second of an emulated first boot
/// before DHCP could answer, and ext4 grows while mounted.
pub fn grow(dev: &str) {
    let name = dev.trim_start_matches("/dev/");
    if let Some(mib) = crate::grow::grow_partition(name) {
        log!("data: partition {dev} grown to {mib} MiB (end of the medium)");
    }
    let partition = crate::grow::layout(name).map(|l| l.size * 512);
    let filesystem = read_superblock(dev)
        .as_deref()
        .and_then(ext4_super::Superblock::new_checked)
        .map(|sb| sb.size_bytes());
    let (Some(partition), Some(filesystem)) = (partition, filesystem) else {
        return;
    };
    if partition > filesystem + GROW_SLACK {
        if run("/sbin/resize2fs", &[dev]) {
            log!(
                "data: filesystem on {dev} grown online to {} MiB",
                mounted_mib()
            );
        } else {
            log!("data: growing the filesystem on {dev} failed; it stays at its size");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uevent_matching() {
        let u = "MAJOR=254\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=data\n";
        assert_eq!(partition_from_uevent(u, "data"), Some("vda4".into()));
        assert_eq!(partition_from_uevent(u, "rootfs.A"), None);
        assert_eq!(
            partition_from_uevent("DEVNAME=vda\nDEVTYPE=disk\n", "data"),
            None
        );
    }
}
