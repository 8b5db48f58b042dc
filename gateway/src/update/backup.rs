//! Configuration backup: a .tar.gz holding the config file, and the checks a tarball must
//! pass before its config replaces the one in force. Secrets (the admin password hash)
//! are never in it. Pure: bytes in, bytes or text out.

use std::io::{self, Read};

/// The one name a backup holds.
pub const CONFIG_NAME: &str = "gatehouse.toml";
/// A config file is a few KiB; anything near this is not one.
pub const MAX_FILE: u64 = 256 << 10;
/// Upper bound on a restore upload (compressed).
pub const MAX_TARBALL: usize = 1 << 20;

/// A .tar.gz with `text` as `gatehouse.toml` (mode 0600, dated `mtime`).
pub fn create(text: &str, mtime: u64) -> io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_ustar();
    h.set_size(text.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, CONFIG_NAME, text.as_bytes())?;
    tar.into_inner()?.finish()
}

/// The config text in a backup. Refuses anything but exactly one regular file named
/// `gatehouse.toml` (or `./gatehouse.toml`): other names, absolute paths, `..`, links,
/// devices and directories are all errors, not skipped, so a tarball meant for something
/// else is never half applied.
pub fn extract(tarball: &[u8]) -> Result<String, String> {
    let gz = flate2::read::GzDecoder::new(tarball);
    let mut archive = tar::Archive::new(gz);
    let mut found: Option<String> = None;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a .tar.gz backup: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a .tar.gz backup: {e}"))?;
        let raw = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw).into_owned();
        if name.starts_with('/') {
            return Err(format!("the backup holds an absolute path: {name:?}"));
        }
        if name.split('/').any(|c| c == "..") {
            return Err(format!("the backup holds a path with '..': {name:?}"));
        }
        if name != CONFIG_NAME && name != format!("./{CONFIG_NAME}") {
            return Err(format!(
                "the backup holds {name:?}; only {CONFIG_NAME} is restored"
            ));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("{name:?} in the backup is not a plain file"));
        }
        if found.is_some() {
            return Err(format!("the backup holds {CONFIG_NAME} twice"));
        }
        if entry.size() > MAX_FILE {
            return Err(format!(
                "{name:?} in the backup is too large to be a config"
            ));
        }
        let mut text = String::new();
        entry
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{name:?} in the backup: {e}"))?;
        found = Some(text);
    }
    found.ok_or_else(|| format!("the backup holds no {CONFIG_NAME}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tarball with arbitrary entries, written header by header (the tar crate's builder
    /// refuses to write some of the hostile ones).
    fn raw_tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            let field = &mut h.as_old_mut().name;
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/shadow").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let text = "schema = 1\n[system]\nhostname = \"box\"\n";
        let t = create(text, 1_790_000_000).unwrap();
        assert_eq!(t[..2], [0x1f, 0x8b], "not gzip");
        assert_eq!(extract(&t).unwrap(), text);
        let dotted = raw_tarball(&[("./gatehouse.toml", tar::EntryType::Regular, b"x = 1\n")]);
        assert_eq!(extract(&dotted).unwrap(), "x = 1\n");
    }

    #[test]
    fn hostile_and_foreign_tarballs_are_refused() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let ok: &[u8] = b"[system]\n";
        for (entries, why) in [
            (vec![("/data/gatehouse.toml", Regular, ok)], "absolute"),
            (vec![("../gatehouse.toml", Regular, ok)], "'..'"),
            (vec![("x/../gatehouse.toml", Regular, ok)], "'..'"),
            (
                vec![("ui/admin-password", Regular, ok)],
                "only gatehouse.toml",
            ),
            (
                vec![("gatehouse.toml", Regular, ok), ("extra", Regular, ok)],
                "only gatehouse.toml",
            ),
            (
                vec![("gatehouse.toml", Symlink, b"" as &[u8])],
                "not a plain file",
            ),
            (
                vec![("gatehouse.toml", Directory, b"" as &[u8])],
                "not a plain file",
            ),
            (
                vec![
                    ("gatehouse.toml", Regular, ok),
                    ("gatehouse.toml", Regular, ok),
                ],
                "twice",
            ),
            (vec![], "holds no"),
        ] {
            let e = extract(&raw_tarball(&entries)).unwrap_err();
            assert!(e.contains(why), "{entries:?}: {e}");
        }
        let big = vec![b'#'; MAX_FILE as usize + 1];
        let e = extract(&raw_tarball(&[("gatehouse.toml", Regular, &big)])).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(extract(b"plain text, not gzip")
            .unwrap_err()
            .contains("not a .tar.gz"));
    }
}
