//! gatewayd: the LAN-facing services and the NAT datapath of a Gatehouse router.

use gateway::context::Context;
use gateway::readiness::{Part, Readiness};
use gateway::{config, dhcp, dns, nat, traffic, update, wan, web};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

struct Args {
    config: PathBuf,
    data_dir: PathBuf,
    run_dir: PathBuf,
    /// Skip the WAN client, DHCP or static (tests that drive the WAN by hand).
    no_wan_client: bool,
    /// Failsafe boot: run on built-in defaults, leave the config file alone.
    no_config: bool,
    /// The file init creates once the kernel modules are loaded (from the environment).
    modules_ready: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        config: PathBuf::from("/data/gatehouse.toml"),
        data_dir: PathBuf::from("/data"),
        run_dir: PathBuf::from("/run/gatehouse"),
        no_wan_client: false,
        no_config: false,
        modules_ready: std::env::var_os(nat::kernel_ready::ENV).map(PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" => a.config = val("--config")?.into(),
            "--data-dir" => a.data_dir = val("--data-dir")?.into(),
            "--run-dir" => a.run_dir = val("--run-dir")?.into(),
            "--no-wan-client" => a.no_wan_client = true,
            "--no-config" => a.no_config = true,
            "-h" | "--help" => {
                println!("usage: gatewayd [--config FILE] [--data-dir DIR] [--run-dir DIR] [--no-wan-client] [--no-config]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gatewayd: {e}");
            std::process::exit(2);
        }
    };
    let loaded = if args.no_config {
        eprintln!("gatewayd: failsafe: ignoring {}", args.config.display());
        config::Loaded {
            config: config::Config::default(),
            error: None,
        }
    } else {
        config::load(&args.config)
    };
    if let Some(e) = &loaded.error {
        eprintln!("gatewayd: config rejected, running on built-in defaults: {e}");
    }
    for dir in [&args.data_dir, &args.run_dir] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("gatewayd: cannot create {}: {e}", dir.display());
        }
    }
    // Before any thread: this takes init's descriptor over.
    let lan_parts: Vec<Part> = [
        (loaded.config.dhcp.enabled, Part::Dhcp),
        (loaded.config.dns.enabled, Part::Dns),
    ]
    .into_iter()
    .filter_map(|(on, p)| on.then_some(p))
    .collect();
    let ready = Readiness::from_env(&lan_parts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(args, loaded, ready));
}

async fn serve(args: Args, loaded: config::Loaded, ready: Arc<Readiness>) {
    let config = Arc::new(loaded.config);
    let (wan_tx, wan_rx) = tokio::sync::watch::channel(wan::WanStatus {
        interface: config.wan.interface.clone(),
        ..Default::default()
    });
    let ctx = Context {
        config: config.clone(),
        config_error: loaded.error,
        run_dir: args.run_dir.clone(),
        wan: wan_rx,
    };

    // Edits from the UI rewrite the file; they are refused while the file that is there
    // was rejected (the owner fixes or restores it first) and in failsafe mode.
    let config_file = Arc::new(config::edit::ConfigFile::new(
        args.config.clone(),
        config.clone(),
        if args.no_config {
            Some("failsafe mode runs on built-in defaults".into())
        } else {
            ctx.config_error
                .as_ref()
                .map(|e| format!("the config file was rejected at startup: {e}"))
        },
    ));

    let store = match dhcp::lease_store::LeaseStore::open(
        &args.data_dir.join("dhcp/leases.json"),
        config.dhcp.max_leases,
    ) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            // Persistence is broken (e.g. data partition missing): keep serving
            // from memory so the LAN still works, and say so loudly.
            eprintln!("gatewayd: lease store unavailable, leases will not persist: {e:#}");
            Arc::new(Mutex::new(
                dhcp::lease_store::LeaseStore::open(
                    &args.run_dir.join("leases.json"),
                    config.dhcp.max_leases,
                )
                .expect("lease store in /run"),
            ))
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    // SIGHUP re-applies the config file's port forwards. Registered before anything else runs:
    // the signal's default action would end the process.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    // DHCP and DNS first: LAN clients are waiting for them at boot, and restoring the
    // traffic history below takes a while on a slow machine.
    let dhcp_counters = Arc::new(dhcp::Counters::default());
    let dns_counters = Arc::new(dns::Counters::default());
    if config.dhcp.enabled {
        tasks.spawn(dhcp::run(
            ctx.clone(),
            store.clone(),
            dhcp_counters.clone(),
            config_file.subscribe(),
            ready.clone(),
        ));
    }
    if config.dns.enabled {
        tasks.spawn(dns::run(
            ctx.clone(),
            dns_counters.clone(),
            store.clone(),
            config_file.subscribe(),
            ready.clone(),
        ));
    }

    let shared = web::Shared {
        leases: store,
        dhcp: dhcp_counters,
        dns: dns_counters,
        nat: Arc::new(nat::Table::from_config(&config.nat)),
        traffic: Arc::new(traffic::Traffic::new(&config, &args.data_dir)),
        auth: Arc::new(web::session::Auth::open(&args.data_dir)),
        // RAUC on the system bus, reached on first use: its absence only shows on the
        // update page.
        update: Arc::new(update::Update::new(
            Arc::new(update::Rauc::system()),
            update::Paths::new(args.config.clone(), &args.data_dir),
            Arc::new(update::request_reboot),
        )),
        log_socket: Arc::from(log_socket::SOCKET),
        config: config_file.clone(),
        host: Default::default(),
        listeners: Default::default(),
    };
    tasks.spawn(nat::reload_on_sighup(
        hup,
        config_file,
        args.no_config,
        shared.nat.clone(),
    ));
    if !args.no_wan_client {
        // The cable watch restarts the DHCP client (or re-applies the static address) when
        // the WAN's carrier comes back.
        let restart = Arc::new(tokio::sync::Notify::new());
        let back = wan::link::OnCableBack {
            restart: restart.clone(),
            what: if config.wan.is_static() {
                "re-applying the static address"
            } else {
                "restarting DHCP"
            },
        };
        let link = wan::link::run(config.wan.interface.clone(), wan_tx.clone(), back);
        tasks.spawn(async move {
            link.await;
            Ok(())
        });
        if config.wan.is_static() {
            tasks.spawn(wan::static_addr::run(ctx.clone(), wan_tx, restart));
        } else {
            tasks.spawn(wan::udhcpc::run(ctx.clone(), wan_tx, restart));
        }
    } else {
        // Keep the sender alive so receivers never see a closed channel.
        tasks.spawn(async move {
            let _keep = wan_tx;
            std::future::pending::<anyhow::Result<()>>().await
        });
    }
    tasks.spawn(web::run(ctx.clone(), shared.clone()));
    if config.nat.enabled {
        let nat_ctx = ctx.clone();
        let table = shared.nat.clone();
        let tx =
            match traffic::collector::spawn(shared.traffic.clone(), Some(shared.leases.clone())) {
                Ok(tx) => tx,
                Err(e) => {
                    // Route without recording: a channel nobody reads makes the tap drop and
                    // count every batch.
                    eprintln!("gatewayd: traffic recording off, its thread did not start: {e}");
                    std::sync::mpsc::sync_channel(1).0
                }
            };
        let tap = traffic::tap::Tap::new(tx, shared.traffic.tap.clone());
        let modules_ready = args.modules_ready.clone();
        tasks.spawn(async move {
            tokio::task::spawn_blocking(move || {
                nat::run(nat_ctx, table, tap, modules_ready.as_deref())
            })
            .await
            .map_err(|e| anyhow::anyhow!("nat thread: {e}"))?
        });
    }
    eprintln!("gatewayd: started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        // Any task ending is fatal: exit non-zero and let the supervisor restart us
        // with a clean slate rather than run half a router.
        Some(res) = tasks.join_next() => {
            match res {
                Ok(Ok(())) => eprintln!("gatewayd: a service stopped unexpectedly"),
                Ok(Err(e)) => eprintln!("gatewayd: fatal: {e:#}"),
                Err(e) => eprintln!("gatewayd: task panicked: {e}"),
            }
            std::process::exit(1);
        }
        // A clean stop (init's shutdown): keep the traffic history for the next start.
        _ = term.recv() => {
            match shared.traffic.save() {
                Ok(n) => eprintln!("gatewayd: stopping; traffic history saved ({n} bytes)"),
                Err(e) => eprintln!("gatewayd: stopping; traffic history not saved: {e}"),
            }
            std::process::exit(0);
        }
    }
}
