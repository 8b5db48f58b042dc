//! Owner edits to the config file, made from the admin UI.
//!
//! An edit is a change to the typed `Config`. The file is then rewritten key by key:
//! only the `[section] key`s whose value changed are replaced in the TOML document,
//! so the owner's comments, key order and untouched settings stay as written, and
//! defaults the owner never wrote stay unwritten (a later release may change them).
//! The result is validated as a whole by the same parser startup uses, written
//! atomically, and only then published to the parts that apply settings live.

use super::{Config, SCHEMA};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use toml_edit::DocumentMut;

/// The config file and the config in force, shared by the UI and the live appliers.
pub struct ConfigFile {
    path: PathBuf,
    /// The config the process started with (what init and the sockets were set up from).
    booted: Arc<Config>,
    /// Why edits are refused (failsafe mode, or a file rejected at startup that the owner
    /// must fix or restore first): writing the defaults over it would lose their settings.
    refused: Option<String>,
    /// One read-modify-write at a time.
    lock: Mutex<()>,
    live: watch::Sender<Arc<Config>>,
    pub stats: EditStats,
}

#[derive(Default, Debug, serde::Serialize)]
pub struct EditStats {
    /// Edits written and published.
    pub applied: AtomicU64,
    /// Edits refused: invalid, or the file could not be read or written.
    pub rejected: AtomicU64,
}

impl ConfigFile {
    pub fn new(path: PathBuf, running: Arc<Config>, refused: Option<String>) -> Self {
        Self {
            path,
            booted: running.clone(),
            refused,
            lock: Mutex::new(()),
            live: watch::channel(running).0,
            stats: EditStats::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config gatewayd started with.
    pub fn booted(&self) -> Arc<Config> {
        self.booted.clone()
    }

    /// The config in force now.
    pub fn current(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }

    /// Follows the config in force (for parts that apply changes live).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.live.subscribe()
    }

    /// Why edits are refused, if they are.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Puts a config read from the file by someone else (SIGHUP) in force.
    pub fn publish(&self, cfg: Config) {
        self.live.send_replace(Arc::new(cfg));
    }

    /// Applies `change` to the file's current settings, validates the result, writes the
    /// file atomically and publishes it. Returns the file's config before and after; on any error
    /// the file and the config in force are unchanged and the error says why, in words
    /// meant for the owner.
    pub fn edit(
        &self,
        change: impl FnOnce(&mut Config) -> Result<(), String>,
    ) -> Result<(Arc<Config>, Arc<Config>), String> {
        let result = self.edit_inner(change);
        match &result {
            Ok(_) => self.stats.applied.fetch_add(1, Relaxed),
            Err(_) => self.stats.rejected.fetch_add(1, Relaxed),
        };
        result
    }

    fn edit_inner(
        &self,
        change: impl FnOnce(&mut Config) -> Result<(), String>,
    ) -> Result<(Arc<Config>, Arc<Config>), String> {
        if let Some(why) = &self.refused {
            return Err(format!("settings cannot be changed: {why}"));
        }
        let _one = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let (old, new_text) = edit_text(&text, change)?;
        let new = super::parse(&new_text).map_err(|e| e.to_string())?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::atomic_file::write(dir, &self.path, new_text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let (old, new) = (Arc::new(old), Arc::new(new));
        self.live.send_replace(new.clone());
        Ok((old, new))
    }
}

/// The pure part of an edit: the file's text, changed. The text must hold a config this
/// release reads (an empty text is the defaults).
pub fn apply_to_text(
    text: &str,
    change: impl FnOnce(&mut Config) -> Result<(), String>,
) -> Result<String, String> {
    edit_text(text, change).map(|(_, t)| t)
}

/// `apply_to_text`, also returning the config the text held before.
fn edit_text(
    text: &str,
    change: impl FnOnce(&mut Config) -> Result<(), String>,
) -> Result<(Config, String), String> {
    let old = super::parse(text).map_err(|e| format!("the config file is invalid: {e}"))?;
    let mut new = old.clone();
    change(&mut new)?;
    // Check before touching the document, so the owner sees the validator's message
    // (which names the setting) rather than a serializer's.
    super::validate(&new)?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the config file is invalid: {e}"))?;
    write_changes(&mut doc, &old, &new)?;
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok((old, out))
}

/// Replaces, in `doc`, each `[section] key` whose value differs between `old` and `new`.
fn write_changes(doc: &mut DocumentMut, old: &Config, new: &Config) -> Result<(), String> {
    let old = to_table(old)?;
    let new = to_table(new)?;
    if old.get("schema") != new.get("schema") || !doc.contains_key("schema") {
        doc.insert("schema", toml_edit::value(i64::from(SCHEMA)));
    }
    for (section, new_sec) in &new {
        let (Some(new_sec), old_sec) = (
            new_sec.as_table(),
            old.get(section).and_then(|v| v.as_table()),
        ) else {
            // A top-level list such as `[[devices]]`.
            if old.get(section) != Some(new_sec) {
                doc.insert(section, to_item(section, new_sec)?);
            }
            continue;
        };
        let empty = toml::Table::new();
        let old_sec = old_sec.unwrap_or(&empty);
        let changed: Vec<(&String, Option<&toml::Value>)> = new_sec
            .iter()
            .filter(|(k, v)| old_sec.get(*k) != Some(*v))
            .map(|(k, v)| (k, Some(v)))
            .chain(
                // Optional settings that were cleared (`None` is not written).
                old_sec
                    .keys()
                    .filter(|k| !new_sec.contains_key(*k))
                    .map(|k| (k, None)),
            )
            .collect();
        if changed.is_empty() {
            continue;
        }
        let table = section_table(doc, section)?;
        for (key, value) in changed {
            match value {
                Some(v) => {
                    table.insert(key, to_item(key, v)?);
                }
                None => {
                    table.remove(key);
                }
            }
        }
    }
    Ok(())
}

fn to_table(cfg: &Config) -> Result<toml::Table, String> {
    toml::Table::try_from(cfg).map_err(|e| format!("cannot write the settings: {e}"))
}

/// `[section]` in the document, created (after the others) when the file had none.
fn section_table<'d>(
    doc: &'d mut DocumentMut,
    section: &str,
) -> Result<&'d mut toml_edit::Table, String> {
    let item = doc
        .entry(section)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    if let Some(inline) = item.as_inline_table() {
        // `lan = { ... }`: make it a normal table so keys can be added one per line.
        *item = toml_edit::Item::Table(inline.clone().into_table());
    }
    item.as_table_mut()
        .ok_or_else(|| format!("the config file's {section} is not a table"))
}

/// A value as the document holds it. Written through `toml`'s serializer and read back by
/// `toml_edit`, so a list of tables becomes `[[section.key]]` blocks rather than one long
/// inline array.
fn to_item(key: &str, v: &toml::Value) -> Result<toml_edit::Item, String> {
    let mut one = toml::Table::new();
    one.insert(key.to_string(), v.clone());
    let text = toml::to_string(&one).map_err(|e| format!("cannot write {key}: {e}"))?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot write {key}: {e}"))?;
    doc.remove(key)
        .ok_or_else(|| format!("cannot write {key}: nothing serialized"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "# my router\nschema = 1\n\n[system]\n# the name on the LAN\nhostname = \"home\"\n\n[dhcp]\nlease_secs = 7200 # two hours\n";

    #[test]
    fn a_change_touches_only_its_key_and_keeps_comments() {
        let out = apply_to_text(OWNER, |c| {
            c.dhcp.lease_secs = 3600;
            Ok(())
        })
        .unwrap();
        assert!(out.contains("# my router"), "{out}");
        assert!(
            out.contains("# the name on the LAN\nhostname = \"home\""),
            "{out}"
        );
        assert!(out.contains("lease_secs = 3600"), "{out}");
        // Nothing the owner left at its default got pinned.
        assert!(!out.contains("range_start"), "{out}");
        assert_eq!(super::super::parse(&out).unwrap().dhcp.lease_secs, 3600);
    }

    #[test]
    fn lists_of_tables_are_written_as_blocks_and_read_back() {
        let out = apply_to_text(OWNER, |c| {
            c.nat.forwards.push(crate::config::Forward {
                protocol: crate::config::ForwardProtocol::Tcp,
                external: "8000-8010".parse().unwrap(),
                inside: "192.168.1.20:8000".parse().unwrap(),
            });
            Ok(())
        })
        .unwrap();
        assert!(out.contains("[[nat.forwards]]"), "{out}");
        let cfg = super::super::parse(&out).unwrap();
        assert_eq!(cfg.nat.forwards.len(), 1);
        assert_eq!(cfg.nat.forwards[0].external.last, 8010);
        // And removing it leaves an empty list that still parses.
        let out = apply_to_text(&out, |c| {
            c.nat.forwards.clear();
            Ok(())
        })
        .unwrap();
        assert!(super::super::parse(&out).unwrap().nat.forwards.is_empty());
    }

    #[test]
    fn cleared_options_are_removed() {
        let text = "[wlan]\nenabled = true\nssid = \"home\"\npassphrase = \"correct horse\"\n";
        let out = apply_to_text(text, |c| {
            c.wlan.country = Some("DE".into());
            c.wlan.ssid = None;
            c.wlan.enabled = false;
            Ok(())
        })
        .unwrap();
        assert!(!out.contains("ssid"), "{out}");
        assert!(out.contains("country = \"DE\""), "{out}");
    }

    #[test]
    fn invalid_results_and_invalid_files_are_refused() {
        let e = apply_to_text(OWNER, |c| {
            c.lan.prefix_len = 31;
            Ok(())
        })
        .unwrap_err();
        assert!(e.contains("prefix_len"), "{e}");
        let e = apply_to_text("[dhcp\n", |_| Ok(())).unwrap_err();
        assert!(e.starts_with("the config file is invalid"), "{e}");
        let e = apply_to_text(OWNER, |_| Err("no such device".into())).unwrap_err();
        assert_eq!(e, "no such device");
    }

    #[test]
    fn an_empty_file_gets_the_schema_and_the_change() {
        let out = apply_to_text("", |c| {
            c.system.hostname = "gw".into();
            Ok(())
        })
        .unwrap();
        assert!(out.contains("schema = 1"), "{out}");
        assert_eq!(super::super::parse(&out).unwrap().system.hostname, "gw");
    }

    #[test]
    fn edits_write_the_file_publish_and_count() {
        let dir = std::env::temp_dir().join(format!("gh-cfg-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gatehouse.toml");
        std::fs::write(&path, OWNER).unwrap();
        let file = ConfigFile::new(
            path.clone(),
            Arc::new(super::super::parse(OWNER).unwrap()),
            None,
        );
        let mut rx = file.subscribe();
        let (old, new) = file
            .edit(|c| {
                c.dhcp.lease_secs = 600;
                Ok(())
            })
            .unwrap();
        assert_eq!((old.dhcp.lease_secs, new.dhcp.lease_secs), (7200, 600));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().dhcp.lease_secs, 600);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("lease_secs = 600"));
        assert!(file
            .edit(|c| {
                c.lan.prefix_len = 2;
                Ok(())
            })
            .is_err());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("lease_secs = 600"));
        assert_eq!(file.stats.applied.load(Relaxed), 1);
        assert_eq!(file.stats.rejected.load(Relaxed), 1);
        let refused = ConfigFile::new(path, file.current(), Some("failsafe mode".into()));
        assert!(refused
            .edit(|_| Ok(()))
            .unwrap_err()
            .contains("failsafe mode"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
