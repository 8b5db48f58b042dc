//! gatehouse-console: the recovery menu on the serial console (ttyS0).
//!
//! init runs it as a service with the console as its terminal and restarts it
//! if it exits. Every action that changes something asks or says what it did,
//! and is logged to the boot log too.

use init::bootslot;
use init::console::{self, Action};
use init::log;
use std::io::{BufRead, Write};
use std::process::Command;

const CONFIG: &str = init::settings::CONFIG;

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn booted_slot() -> String {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    bootslot::booted_slot(&cmdline).unwrap_or_else(|| "?".into())
}

fn version() -> String {
    std::fs::read_to_string("/etc/gatehouse/version")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn status() {
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    say(&format!(
        "\n{hostname}: version {}, booted from slot {}\n",
        version(),
        booted_slot()
    ));
    match bootslot::read_env() {
        Ok(vars) => {
            let get = |k: &str| bootslot::get(&vars, k).unwrap_or("-").to_string();
            say(&format!("boot order: {}\n", get("ORDER")));
            for slot in ["A", "B"] {
                say(&format!(
                    "  slot {slot}: good={} on-trial={}\n",
                    get(&format!("{slot}_OK")),
                    get(&format!("{slot}_TRY"))
                ));
            }
        }
        Err(e) => say(&format!("boot slots: {e}\n")),
    }
    say("addresses:\n");
    say(&output("/bin/ip", &["-4", "-o", "addr", "show"]));
    if let Ok(wlan) = std::fs::read_to_string(init::wlan::STATUS_FILE) {
        say(&format!("wlan: {wlan}"));
    }
    match std::fs::read_to_string(console::HTTPS_FINGERPRINT_FILE) {
        Ok(fp) => say(&format!("admin page certificate (https): {fp}")),
        Err(_) => say("admin page certificate (https): not made yet\n"),
    }
    say("services:\n");
    say(&std::fs::read_to_string("/run/gatehouse/services").unwrap_or_default());
}

fn switch_slot() {
    let target = console::other_slot(&booted_slot());
    match bootslot::edit_env(|vars| bootslot::prefer(vars, target)) {
        Ok(()) => {
            log::line("console", &format!("next boot will use slot {target}"));
            say(&format!(
                "Slot {target} will be booted from now on. Reboot to use it (menu 8).\n"
            ));
        }
        Err(e) => say(&format!("Cannot switch to slot {target}: {e}\n")),
    }
}

fn factory_reset() {
    say(&format!(
        "This erases all settings, leases and passwords. Type {} to confirm: ",
        console::CONFIRM_WORD
    ));
    if read_line().as_deref().map(str::trim) != Some(console::CONFIRM_WORD) {
        say("Cancelled.\n");
        return;
    }
    let marker = init::data::RESET_MARKER;
    match std::fs::write(marker, b"requested from the serial console\n") {
        Ok(()) => {
            nix::unistd::sync();
            log::line("console", "factory reset requested; rebooting");
            say("Factory reset: rebooting to erase the data partition.\n");
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), nix::sys::signal::SIGTERM);
        }
        Err(e) => say(&format!("Cannot mark the data partition for reset: {e}\n")),
    }
}

fn reset_password() {
    match std::fs::remove_file(console::PASSWORD_FILE) {
        Ok(()) => say("Admin password removed: the next visit to the admin page sets a new one.\n"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say("No admin password is set: the next visit to the admin page sets one.\n")
        }
        Err(e) => say(&format!("Cannot remove {}: {e}\n", console::PASSWORD_FILE)),
    }
}

fn reset_network() {
    let text = std::fs::read_to_string(CONFIG).unwrap_or_default();
    let backup = format!("{CONFIG}.before-network-reset");
    let new = console::without_network(&text);
    let result = std::fs::write(&backup, &text)
        .and_then(|_| init::atomic_file::write(std::path::Path::new(CONFIG), new.as_bytes()));
    match result {
        Ok(()) => {
            log::line("console", "network settings reset to defaults");
            // The next boot chooses the WAN port afresh (e.g. after re-cabling).
            let _ = std::fs::remove_file(init::net::MEMORY);
            say(&format!(
                "Network settings reset (old file kept as {backup}); the WAN port is chosen \
                 afresh at the next boot. Restarting gatewayd.\n"
            ));
            // init restarts it with the new file.
            let _ = Command::new("/bin/killall").arg("gatewayd").status();
        }
        Err(e) => say(&format!("Cannot rewrite {CONFIG}: {e}\n")),
    }
}

fn show_logs() {
    if logread(&["-n".into(), "60".into()]) != 0 {
        say(&output("/bin/tail", &["-n", "60", init::log::LOG_FILE]));
    }
}

const LOGREAD_USAGE: &str = "usage: logs [-f] [-n LINES] [SERVICE]\n\
    Prints the log rings PID 1 keeps (init's and each service's), oldest first;\n\
    -f keeps following. Sources: init and the names in /etc/gatehouse/services.toml.\n";

/// `logs` (logread-like): the log rings, read through init's socket.
fn logread(args: &[String]) -> i32 {
    let mut req = init::logring::Request {
        follow: false,
        lines: 1000,
        source: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-f" => req.follow = true,
            "-n" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => req.lines = n,
                None => {
                    eprint!("{LOGREAD_USAGE}");
                    return 2;
                }
            },
            s if !s.starts_with('-') && req.source.is_none() => req.source = Some(s.to_string()),
            _ => {
                eprint!("{LOGREAD_USAGE}");
                return 2;
            }
        }
    }
    let res = init::logring::read(init::logring::SOCKET, &req, |line| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("logs: {}: {e}", init::logring::SOCKET);
            1
        }
    }
}

/// `freeze-init`: stops PID 1 the way a debugger would, to prove that the
/// hardware watchdog resets a wedged init. The kernel drops SIGSTOP sent to
/// PID 1, so this holds it in a ptrace stop instead, for as long as this
/// process lives.
fn freeze_init() -> i32 {
    use nix::sys::ptrace;
    let init = nix::unistd::Pid::from_raw(1);
    if let Err(e) =
        ptrace::seize(init, ptrace::Options::empty()).and_then(|_| ptrace::interrupt(init))
    {
        eprintln!("freeze-init: {e}");
        return 1;
    }
    log::line(
        "console",
        "init frozen (ptrace stop); the watchdog should reset the machine",
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn shell() {
    say("Leave the shell with 'exit' to return to this menu.\n");
    let _ = Command::new("/bin/sh").arg("-l").status();
}

/// Asks for one line; empty (or the terminal gone) cancels.
fn ask(question: &str) -> Option<String> {
    say(question);
    let answer = read_line()
        .map(|l| l.trim().to_string())
        .filter(|s| !s.is_empty());
    if answer.is_none() {
        say("Cancelled.\n");
    }
    answer
}

/// Runs a command with its output on the console; true when it succeeded.
fn run_visible(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).status() {
        Ok(st) => st.success(),
        Err(e) => {
            say(&format!("{cmd}: {e}\n"));
            false
        }
    }
}

/// Installs a bundle with the rauc CLI after showing what it is and asking:
/// the owner confirms every install here, downgrades included.
fn install() {
    let Some(src) = ask("Bundle path or http(s) URL: ") else {
        return;
    };
    // RAUC fetches a URL itself, into $TMPDIR (init points it at the data partition).
    install_file(&src);
}

fn install_file(src: &str) {
    let info = Command::new("rauc")
        .args(["info", "--output-format=shell", src])
        .output();
    let text = match info {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            say(&format!(
                "Not installed: {}\n",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            say(&format!("Not installed: rauc: {e}\n"));
            return;
        }
    };
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    say(&format!(
        "Bundle {} for {} (running {}). Type yes to install it: ",
        field("RAUC_MF_VERSION"),
        field("RAUC_MF_COMPATIBLE"),
        version()
    ));
    if read_line().as_deref().map(str::trim) != Some("yes") {
        say("Cancelled.\n");
        return;
    }
    log::line("console", &format!("installing {src}"));
    if run_visible("rauc", &["install", src]) {
        say("Installed. Reboot (menu 8) to start it; a failing update rolls back by itself.\n");
    } else {
        say("The install failed; nothing changed on the running slot.\n");
    }
}

fn backup() {
    let Some(path) = ask("Write the backup to (e.g. /data/config-backup.tar.gz): ") else {
        return;
    };
    let mut args = vec!["czf", path.as_str(), "-C", "/data"];
    args.extend(console::BACKUP_FILES.iter().copied());
    if run_visible("tar", &args) {
        say(&format!("Config saved to {path}.\n"));
    }
}

fn restore() {
    let Some(path) = ask("Backup file to restore: ") else {
        return;
    };
    let listing = output("tar", &["tzf", &path]);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .collect();
    if names.is_empty() || names.iter().any(|n| !console::BACKUP_FILES.contains(n)) {
        say(&format!(
            "Not a config backup (it must hold only {}).\n",
            console::BACKUP_FILES.join(", ")
        ));
        return;
    }
    let _ = std::fs::copy(CONFIG, format!("{CONFIG}.bak"));
    let dir = "/data/.restore";
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::create_dir_all(dir);
    let ok = run_visible("tar", &["xzf", &path, "-C", dir])
        && console::BACKUP_FILES.iter().all(|f| {
            let from = format!("{dir}/{f}");
            std::fs::read(&from)
                .and_then(|b| {
                    init::atomic_file::write(std::path::Path::new(&format!("/data/{f}")), &b)
                })
                .is_ok()
        });
    let _ = std::fs::remove_dir_all(dir);
    if ok {
        log::line("console", &format!("config restored from {path}"));
        say(&format!(
            "Config restored (the old one is {CONFIG}.bak). Reboot to apply it everywhere.\n"
        ));
    } else {
        say("Restore failed; the old config is unchanged.\n");
    }
}

/// RAUC's post-install handler: records the attempt for init's health gate.
/// A failure here fails the install, so an update is never left ungated.
fn rauc_post_install() -> i32 {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let from = bootslot::booted_slot(&cmdline).unwrap_or_else(|| "A".into());
    let manifest = std::env::var("RAUC_BUNDLE_MOUNT_POINT")
        .ok()
        .and_then(|m| std::fs::read_to_string(format!("{m}/manifest.raucm")).ok())
        .unwrap_or_default();
    let pending = init::update_record::Pending {
        to_slot: console::other_slot(&from).to_string(),
        from_slot: from,
        from_version: version(),
        to_version: init::update_record::manifest_version(&manifest)
            .unwrap_or_else(|| "unknown".into()),
        installed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let store = init::update_record::Store::new(init::update_record::DIR);
    match store.set_pending(&pending) {
        Ok(()) => {
            eprintln!(
                "gatehouse: {} installed in slot {}; its first boot is a trial",
                pending.to_version, pending.to_slot
            );
            0
        }
        Err(e) => {
            eprintln!(
                "gatehouse: cannot record the update in {}: {e}",
                init::update_record::DIR
            );
            1
        }
    }
}

fn signal_init(sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), sig);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args[0].rsplit('/').next() == Some("logs") {
        std::process::exit(logread(&args[1..]));
    }
    match args.get(1).map(String::as_str) {
        Some("rauc-post-install") => std::process::exit(rauc_post_install()),
        Some("logs") => std::process::exit(logread(&args[2..])),
        Some("freeze-init") => std::process::exit(freeze_init()),
        _ => {}
    }
    let title = format!(
        "Gatehouse recovery console (version {}, slot {})",
        version(),
        booted_slot()
    );
    loop {
        say(&console::menu_text(&title));
        let Some(line) = read_line() else {
            // The terminal went away; init starts a fresh console.
            return;
        };
        match console::parse_choice(&line) {
            Some(Action::Status) => status(),
            Some(Action::SwitchSlot) => switch_slot(),
            Some(Action::FactoryReset) => factory_reset(),
            Some(Action::ResetPassword) => reset_password(),
            Some(Action::ResetNetwork) => reset_network(),
            Some(Action::Logs) => show_logs(),
            Some(Action::Shell) => shell(),
            Some(Action::Reboot) => {
                say("Rebooting.\n");
                signal_init(nix::sys::signal::Signal::SIGTERM)
            }
            Some(Action::PowerOff) => {
                say("Powering off.\n");
                signal_init(nix::sys::signal::Signal::SIGUSR2)
            }
            Some(Action::Install) => install(),
            Some(Action::Backup) => backup(),
            Some(Action::Restore) => restore(),
            None => say("Type a number from the menu.\n"),
        }
    }
}
