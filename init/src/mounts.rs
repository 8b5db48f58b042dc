//! Early filesystem mounts. The root stays read-only; everything writable is
//! tmpfs or the data partition.

use crate::log;
use nix::mount::{mount, MsFlags};
use std::path::Path;

fn is_mountpoint(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(target))
        })
        .unwrap_or(false)
}

pub fn mount_one(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    if Path::new("/proc/self/mounts").exists() && is_mountpoint(target) {
        return; // moved in from the initramfs
    }
    let _ = std::fs::create_dir_all(target);
    if let Err(e) = mount(Some(source), target, Some(fstype), flags, data) {
        log!("mount {target} ({fstype}) failed: {e}");
    }
}

pub fn early() {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_one("proc", "/proc", "proc", nosuid, None);
    mount_one("sysfs", "/sys", "sysfs", nosuid, None);
    mount_one(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    );
    mount_one(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=620,ptmxmode=666"),
    );
    mount_one(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64m"),
    );
    mount_one(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=128m"),
    );
    mount_one("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, None);
}
