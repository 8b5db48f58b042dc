//! Kernel modules: the image's fixed list, loaded with busybox modprobe.

use crate::log;
use std::process::Command;

pub const LIST: &str = "/etc/gatehouse/modules";

pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn load_fixed_list() {
    let text = match std::fs::read_to_string(LIST) {
        Ok(t) => t,
        Err(e) => {
            log!("no module list {LIST}: {e}");
            return;
        }
    };
    let mods = parse_list(&text);
    let mut failed = Vec::new();
    for m in &mods {
        // One modprobe per module so one missing module cannot block the rest.
        match Command::new("/bin/modprobe").arg(m).output() {
            Ok(o) if o.status.success() => {}
            _ => failed.push(*m),
        }
    }
    log!(
        "modules: {} loaded, {} failed {:?}",
        mods.len() - failed.len(),
        failed.len(),
        failed
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_parsing() {
        assert_eq!(
            super::parse_list("virtio_net\n# comment\n\n bridge  # the LAN\n"),
            vec!["virtio_net", "bridge"]
        );
    }
}
