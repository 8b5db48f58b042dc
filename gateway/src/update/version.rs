//! Gatehouse version strings: `MAJOR.MINOR.PATCH[+g<commit>[.dirty].<yyyymmddTHHMM>]`, the
//! workspace version plus the build id. The same string is in `/etc/gatehouse/version` and
//! in a bundle's manifest. Builds order by the semver core, then by build time (UTC).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub build: Option<Build>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Abbreviated commit hash (hex digits, no `g`).
    pub commit: String,
    pub dirty: bool,
    /// `yyyymmddHHMM` as a number: sorts like the time it stands for.
    pub stamp: u64,
}

impl Version {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("version {s:?} {why}");
        let (core, build) = match s.trim().split_once('+') {
            Some((c, b)) => (c, Some(b)),
            None => (s.trim(), None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = nums[..] else {
            return Err(bad("is not MAJOR.MINOR.PATCH[+build]"));
        };
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("is not MAJOR.MINOR.PATCH[+build]"));
            }
            t.parse::<u64>().map_err(|_| bad("has a number too large"))
        };
        let build = build
            .map(|b| {
                parse_build(b).ok_or_else(|| {
                    bad("has a build id that is not g<commit>[.dirty].<yyyymmddTHHMM>")
                })
            })
            .transpose()?;
        Ok(Self {
            major: num(major)?,
            minor: num(minor)?,
            patch: num(patch)?,
            build,
        })
    }

    /// Older or newer as builds: the semver core first, then the build time. A version
    /// without a build id counts as older than any build of the same core (its age is
    /// unknown, so installing it over one is treated as a downgrade). Two builds of the
    /// same minute compare equal whatever their commits.
    pub fn age_cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| {
                let stamp = |v: &Self| v.build.as_ref().map(|b| b.stamp);
                stamp(self).cmp(&stamp(other))
            })
    }
}

fn parse_build(b: &str) -> Option<Build> {
    let parts: Vec<&str> = b.split('.').collect();
    let (commit, dirty, stamp) = match parts[..] {
        [c, s] => (c, false, s),
        [c, "dirty", s] => (c, true, s),
        _ => return None,
    };
    let commit = commit.strip_prefix('g')?;
    if commit.is_empty() || !commit.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(Build {
        commit: commit.to_string(),
        dirty,
        stamp: parse_stamp(stamp)?,
    })
}

/// `yyyymmddTHHMM`, checked field by field.
fn parse_stamp(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    if date.len() != 8 || time.len() != 4 {
        return None;
    }
    let digits = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse::<u64>().ok())?
    };
    let (d, t) = (digits(date)?, digits(time)?);
    let (month, day, hour, minute) = (d / 100 % 100, d % 100, t / 100, t % 100);
    let ok = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60;
    ok.then_some(d * 10_000 + t)
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(b) = &self.build {
            let dirty = if b.dirty { ".dirty" } else { "" };
            write!(
                f,
                "+g{}{dirty}.{:08}T{:04}",
                b.commit,
                b.stamp / 10_000,
                b.stamp % 10_000
            )?;
        }
        Ok(())
    }
}

/// Whether installing `bundle` over `running` goes back in time. A version that does not
/// parse cannot be placed, so it needs the owner's consent too.
pub fn is_downgrade(bundle: &str, running: &str) -> bool {
    match (Version::parse(bundle), Version::parse(running)) {
        (Ok(b), Ok(r)) => b.age_cmp(&r) == Ordering::Less,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_prints_build_ids() {
        let x = v("0.1.0+g1a2b3c4.20261122T0512");
        assert_eq!((x.major, x.minor, x.patch), (0, 1, 0));
        let b = x.build.as_ref().unwrap();
        assert_eq!(
            (b.commit.as_str(), b.dirty, b.stamp),
            ("1a2b3c4", false, 202611220512)
        );
        for s in [
            "0.1.0+g1a2b3c4.20261122T0512",
            "1.20.3+gdeadbeef.dirty.20270101T0000",
            "2.0.0",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        assert!(v("0.1.0+gabc.dirty.20261122T0512").build.unwrap().dirty);
    }

    #[test]
    fn rejects_malformed_versions() {
        for s in [
            "",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "v1.2.3",
            "1.2.3-rc1",
            "1.2.3+",
            "1.2.3+1a2b.20261122T0512",
            "1.2.3+gxyz.20261122T0512",
            "1.2.3+g1a2b.2026112T0512",
            "1.2.3+g1a2b.20261322T0512",
            "1.2.3+g1a2b.20261122T2460",
            "1.2.3+g1a2b.clean.20261122T0512",
            "1.2.3+g1a2b",
            "99999999999999999999.0.0",
        ] {
            assert!(Version::parse(s).is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn orders_by_core_then_build_time() {
        let order = [
            "0.1.0",
            "0.1.0+g0000000.20250101T0000",
            "0.1.0+gfffffff.20261122T0511",
            "0.1.0+g1a2b3c4.dirty.20261122T0512",
            "0.1.1+g1a2b3c4.20200101T0000",
            "0.2.0",
            "0.10.0+g1.20200101T0000",
            "1.0.0+g1.19990101T0000",
        ];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(v(a).age_cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        // Same core, same minute: equal, whichever commit.
        assert_eq!(
            v("0.1.0+gaaa.20261122T0512").age_cmp(&v("0.1.0+gbbb.20261122T0512")),
            Ordering::Equal
        );
    }

    #[test]
    fn downgrades() {
        let running = "0.2.0+g1a2b3c4.20261122T0512";
        assert!(is_downgrade("0.1.9+g1a2b3c4.20271122T0512", running));
        assert!(is_downgrade("0.2.0+g1a2b3c4.20261122T0511", running));
        assert!(
            !is_downgrade(running, running),
            "a reinstall is no downgrade"
        );
        assert!(!is_downgrade("0.2.0+g9.20261122T0513", running));
        assert!(!is_downgrade("0.3.0", running));
        assert!(is_downgrade("0.2.0", running));
        assert!(is_downgrade("nonsense", running));
        assert!(is_downgrade("0.3.0", "unknown"));
    }
}
