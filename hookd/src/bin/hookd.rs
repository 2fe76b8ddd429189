//! hookd: the daemon. Owns org.hookd.Hookd1 on the system bus, loads and
//! pins the eBPF programs, attaches them to VM taps on libvirt hook calls.

use clap::Parser;
use hookd::api::Readers;
use hookd::cli::DaemonArgs;
use hookd::config::{AttachMode, Config};
use hookd::core::networks::NetworkStore;
use hookd::core::records::StateDir;
use hookd::core::{Daemon, Promotion};
use hookd::datapath::Datapath;
use hookd::libvirt::Libvirt;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Mutex;

/// `attach = "staged"`: NICs move from their clsact qdisc to tcx links
/// once they have been attached a while (their domain runs by then), one
/// NIC per turn of the daemon's lock (tokio's is fair, so a hook call
/// waits for one NIC's move at most).
async fn promote_staged(daemon: Arc<Mutex<Daemon>>) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(500);
    const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        loop {
            let mut d = daemon.clone().lock_owned().await;
            match tokio::task::spawn_blocking(move || d.promote_next(SETTLE)).await {
                Ok(Promotion::Moved { .. } | Promotion::Failed { .. }) => continue,
                _ => break,
            }
        }
    }
}

async fn run(args: DaemonArgs) -> Result<(), String> {
    let explicit = args.config.as_os_str() != hookd::config::DEFAULT_PATH;
    let mut cfg = Config::load(&args.config, explicit).map_err(|e| e.to_string())?;
    if let Some(p) = args.pin_dir {
        cfg.pin_dir = p;
    }
    if let Some(p) = args.run_dir {
        cfg.run_dir = p;
    }
    if let Some(p) = args.state_dir {
        cfg.state_dir = p;
    }
    if let Some(a) = args.attach {
        cfg.attach = a;
    }
    let has_tcx = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
    let mode = cfg.attach.on_kernel(has_tcx);
    if mode != cfg.attach {
        tracing::info!(
            "attach = \"staged\" moves NICs to tcx, which needs kernel 6.6 or newer: attaching through a clsact qdisc (netlink) instead"
        );
        cfg.attach = mode;
    }
    let mut dp = Datapath::open(&cfg.pin_dir, cfg.attach).map_err(|e| e.to_string())?;
    let events = dp.take_events();
    dp.set_tenant_namespaces(cfg.tenant_namespaces.then(|| cfg.netns_dir.clone()));
    dp.set_conntrack_entries(cfg.conntrack_entries);
    dp.set_conntrack_entries_max(cfg.conntrack_entries_max);
    let state = StateDir::open(&cfg.run_dir).map_err(|e| e.to_string())?;
    let networks = NetworkStore::open(&cfg.state_dir.join("networks"), &cfg.networks_dir)
        .map_err(|e| e.to_string())?;
    let daemon = Daemon::open(Box::new(dp), state, cfg.count_unmanaged, networks);
    let view = daemon.view();
    let daemon = Arc::new(Mutex::new(daemon));

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

    let readers = match group_id(&cfg.read_group) {
        Some(gid) => Readers::Group(gid),
        None => {
            tracing::warn!(group = %cfg.read_group, "read_group names no group on this host: only root may read over D-Bus");
            Readers::RootOnly
        }
    };
    let libvirt = (!cfg.libvirt_uri.is_empty()).then(|| Libvirt::new(&cfg.libvirt_uri));

    let hook_socket = cfg.run_dir.join("hook.sock");
    let served = hookd::api::serve(
        zbus::connection::Builder::system(),
        daemon.clone(),
        view.clone(),
        readers,
        libvirt.clone(),
        &hook_socket,
    )
    .await
    .map_err(|e| e.to_string())?;
    let conn = served.conn;
    // QEMU's dbus-vmstate helpers: a failure here costs the carrying of
    // firewall state through migrations, not enforcement.
    // The snapshots are read at a guest's stop for the helpers' Save.
    let (helpers, snapshots) = match cfg.migration_state_mib {
        0 => (Vec::new(), None),
        mib => {
            let snapshots = hookd::core::migration::snapshot::Snapshots::new(daemon.clone());
            let count = hookd::core::migration::chunks::helpers_for_mib(mib);
            let shared = hookd::api::vmstate::Shared::new(
                daemon.clone(),
                view.clone(),
                hookd::api::vmstate::Settings {
                    pid_dir: cfg.qemu_pid_dir.clone(),
                    count,
                    on_error: cfg.migration_state_errors,
                    notices: Some(served.notices.clone()),
                    snapshots: snapshots.clone(),
                },
            );
            match hookd::api::vmstate::serve(shared, || zbus::connection::Builder::system().build())
                .await
            {
                Ok(h) => {
                    tracing::info!(
                        helpers = h.len(),
                        "serving org.qemu.VMState1 for live migrations"
                    );
                    daemon
                        .lock()
                        .await
                        .set_migration_helpers(Some(hookd::api::vmstate::id_list(count)));
                    (h, Some(snapshots))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve org.qemu.VMState1: live migrations carry no firewall state");
                    (Vec::new(), None)
                }
            }
        }
    };
    // Rule tables a previous hookd switched away from but did not empty;
    // only now that the bus name is ours (a second hookd must not touch
    // the pins the first one is writing).
    {
        let mut d = daemon.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || d.tidy())
            .await
            .map_err(|e| e.to_string())?;
    }
    // Guests solicit a router only when their interface comes up; the
    // default route an advertisement gives must be renewed before its
    // lifetime runs out.
    {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(hookd::datapath::ra::RA_INTERVAL);
            loop {
                tick.tick().await;
                let d = daemon.clone().lock_owned().await;
                let sent = tokio::task::spawn_blocking(move || d.advertise_routers())
                    .await
                    .unwrap_or(0);
                tracing::debug!(sent, "router advertisements");
            }
        });
    }
    if cfg.attach == AttachMode::Staged {
        tokio::spawn(promote_staged(daemon.clone()));
    }
    if let Some(listener) = metrics {
        tokio::spawn(hookd::metrics::serve(listener, view.clone()));
    }
    if let Some(lv) = libvirt {
        match lv.watch() {
            Ok(rx) => {
                tokio::spawn(hookd::libvirt::follow::follow(
                    daemon.clone(),
                    lv,
                    served.notices.clone(),
                    snapshots,
                    rx,
                ));
            }
            Err(e) => tracing::error!(error = %e, "cannot start the libvirt event thread"),
        }
    }
    if let Some(ring) = events {
        tokio::spawn(hookd::core::events::follow(ring, view, served.notices));
    }
    tracing::info!(version = hookd::VERSION, pin_dir = %cfg.pin_dir.display(), "hookd ready on {}", hookd_dbus::BUS_NAME);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping; pinned programs keep enforcing until the next hookd adopts them");
    let _ = std::fs::remove_file(&hook_socket);
    drop(helpers);
    drop(conn);
    Ok(())
}

/// The gid of a group, from the host's group database.
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: libc::group is plain old data; all zeroes is a valid value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `out` points into `grp`.
    let r = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(grp.gr_gid)
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
