//! hookd: the daemon. Owns org.hookd.Hookd1 on the system bus, loads and
//! pins the eBPF programs, attaches them to VM taps on libvirt hook calls.

use clap::Parser;
use hookd::cli::DaemonArgs;
use hookd::config::{AttachMode, Config};
use hookd::daemon::Daemon;
use hookd::datapath::Datapath;
use hookd::service::Manager;
use hookd::state::StateDir;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Mutex;

async fn run(args: DaemonArgs) -> Result<(), String> {
    let explicit = args.config.as_os_str() != hookd::config::DEFAULT_PATH;
    let mut cfg = Config::load(&args.config, explicit).map_err(|e| e.to_string())?;
    if let Some(p) = args.pin_dir {
        cfg.pin_dir = p;
    }
    if let Some(p) = args.run_dir {
        cfg.run_dir = p;
    }
    if let Some(a) = args.attach {
        cfg.attach = match a.as_str() {
            "tcx" => AttachMode::Tcx,
            "netlink" => AttachMode::Netlink,
            _ => AttachMode::Auto,
        };
    }
    let mut dp = Datapath::open(&cfg.pin_dir, cfg.attach).map_err(|e| e.to_string())?;
    let events = dp.take_events();
    let state = StateDir::open(&cfg.run_dir).map_err(|e| e.to_string())?;
    let daemon = Arc::new(Mutex::new(Daemon::new(
        Box::new(dp),
        state,
        cfg.count_unmanaged,
    )));

    // Bound before the bus name is claimed: a bad address fails the start
    // before anybody sees hookd on the bus.
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
            tracing::info!(%addr, "serving metrics");
            Some(l)
        }
        None => None,
    };

    // The name is claimed last, once the object is served; no replacement
    // either way, so a second hookd fails instead of stealing the name.
    let conn = zbus::connection::Builder::system()
        .serve_at(hookd_dbus::MANAGER_PATH, Manager::new(daemon.clone()))
        .name(hookd_dbus::BUS_NAME)
        .allow_name_replacements(false)
        .replace_existing_names(false)
        .build()
        .await
        .map_err(|e| match e {
            zbus::Error::NameTaken => format!(
                "{} is already owned on the system bus: is another hookd running?",
                hookd_dbus::BUS_NAME
            ),
            e => format!("connecting to the system bus: {e}"),
        })?;
    if let Some(listener) = metrics {
        tokio::spawn(hookd::metrics::serve(listener, daemon.clone()));
    }
    if let Some(ring) = events {
        tokio::spawn(hookd::events::read(ring, daemon, conn.clone()));
    }
    tracing::info!(version = hookd::VERSION, pin_dir = %cfg.pin_dir.display(), "hookd ready on {}", hookd_dbus::BUS_NAME);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping; pinned programs keep enforcing until the next hookd adopts them");
    drop(conn);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = DaemonArgs::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("hookd: {e}");
            ExitCode::FAILURE
        }
    }
}
