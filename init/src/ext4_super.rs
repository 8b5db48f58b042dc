//! A read-only view of an ext2/3/4 superblock: enough to tell whether the
//! data filesystem needs `e2fsck -p` before it is mounted.
//!
//! Why not always run e2fsck: on a clean filesystem `e2fsck -p` reads these
//! same fields and exits, but starting it (and its libraries, paged in from
//! the compressed root) costs seconds of boot under emulation. The fields
//! are at fixed offsets, so a checked view of a 1 KiB buffer does the same
//! decision without a crate or a process. Anything unusual runs e2fsck.

/// The superblock starts 1024 bytes into the device and is 1024 bytes long.
pub const OFFSET: u64 = 1024;
pub const LEN: usize = 1024;

const MAGIC: u16 = 0xEF53;
const STATE_VALID: u16 = 0x1;
const STATE_ERROR: u16 = 0x2;
const STATE_ORPHANS: u16 = 0x4;
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_64BIT: u32 = 0x80;

pub struct Superblock<'a> {
    buf: &'a [u8],
}

impl<'a> Superblock<'a> {
    /// The view, if `buf` is a whole superblock with the ext magic.
    pub fn new_checked(buf: &'a [u8]) -> Option<Self> {
        let sb = Superblock { buf };
        (buf.len() >= LEN && sb.u16_at(0x38) == MAGIC).then_some(sb)
    }

    fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.buf[off], self.buf[off + 1]])
    }

    fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.buf[off..off + 4].try_into().unwrap_or_default())
    }

    pub fn mount_count(&self) -> u16 {
        self.u16_at(0x34)
    }

    /// Negative or zero: no mount-count limit.
    pub fn max_mount_count(&self) -> i16 {
        self.u16_at(0x36) as i16
    }

    pub fn state(&self) -> u16 {
        self.u16_at(0x3A)
    }

    pub fn last_check(&self) -> u32 {
        self.u32_at(0x40)
    }

    pub fn check_interval(&self) -> u32 {
        self.u32_at(0x44)
    }

    pub fn has_journal(&self) -> bool {
        self.u32_at(0x5C) & COMPAT_HAS_JOURNAL != 0
    }

    /// The journal holds transactions not yet written home (an unclean stop).
    pub fn needs_recovery(&self) -> bool {
        self.u32_at(0x60) & INCOMPAT_RECOVER != 0
    }

    /// The filesystem's size in bytes: its block count times its block size.
    pub fn size_bytes(&self) -> u64 {
        let lo = u64::from(self.u32_at(0x4));
        let hi = if self.u32_at(0x60) & INCOMPAT_64BIT != 0 {
            u64::from(self.u32_at(0x150))
        } else {
            0
        };
        // Blocks are 1 KiB << s_log_block_size, 64 KiB at most.
        let shift = 10 + self.u32_at(0x18).min(6);
        ((hi << 32) | lo) << shift
    }

    /// Why `e2fsck -p` must run before mounting, or None when the filesystem
    /// was cleanly unmounted and no periodic check is due. `now` is Unix time.
    /// Conservative: an unclean stop is checked too, though the kernel would
    /// replay the journal by itself.
    pub fn fsck_reason(&self, now: u64) -> Option<&'static str> {
        let state = self.state();
        if state & STATE_ERROR != 0 {
            return Some("the kernel recorded errors");
        }
        if state & STATE_VALID == 0 || state & STATE_ORPHANS != 0 {
            return Some("not cleanly unmounted");
        }
        if self.needs_recovery() {
            return Some(if self.has_journal() {
                "the journal needs recovery (unclean stop)"
            } else {
                "recovery flag without a journal"
            });
        }
        let max = self.max_mount_count();
        if max > 0 && self.mount_count() >= max as u16 {
            return Some("mount count limit reached");
        }
        let interval = u64::from(self.check_interval());
        if interval > 0 && now >= u64::from(self.last_check()) + interval {
            return Some("check interval passed");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Vec<u8> {
        let mut b = vec![0u8; LEN];
        b[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        b[0x3A..0x3C].copy_from_slice(&STATE_VALID.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&(-1i16).to_le_bytes());
        b[0x5C..0x60].copy_from_slice(&COMPAT_HAS_JOURNAL.to_le_bytes());
        b
    }

    #[test]
    fn rejects_short_or_foreign_buffers() {
        assert!(Superblock::new_checked(&clean()[..100]).is_none());
        let mut b = clean();
        b[0x38] = 0;
        assert!(Superblock::new_checked(&b).is_none());
    }

    #[test]
    fn clean_filesystem_needs_no_check() {
        let b = clean();
        let sb = Superblock::new_checked(&b).unwrap();
        assert_eq!(sb.fsck_reason(1_800_000_000), None);
    }

    #[test]
    fn errors_unclean_and_recovery_need_a_check() {
        let mut b = clean();
        b[0x3A..0x3C].copy_from_slice(&(STATE_VALID | STATE_ERROR).to_le_bytes());
        let r = Superblock::new_checked(&b).unwrap().fsck_reason(0);
        assert_eq!(r, Some("the kernel recorded errors"));

        let mut b = clean();
        b[0x3A..0x3C].copy_from_slice(&0u16.to_le_bytes());
        let r = Superblock::new_checked(&b).unwrap().fsck_reason(0);
        assert_eq!(r, Some("not cleanly unmounted"));

        let mut b = clean();
        b[0x60..0x64].copy_from_slice(&INCOMPAT_RECOVER.to_le_bytes());
        let r = Superblock::new_checked(&b).unwrap().fsck_reason(0);
        assert_eq!(r, Some("the journal needs recovery (unclean stop)"));
    }

    #[test]
    fn size_is_blocks_times_block_size() {
        let mut b = clean();
        b[0x4..0x8].copy_from_slice(&32768u32.to_le_bytes());
        b[0x18..0x1C].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(Superblock::new_checked(&b).unwrap().size_bytes(), 128 << 20);
        // The high half counts only on a 64-bit filesystem.
        b[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(Superblock::new_checked(&b).unwrap().size_bytes(), 128 << 20);
        b[0x60..0x64].copy_from_slice(&INCOMPAT_64BIT.to_le_bytes());
        assert_eq!(
            Superblock::new_checked(&b).unwrap().size_bytes(),
            ((1u64 << 32) + 32768) * 4096
        );
    }

    #[test]
    fn periodic_limits() {
        let mut b = clean();
        b[0x34..0x36].copy_from_slice(&20u16.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&20i16.to_le_bytes());
        let r = Superblock::new_checked(&b).unwrap().fsck_reason(0);
        assert_eq!(r, Some("mount count limit reached"));

        let mut b = clean();
        b[0x40..0x44].copy_from_slice(&1000u32.to_le_bytes());
        b[0x44..0x48].copy_from_slice(&500u32.to_le_bytes());
        let sb = Superblock::new_checked(&b).unwrap();
        assert_eq!(sb.fsck_reason(1499), None);
        assert_eq!(sb.fsck_reason(1500), Some("check interval passed"));
    }
}
