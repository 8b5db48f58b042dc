//! MAC formatting and download file names.

use crate::{Format, Mac};

/// "aa:bb:cc:dd:ee:ff", lower case.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Parses "aa:bb:cc:dd:ee:ff" (also with '-' separators, any case).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Longest client part kept in a file name; keeps names usable on any
/// file system.
const MAX_NAME: usize = 64;

/// Reduces a name to [A-Za-z0-9._-]: ':' becomes '-' (MACs stay readable),
/// anything else outside the set becomes '_'.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| match c {
            ':' => '-',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => '_',
        })
        .take(MAX_NAME)
        .collect();
    if s.is_empty() {
        "client".to_string()
    } else {
        s
    }
}

/// `gatehouse-<name>-<UTC start>-<UTC end>.<ext>`, times as YYYYmmddTHHMMSSZ.
pub fn file_name(name_or_mac: &str, first_ns: u64, last_ns: u64, format: Format) -> String {
    format!(
        "gatehouse-{}-{}-{}.{}",
        sanitize(name_or_mac),
        utc_stamp(first_ns),
        utc_stamp(last_ns),
        format.extension()
    )
}

/// Unix ns to YYYYmmddTHHMMSSZ (UTC). Hand-rolled so the crate needs no
/// date library for one format.
pub fn utc_stamp(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = [0xaa, 0xbb, 0x0c, 0x0d, 0xee, 0x01];
        assert_eq!(format_mac(&mac), "aa:bb:0c:0d:ee:01");
        assert_eq!(parse_mac("AA-BB-0C-0D-EE-01"), Some(mac));
        assert_eq!(parse_mac(" aa:bb:0c:0d:ee:01 "), Some(mac));
        assert_eq!(parse_mac("aa:bb:0c:0d:ee"), None);
        assert_eq!(parse_mac("aa:bb:0c:0d:ee:01:02"), None);
        assert_eq!(parse_mac("aa:bb:0c:0d:ee:1"), None);
        assert_eq!(parse_mac("aa:bb:0c:0d:ee:zz"), None);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_stamp(951_827_696_999_999_999), "20000229T123456Z");
        // 2024-12-31 23:59:59 UTC.
        assert_eq!(utc_stamp(1_735_689_599_000_000_000), "20241231T235959Z");
        assert_eq!(utc_stamp(1_735_689_600_000_000_000), "20250101T000000Z");
    }

    #[test]
    fn file_names() {
        let a = 1_700_000_000_123_456_789;
        let b = 1_700_000_100_000_000_000;
        assert_eq!(
            file_name("aa:bb:cc:dd:ee:ff", a, b, Format::PcapNg),
            "gatehouse-aa-bb-cc-dd-ee-ff-20231114T221320Z-20231114T221500Z.pcapng"
        );
        assert_eq!(
            file_name("Bob's iPhone/../x", a, a, Format::Pcap),
            "gatehouse-Bob_s_iPhone_.._x-20231114T221320Z-20231114T221320Z.pcap"
        );
        assert_eq!(
            file_name("", 0, 0, Format::Pcap),
            "gatehouse-client-19700101T000000Z-19700101T000000Z.pcap"
        );
        assert_eq!(
            file_name("é", 0, 0, Format::Pcap).len(),
            "gatehouse-_-19700101T000000Z-19700101T000000Z.pcap".len()
        );
        let long = "x".repeat(500);
        assert_eq!(sanitize(&long).len(), MAX_NAME);
    }
}
