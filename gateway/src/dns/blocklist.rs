//! Blocklists from the data partition, loaded at start and again whenever the
//! `[dns]` settings change (the resolver swaps the whole set in at once).
//!
//! Each configured list has a name and a path. The path is a file, or a
//! directory whose regular files (names not starting with '.') are all read,
//! in name order, so lists can be dropped in next to each other. Every line
//! is one of:
//!
//! - hosts format: `0.0.0.0 ads.example.com [more names]` (any address; the
//!   usual `localhost` and `broadcasthost` lines are ignored),
//! - a bare domain: `ads.example.com` (`*.` and Adblock's `||name^` accepted),
//! - blank, or a comment from `#` on.
//!
//! Anything else is skipped and counted as a bad line. A missing or unreadable
//! file is reported in the list's status and on stderr, never fatal. A listed
//! name blocks itself and every name below it.

use super::wire::{self, LabelStarts};
use crate::config;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// What the UI shows per list.
#[derive(Debug, Default, Serialize)]
pub struct ListStats {
    pub name: String,
    pub path: String,
    /// Names loaded from this list (duplicates of earlier lists not counted).
    pub entries: u64,
    pub bad_lines: u64,
    /// Files that could not be read, with the reason.
    pub errors: Vec<String>,
    /// Queries answered as blocked because of this list.
    pub blocked: AtomicU64,
}

#[derive(Default)]
pub struct Blocklists {
    /// Lowercased wire-format name -> index into `lists`.
    names: HashMap<Box<[u8]>, u16>,
    pub lists: Vec<Arc<ListStats>>,
}

/// Names that appear in every hosts file and must never be blocked.
const IGNORED: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

enum Line<'a> {
    Empty,
    Names(Vec<&'a str>),
    Bad,
}

fn parse_line(line: &str) -> Line<'_> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('!') {
        return Line::Empty; // '!' is an Adblock comment
    }
    let mut tokens = line.split_whitespace();
    let first = tokens.next().unwrap_or("");
    if first.parse::<IpAddr>().is_ok() {
        let names: Vec<&str> = tokens.collect();
        if names.is_empty() {
            return Line::Bad;
        }
        return Line::Names(names);
    }
    if tokens.next().is_some() {
        return Line::Bad;
    }
    let name = first
        .strip_prefix("||")
        .and_then(|n| n.strip_suffix('^'))
        .or_else(|| first.strip_prefix("*."))
        .unwrap_or(first);
    Line::Names(vec![name])
}

/// Lowercased wire form of a blockable name, or None if it is not one.
fn blockable(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.contains('.') && !name.bytes().any(|b| b.is_ascii_alphabetic()) {
        return None; // a bare number is not a domain
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return None;
    }
    let w = wire::name_from_str(name)?;
    (w.len() > 1).then_some(w)
}

impl Blocklists {
    pub fn load(sources: &[config::Blocklist]) -> Blocklists {
        let mut b = Blocklists::default();
        for src in sources.iter().filter(|s| s.enabled) {
            let idx = u16::try_from(b.lists.len()).unwrap_or(u16::MAX);
            let mut stats = ListStats {
                name: src.name.clone(),
                path: src.path.clone(),
                ..Default::default()
            };
            for file in files_of(Path::new(&src.path), &mut stats.errors) {
                match std::fs::read(&file) {
                    Ok(bytes) => b.add_text(&String::from_utf8_lossy(&bytes), idx, &mut stats),
                    Err(e) => stats.errors.push(format!("{}: {e}", file.display())),
                }
            }
            for e in &stats.errors {
                eprintln!("gatewayd: dns: blocklist {:?}: {e}", src.name);
            }
            eprintln!(
                "gatewayd: dns: blocklist {:?}: {} names, {} bad lines skipped",
                src.name, stats.entries, stats.bad_lines
            );
            b.lists.push(Arc::new(stats));
        }
        b.names.shrink_to_fit();
        b
    }

    fn add_text(&mut self, text: &str, idx: u16, stats: &mut ListStats) {
        for line in text.lines() {
            match parse_line(line) {
                Line::Empty => {}
                Line::Bad => stats.bad_lines += 1,
                Line::Names(names) => {
                    for n in names {
                        if IGNORED.iter().any(|i| i.eq_ignore_ascii_case(n)) {
                            continue;
                        }
                        match blockable(n) {
                            Some(w) => {
                                if let std::collections::hash_map::Entry::Vacant(v) =
                                    self.names.entry(w.into_boxed_slice())
                                {
                                    v.insert(idx);
                                    stats.entries += 1;
                                }
                            }
                            None => stats.bad_lines += 1,
                        }
                    }
                }
            }
        }
    }

    /// The list blocking `name` (lowercased wire format, with its label
    /// starts), checking the name itself and every parent domain.
    pub fn check(&self, name: &[u8], labels: &LabelStarts) -> Option<u16> {
        if self.names.is_empty() {
            return None;
        }
        labels
            .iter()
            .filter(|&at| at + 1 < name.len())
            .find_map(|at| self.names.get(&name[at..]).copied())
    }

    /// Counts a block against its list.
    pub fn count(&self, list: u16) {
        if let Some(l) = self.lists.get(usize::from(list)) {
            l.blocked.fetch_add(1, Relaxed);
        }
    }
}

/// The files a list path stands for.
fn files_of(path: &Path, errors: &mut Vec<String>) -> Vec<PathBuf> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
            Ok(rd) => {
                let mut v: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                    .map(|e| e.path())
                    .collect();
                v.sort();
                v
            }
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                Vec::new()
            }
        },
        Ok(_) => vec![path.to_path_buf()],
        Err(e) => {
            errors.push(format!("{}: {e}", path.display()));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::tests::query_msg;
    use crate::dns::wire::{parse_question, Key};
    use hickory_proto::rr::RecordType;

    fn lists(texts: &[&str]) -> Blocklists {
        let mut b = Blocklists::default();
        for (i, t) in texts.iter().enumerate() {
            let mut s = ListStats {
                name: format!("l{i}"),
                ..Default::default()
            };
            b.add_text(t, i as u16, &mut s);
            b.lists.push(Arc::new(s));
        }
        b
    }

    fn check(b: &Blocklists, name: &str) -> Option<u16> {
        let bytes = query_msg(name, RecordType::A, 1).to_vec().unwrap();
        let q = parse_question(&bytes).unwrap();
        b.check(Key::new(&q).name(), &q.labels)
    }

    #[test]
    fn hosts_and_domain_formats_with_bad_lines_counted() {
        let b = lists(&[
            "# comment\n127.0.0.1 localhost\n0.0.0.0 ads.example.com tracker.example.net # trailing\n\
             ::1 ip6-localhost\n0.0.0.0\nnot a valid line\n0.0.0.0 bad_name!\n",
            "Evil.Example.ORG\n*.wild.test\n||adblock.test^\n! adblock comment\n\nads.example.com\n",
        ]);
        assert_eq!(b.lists[0].entries, 2);
        assert_eq!(b.lists[0].bad_lines, 3, "bare address, two words, bad name");
        assert_eq!(b.lists[1].entries, 3, "duplicate of list 0 not counted");
        assert_eq!(b.lists[1].bad_lines, 0);
        assert_eq!(check(&b, "ads.example.com."), Some(0));
        assert_eq!(check(&b, "ADS.example.com."), Some(0), "case-insensitive");
        assert_eq!(check(&b, "x.y.ads.example.com."), Some(0), "subdomains too");
        assert_eq!(check(&b, "tracker.example.net."), Some(0));
        assert_eq!(check(&b, "evil.example.org."), Some(1));
        assert_eq!(check(&b, "a.wild.test."), Some(1));
        assert_eq!(check(&b, "adblock.test."), Some(1));
        assert_eq!(check(&b, "example.com."), None, "parents are not blocked");
        assert_eq!(check(&b, "notads.example.com."), None);
        assert_eq!(check(&b, "localhost."), None);
        assert_eq!(check(&b, "."), None);
    }

    #[test]
    fn missing_file_reported_directory_read() {
        let dir = std::env::temp_dir().join(format!(
            "gh-bl-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), "one.test\n").unwrap();
        std::fs::write(dir.join("b.hosts"), "0.0.0.0 two.test\n").unwrap();
        std::fs::write(dir.join(".hidden"), "three.test\n").unwrap();
        let b = Blocklists::load(&[
            config::Blocklist {
                name: "dir".into(),
                path: dir.display().to_string(),
                enabled: true,
            },
            config::Blocklist {
                name: "gone".into(),
                path: dir.join("absent.txt").display().to_string(),
                enabled: true,
            },
            config::Blocklist {
                name: "off".into(),
                path: dir.display().to_string(),
                enabled: false,
            },
        ]);
        assert_eq!(b.lists.len(), 2, "a disabled list is not loaded");
        assert_eq!(b.lists[0].entries, 2);
        assert!(b.lists[0].errors.is_empty());
        assert_eq!(b.lists[1].entries, 0);
        assert_eq!(b.lists[1].errors.len(), 1);
        assert_eq!(check(&b, "two.test."), Some(0));
        assert_eq!(check(&b, "three.test."), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
