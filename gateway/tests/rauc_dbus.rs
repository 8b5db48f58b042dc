//! The zbus client (`update::Rauc`) against the real thing: Debian's `rauc service` on a
//! private `dbus-daemon`, with two file-backed raw slots and the `noop` bootloader. Checks
//! the method, property and signal names and types the proxy assumes, that a bundle's
//! manifest is read and a stranger's refused, and that an install's end is noticed
//! (where device-mapper is missing the install fails, which exercises the `Completed`
//! path too). Skipped, saying so, where rauc, dbus-daemon, mksquashfs or openssl is
//! missing or we are not root.

use gateway::update::fake::FakeInstaller;
use gateway::update::{Installer, Paths, Rauc, RaucError, Refusal, Source, Update};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMPATIBLE: &str = "gatehouse-test";
const VERSION: &str = "0.3.0+g1a2b3c4.20270101T0000";

struct Lab {
    dir: PathBuf,
    bus: Option<Child>,
    rauc: Option<Child>,
}

impl Lab {
    fn address(&self) -> String {
        format!("unix:path={}", self.dir.join("bus").display())
    }

    fn stop_rauc(&mut self) {
        if let Some(mut c) = self.rauc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop_bus(&mut self) {
        if let Some(mut c) = self.bus.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_rauc();
        self.stop_bus();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A signed bundle of a 1 MiB raw image; returns the image's bytes.
fn bundle(dir: &Path, out: &str, compatible: &str, signer: &str) -> Vec<u8> {
    let input = dir.join(format!("in-{out}"));
    std::fs::create_dir_all(&input).unwrap();
    let image: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4093) as u8).collect();
    std::fs::write(input.join("rootfs.img"), &image).unwrap();
    std::fs::write(
        input.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion={VERSION}\n[bundle]\nformat=verity\n\
             [image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .unwrap();
    run(Command::new("rauc")
        .arg(format!(
            "--cert={}",
            dir.join(format!("{signer}.pem")).display()
        ))
        .arg(format!(
            "--key={}",
            dir.join(format!("{signer}.key")).display()
        ))
        .arg("bundle")
        .arg(&input)
        .arg(dir.join(out)));
    image
}

fn cert(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem"))));
}

/// A bus and a RAUC service on it, or None (and why) where this machine cannot have them.
fn start() -> Option<Lab> {
    let missing: Vec<_> = ["rauc", "dbus-daemon", "mksquashfs", "openssl"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() || !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root and {missing:?}");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("gh-rauc-dbus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let mut lab = Lab {
        dir: dir.clone(),
        bus: None,
        rauc: None,
    };
    std::fs::write(
        dir.join("bus.conf"),
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>"#,
            dir.display()
        ),
    )
    .unwrap();
    for slot in ["slotA.img", "slotB.img"] {
        std::fs::write(dir.join(slot), vec![0u8; 2 << 20]).unwrap();
    }
    cert(&dir, "ours");
    cert(&dir, "stranger");
    std::fs::write(
        dir.join("system.conf"),
        format!(
            "[system]\ncompatible={COMPATIBLE}\nbootloader=noop\ndata-directory={d}/data\n\
             mountprefix={d}/mnt\n[keyring]\npath={d}/ours.pem\n\
             [slot.rootfs.0]\ndevice={d}/slotA.img\ntype=raw\nbootname=A\n\
             [slot.rootfs.1]\ndevice={d}/slotB.img\ntype=raw\nbootname=B\n",
            d = dir.display()
        ),
    )
    .unwrap();
    lab.bus = Some(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", dir.join("bus.conf").display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !dir.join("bus").exists() {
        assert!(Instant::now() < until, "dbus-daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::File::create(dir.join("rauc.log")).unwrap();
    lab.rauc = Some(
        Command::new("rauc")
            .arg(format!("--conf={}", dir.join("system.conf").display()))
            .arg("--override-boot-slot=A")
            .arg("service")
            .env("DBUS_SYSTEM_BUS_ADDRESS", lab.address())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    Some(lab)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zbus_client_speaks_rauc_1_8() {
    let Some(mut lab) = start() else { return };
    let dir = lab.dir.clone();
    let rauc = Rauc::at(lab.address());
    // RAUC takes a moment to claim its name; until then it is "not running".
    let until = Instant::now() + Duration::from_secs(15);
    let compatible = loop {
        match rauc.compatible().await {
            Ok(c) => break c,
            Err(RaucError::NotRunning(_)) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}; rauc log: {}", log(&dir)),
        }
    };
    assert_eq!(compatible, COMPATIBLE);
    assert_eq!(rauc.boot_slot().await.unwrap(), "A");
    assert_eq!(rauc.operation().await.unwrap(), "idle");
    assert_eq!(rauc.last_error().await.unwrap(), "");
    rauc.progress().await.unwrap();
    let slots = rauc.slot_status().await.unwrap();
    let brief: Vec<_> = slots
        .iter()
        .map(|s| (s.name.as_str(), s.bootname.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        brief,
        [("rootfs.0", "A", "booted"), ("rootfs.1", "B", "inactive")]
    );
    assert!(slots.iter().all(|s| !s.boot_status.is_empty()), "{slots:?}");

    let image = bundle(&dir, "ours.raucb", COMPATIBLE, "ours");
    bundle(&dir, "stranger.raucb", COMPATIBLE, "stranger");
    bundle(&dir, "arm.raucb", "gatehouse-aarch64", "ours");
    let info = rauc.inspect(&dir.join("ours.raucb")).await.unwrap();
    assert_eq!(
        (info.compatible.as_str(), info.version.as_str()),
        (COMPATIBLE, VERSION)
    );
    let e = rauc.inspect(&dir.join("stranger.raucb")).await.unwrap_err();
    assert!(matches!(e, RaucError::Failed(_)), "{e:?}");

    // Through the update logic: RAUC's answers become the right refusals.
    let paths = Paths {
        config: dir.join("gatehouse.toml"),
        update_dir: dir.join("update"),
        version_file: dir.join("version"),
    };
    std::fs::write(&paths.version_file, "0.2.0+g0000001.20261122T0512\n").unwrap();
    let update = Arc::new(Update::new(
        Arc::new(Rauc::at(lab.address())),
        paths,
        Arc::new(|| Err("no reboots in tests".into())),
    ));
    for (file, want) in [
        ("stranger.raucb", "verified"),
        ("arm.raucb", "gatehouse-aarch64"),
    ] {
        let busy = update.begin().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let chunks =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        let p = update
            .receive(&busy, Source::Upload, None, chunks)
            .await
            .unwrap();
        let r = update.install(busy, p, false).await.unwrap_err();
        assert!(
            matches!(r, Refusal::Signature(_) | Refusal::Compatible { .. }),
            "{r:?}"
        );
        assert!(r.message().contains(want), "{file}: {}", r.message());
    }

    let (slot, _) = rauc.mark("active", "other").await.unwrap();
    assert_eq!(slot, "rootfs.1");

    // The install's end is noticed whichever way it goes.
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        rauc.install(&dir.join("ours.raucb")),
    )
    .await
    .expect("install never completed");
    match result {
        Ok(()) => {
            let written = std::fs::read(dir.join("slotB.img")).unwrap();
            assert_eq!(&written[..image.len()], &image[..], "slot B not written");
        }
        Err(RaucError::Failed(m)) => {
            assert!(!m.is_empty());
            eprintln!("install failed here (as it does without device-mapper): {m}");
            assert_eq!(rauc.last_error().await.unwrap(), m);
        }
        Err(e) => panic!("{e}; rauc log: {}", log(&dir)),
    }
    assert_eq!(rauc.operation().await.unwrap(), "idle");

    // RAUC gone, then the bus gone: "not running", never a panic or a hang.
    lab.stop_rauc();
    let e = rauc.compatible().await.unwrap_err();
    assert!(matches!(e, RaucError::NotRunning(_)), "{e:?}");
    lab.stop_bus();
    let e = rauc.slot_status().await.unwrap_err();
    assert!(matches!(e, RaucError::NotRunning(_)), "{e:?}");
    let e = rauc.compatible().await.unwrap_err();
    assert!(e.to_string().starts_with("RAUC not running"), "{e}");
    // The fake agrees with the real thing on the shape of a slot list.
    let fake = FakeInstaller::new(COMPATIBLE, VERSION);
    assert_eq!(fake.slot_status().await.unwrap()[1].name, slots[1].name);
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rauc.log")).unwrap_or_default()
}
