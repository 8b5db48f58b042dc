//! First-boot growth of the data partition to the end of the medium, so an
//! image written to a 32 GB card uses the whole card.
//!
//! sfdisk (Debian's fdisk package) rewrites the GPT. The kernel cannot re-read
//! the table of a disk whose root slot is mounted, so the new size is told to
//! it for this one partition with the BLKPG ioctl; no tool in the image does
//! that, hence the few lines of ioctl below.

use crate::log;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// Grow only when at least this much (in 512-byte sectors) is unused: 64 MiB.
pub const MIN_GAIN_SECTORS: u64 = 64 * 2048;

/// What sysfs says about a partition and its disk, in 512-byte sectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub disk: String,
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub disk_size: u64,
    /// Start of the next partition on the disk, if any follows this one.
    pub next_start: Option<u64>,
}

/// True when the partition is last on the disk and enough space follows it.
pub fn should_grow(l: &Layout) -> bool {
    // The backup GPT takes the last 33 sectors.
    let usable_end = l.disk_size.saturating_sub(34);
    l.next_start.is_none() && usable_end.saturating_sub(l.start + l.size) >= MIN_GAIN_SECTORS
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads the layout of `/dev/<part>` from sysfs.
pub fn layout(part: &str) -> Option<Layout> {
    let class = format!("/sys/class/block/{part}");
    let disk_dir = std::fs::canonicalize(&class).ok()?.parent()?.to_path_buf();
    let disk = disk_dir.file_name()?.to_string_lossy().into_owned();
    let start = read_u64(&format!("{class}/start"))?;
    let next_start = std::fs::read_dir(&disk_dir)
        .ok()?
        .flatten()
        .filter_map(|e| read_u64(&format!("{}/start", e.path().display())))
        .filter(|s| *s > start)
        .min();
    Some(Layout {
        number: read_u64(&format!("{class}/partition"))? as u32,
        size: read_u64(&format!("{class}/size"))?,
        disk_size: read_u64(&format!("{}/size", disk_dir.display()))?,
        start,
        next_start,
        disk,
    })
}

/// The size sfdisk reports for partition `number` in its `--dump` output.
pub fn dumped_size(dump: &str, number: u32) -> Option<u64> {
    dump.lines()
        .filter(|l| {
            l.split_once(" : ")
                .is_some_and(|(dev, _)| dev.ends_with(&number.to_string()))
        })
        .find_map(|l| {
            l.split(',')
                .find_map(|f| f.trim().strip_prefix("size="))
                .and_then(|v| v.trim().parse().ok())
        })
}

fn sfdisk(args: &[&str], input: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("/sbin/sfdisk")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sfdisk: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: i32 = 3;

/// Tells the kernel the new size of one partition of a disk that is in use.
fn kernel_resize(disk: &str, l: &Layout, new_size: u64) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/dev/{disk}"))?;
    let mut part = BlkpgPartition {
        start: (l.start * 512) as i64,
        length: (new_size * 512) as i64,
        pno: l.number as i32,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: BLKPG reads a blkpg_ioctl_arg pointing at a live blkpg_partition.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG, &mut arg) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Grows partition `/dev/<part>` to the end of its disk if it is last and
/// space follows. Returns the new size in MiB when it grew.
pub fn grow_partition(part: &str) -> Option<u64> {
    let l = layout(part)?;
    if !should_grow(&l) {
        return None;
    }
    let disk = format!("/dev/{}", l.disk);
    let steps = sfdisk(&["--relocate", "gpt-bak-std", &disk], None)
        .and_then(|_| {
            sfdisk(
                &[
                    "--no-reread",
                    "--no-tell-kernel",
                    "-q",
                    "-N",
                    &l.number.to_string(),
                    &disk,
                ],
                Some(", +\n"),
            )
        })
        .and_then(|_| sfdisk(&["--dump", &disk], None))
        .and_then(|dump| {
            dumped_size(&dump, l.number).ok_or_else(|| "no size in sfdisk --dump".into())
        })
        .and_then(|size| {
            kernel_resize(&l.disk, &l, size)
                .map(|_| size)
                .map_err(|e| format!("BLKPG: {e}"))
        });
    match steps {
        Ok(size) => Some(size / 2048),
        Err(e) => {
            log!("data: could not grow {part}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(next_start: Option<u64>, disk_size: u64) -> Layout {
        Layout {
            disk: "vda".into(),
            number: 5,
            start: 1_640_448,
            size: 262_144,
            disk_size,
            next_start,
        }
    }

    #[test]
    fn grows_only_the_last_partition_with_room() {
        assert!(should_grow(&layout(None, 62_500_000)));
        assert!(!should_grow(&layout(Some(2_000_000), 62_500_000)));
        // Image written to a medium of exactly its own size: nothing to gain.
        assert!(!should_grow(&layout(None, 1_640_448 + 262_144 + 2048 + 34)));
    }

    #[test]
    fn reads_size_from_dump() {
        let dump = "label: gpt\ndevice: /dev/vda\n\n/dev/vda4 : start= 854016, size= 786432, name=\"rootfs.B\"\n/dev/vda5 : start= 1640448, size= 2553823, type=0FC6, name=\"data\"\n";
        assert_eq!(dumped_size(dump, 5), Some(2_553_823));
        assert_eq!(dumped_size(dump, 4), Some(786_432));
        assert_eq!(dumped_size(dump, 6), None);
    }
}
