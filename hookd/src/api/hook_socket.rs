//! The libvirt hook's own way in: a peer-to-peer D-Bus socket under the run
//! directory (`hook.sock`, root only) on which hookd serves the same Manager
//! interface. Hook calls then skip the system bus, whose queues a flood of
//! management calls can fill, and are served on a thread and runtime of
//! their own, so they never wait behind the tasks of management calls
//! either. Their signals still go out on the bus.

use crate::api::Manager;
use futures_util::StreamExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

/// Nice value of the hook thread (the default is 0; lower runs first).
const HOOK_NICE: libc::c_int = -10;
use std::path::Path;

/// Binds the socket, replacing a stale one (call only once the bus name is
/// ours, so that a second hookd cannot take the first one's socket), and
/// serves it on a thread of its own until hookd exits; `manager` makes the
/// object served on each connection.
pub fn spawn(path: &Path, manager: impl Fn() -> Manager + Send + 'static) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("hook-socket".into())
        .spawn(move || {
            // Ahead of the management threads for the CPU too: a VM start
            // waits on this thread. (Root may raise priority; if it fails,
            // the thread runs at the default.)
            // SAFETY: gettid and setpriority on this thread have no
            // memory-safety preconditions.
            unsafe {
                let tid = libc::gettid();
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HOOK_NICE);
            }
            rt.block_on(async move {
                match tokio::net::UnixListener::from_std(listener) {
                    Ok(l) => serve(l, manager).await,
                    Err(e) => {
                        tracing::error!(error = %e, "hook socket unusable; hooks will use the bus")
                    }
                }
            })
        })?;
    Ok(())
}

async fn serve(listener: tokio::net::UnixListener, manager: impl Fn() -> Manager) {
    loop {
        let stream = match listener.accept().await.and_then(|(s, _)| s.into_std()) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "hook socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let built = zbus::connection::Builder::unix_stream(stream)
            .server(zbus::Guid::generate())
            .p2p()
            .serve_at(hookd_dbus::MANAGER_PATH, manager())
            .build();
        tokio::spawn(async move {
            match built.await {
                // Served until the hook hangs up (the stream then ends).
                Ok(conn) => {
                    let mut incoming = zbus::MessageStream::from(&conn);
                    while incoming.next().await.is_some() {}
                }
                Err(e) => tracing::debug!(error = %e, "hook socket: handshake failed"),
            }
        });
    }
}
