//! Vendor names for MAC addresses, from the IEEE's MA-L registry as Debian's `ieee-data`
//! ships it (`/usr/share/ieee-data/oui.csv`).
//!
//! The file is about 3 MB of CSV; it is read once, on the first lookup, into a sorted
//! table of 24-bit prefixes pointing into one string of (deduplicated) names, about
//! 1 MB in all. A missing or unreadable file gives an empty table: vendors are a nicety,
//! never a reason for a page to fail.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Where Debian's `ieee-data` puts the registry.
pub const DEFAULT_PATH: &str = "/usr/share/ieee-data/oui.csv";

/// Prefix to vendor, sorted by prefix.
#[derive(Debug, Default)]
pub struct Oui {
    /// (24-bit prefix, start, end) of the name in `names`.
    entries: Vec<(u32, u32, u32)>,
    names: String,
}

impl Oui {
    /// Reads the registry's CSV: `Registry,Assignment,Organization Name,Organization
    /// Address`, fields quoted when they hold commas, quotes or line breaks. Lines that
    /// are not a six-hex-digit assignment (the header, damage) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut raw: Vec<(u32, String)> = Vec::new();
        for rec in records(text) {
            let (Some(assignment), Some(name)) = (rec.get(1), rec.get(2)) else {
                continue;
            };
            let a = assignment.trim();
            let name = name.trim();
            if a.len() != 6 || name.is_empty() {
                continue;
            }
            if let Ok(p) = u32::from_str_radix(a, 16) {
                raw.push((p, name.to_string()));
            }
        }
        raw.sort_by_key(|(p, _)| *p);
        // The registry lists an assignment once; should a file repeat one, the first wins.
        raw.dedup_by_key(|(p, _)| *p);
        let mut names = String::new();
        let mut at: std::collections::HashMap<String, (u32, u32)> = Default::default();
        let mut entries = Vec::with_capacity(raw.len());
        for (p, name) in raw {
            let span = *at.entry(name).or_insert_with_key(|n| {
                let start = names.len() as u32;
                names.push_str(n);
                (start, names.len() as u32)
            });
            entries.push((p, span.0, span.1));
        }
        names.shrink_to_fit();
        Oui { entries, names }
    }

    /// Reads `path`; absent or unreadable gives an empty table (said on stderr unless
    /// simply absent).
    pub fn load(path: &std::path::Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("web: vendor names: {}: {e}", path.display());
                }
                Self::default()
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The vendor the MAC's first three bytes were assigned to. A locally administered
    /// address (a phone's private, randomized one) has no vendor.
    pub fn vendor(&self, mac: &[u8; 6]) -> Option<&str> {
        if mac[0] & 0x02 != 0 {
            return None;
        }
        let p = u32::from_be_bytes([0, mac[0], mac[1], mac[2]]);
        let i = self.entries.binary_search_by_key(&p, |e| e.0).ok()?;
        let (_, s, e) = self.entries[i];
        self.names.get(s as usize..e as usize)
    }
}

/// The CSV's records as lists of fields (RFC 4180 quoting; a quoted field may span lines).
fn records(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => rec.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                rec.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut rec));
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push(rec);
    }
    out
}

/// The file the shared table is read from; tests point it elsewhere before the first
/// lookup.
static PATH: Mutex<Option<PathBuf>> = Mutex::new(None);
static TABLE: OnceLock<Oui> = OnceLock::new();

/// Reads the shared table from `path` instead of `DEFAULT_PATH`. False if the table was
/// already read (the call then changes nothing).
pub fn use_file(path: PathBuf) -> bool {
    if TABLE.get().is_some() {
        return false;
    }
    *PATH.lock().unwrap_or_else(PoisonError::into_inner) = Some(path);
    TABLE.get().is_none()
}

/// The shared table, read on first use. The first call reads the file (tens of
/// milliseconds): async callers make it from a blocking thread.
pub fn table() -> &'static Oui {
    TABLE.get_or_init(|| {
        let path = PATH
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Oui::load(&path)
    })
}

/// The vendor of `mac`, from the shared table.
pub fn vendor(mac: &[u8; 6]) -> Option<&'static str> {
    table().vendor(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Registry,Assignment,Organization Name,Organization Address\r\n\
MA-L,525400,QEMU virtual NIC,somewhere\r\n\
MA-L,F4BD9E,\"Cisco Systems, Inc\",80 West Tasman Drive San Jose CA US 94568 \r\n\
MA-L,00D0EF,IGT,\"9295 PROTOTYPE DRIVE\nRENO NV US 89511 \"\r\n\
MA-L,086195,\"Say \"\"hi\"\" Ltd\",x\r\n\
MA-L,F4BD9F,\"Cisco Systems, Inc\",elsewhere\r\n\
MA-L,ZZZZZZ,Broken,x\r\n\
MA-L,12345,Short,x\r\n";

    #[test]
    fn parses_quotes_commas_and_multiline_fields() {
        let t = Oui::parse(SAMPLE);
        assert_eq!(t.len(), 5);
        assert_eq!(t.vendor(&[0x52, 0x54, 0, 1, 2, 3]), None, "local bit set");
        assert_eq!(
            t.vendor(&[0xf4, 0xbd, 0x9e, 0, 0, 1]),
            Some("Cisco Systems, Inc")
        );
        assert_eq!(t.vendor(&[0, 0xd0, 0xef, 9, 9, 9]), Some("IGT"));
        assert_eq!(t.vendor(&[8, 0x61, 0x95, 0, 0, 0]), Some("Say \"hi\" Ltd"));
        assert_eq!(
            t.vendor(&[0xf4, 0xbd, 0x9f, 0, 0, 0]),
            Some("Cisco Systems, Inc")
        );
        assert_eq!(t.vendor(&[0xf4, 0xbd, 0xa0, 0, 0, 0]), None);
        // One copy of a name shared by several prefixes.
        assert_eq!(t.names.matches("Cisco").count(), 1);
    }

    #[test]
    fn a_missing_file_is_an_empty_table() {
        let t = Oui::load(std::path::Path::new("/nonexistent/oui.csv"));
        assert!(t.is_empty());
        assert_eq!(t.vendor(&[0, 0xd0, 0xef, 0, 0, 0]), None);
    }

    #[test]
    fn the_debian_file_parses_when_installed() {
        let p = std::path::Path::new(DEFAULT_PATH);
        if !p.exists() {
            return;
        }
        let t = Oui::load(p);
        assert!(t.len() > 10_000, "{}", t.len());
        // 00:00:0C, one of Cisco's first blocks.
        assert!(t.vendor(&[0, 0, 0x0c, 0, 0, 0]).unwrap().contains("Cisco"));
    }
}
