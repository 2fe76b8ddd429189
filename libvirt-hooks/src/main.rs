//! The libvirt qemu hook, installed as /etc/libvirt/hooks/qemu.d/50-hookd.
//!
//! libvirt runs it as `50-hookd DOMAIN OPERATION SUB-OPERATION EXTRA` with the
//! domain XML on stdin. It forwards all of that to hookd (on hookd's own
//! D-Bus socket, /run/hookd/hook.sock, else on the system bus)
//! with a bounded wait and never calls libvirt (libvirt would deadlock). Exit
//! status: non-zero only when a VM carrying hookd policy is being started, or
//! migrated here, and its policy was not applied (see
//! hookd_model::hook::decide_exit). For `migrate` and `restore`, stdout is
//! the domain XML libvirt goes on with.

use hookd_model::hook::{self, HookArgs, Operation, Outcome};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// How long a VM start may wait for hookd. libvirt holds the domain's job
/// lock meanwhile, so this stays short.
const TIMEOUT: Duration = Duration::from_secs(10);

/// libvirt runs hooks with a cleaned environment, so in production this is
/// always [`TIMEOUT`]; tests shorten it with HOOKD_HOOK_TIMEOUT_MS.
fn timeout() -> Duration {
    std::env::var("HOOKD_HOOK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(TIMEOUT)
}

/// hookd's own socket for hooks; tests point elsewhere with
/// HOOKD_HOOK_SOCKET (libvirt cleans the environment in production).
fn socket_path() -> std::path::PathBuf {
    std::env::var_os("HOOKD_HOOK_SOCKET")
        .map(Into::into)
        .unwrap_or_else(|| hookd_dbus::HOOK_SOCKET.into())
}

/// hookd's peer-to-peer socket when it listens there, else the system bus
/// (hookd with another run directory, or hookd not running: the call then
/// reports that).
async fn connect() -> zbus::Result<zbus::Connection> {
    match std::os::unix::net::UnixStream::connect(socket_path()) {
        Ok(stream) => {
            zbus::connection::Builder::unix_stream(stream)
                .p2p()
                .method_timeout(TIMEOUT)
                .build()
                .await
        }
        Err(_) => {
            zbus::connection::Builder::system()
                .method_timeout(TIMEOUT)
                .build()
                .await
        }
    }
}

async fn forward(args: &HookArgs, xml: &str) -> Outcome {
    let limit = timeout();
    let call = async {
        let conn = connect().await?;
        let proxy = hookd_dbus::ManagerProxy::new(&conn).await?;
        proxy
            .hook_event(
                &args.domain,
                &args.operation,
                &args.sub_operation,
                &args.extra,
                xml,
            )
            .await
    };
    match tokio::time::timeout(limit, call).await {
        Err(_) => Outcome::Unreachable(format!("no answer within {:.1} s", limit.as_secs_f64())),
        Ok(Ok(summary)) => Outcome::Done(summary),
        Ok(Err(hookd_dbus::Error::ZBus(e))) => Outcome::Unreachable(e.to_string()),
        Ok(Err(e)) => Outcome::Refused(e.to_string()),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match HookArgs::from_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hookd hook: {e}");
            return ExitCode::from(2);
        }
    };
    let limit = hookd_model::xml_tree::MAX_XML_BYTES;
    // Where libvirt reads our stdout back as the domain XML, all of the
    // input is passed through, whatever its size; elsewhere reading stops
    // past the limit hookd would refuse anyway.
    let echo = args.op().echoes_xml();
    let mut raw = Vec::new();
    let read = if echo {
        std::io::stdin().read_to_end(&mut raw)
    } else {
        std::io::stdin()
            .take(limit as u64 + 1)
            .read_to_end(&mut raw)
    };
    if let Err(e) = read {
        eprintln!("hookd hook: reading the domain XML from stdin: {e}");
    }
    let xml = String::from_utf8_lossy(&raw).into_owned();
    let has_policy = hookd_model::domain::mentions_hookd_policy(&xml);
    let outcome = if raw.len() > limit {
        Outcome::Refused(format!("domain XML exceeds hookd's {limit}-byte limit"))
    } else {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(forward(&args, &xml)),
            Err(e) => Outcome::Unreachable(format!("starting the runtime: {e}")),
        }
    };
    if echo {
        // An incoming migration's XML as hookd returned it (with QEMU's
        // dbus-vmstate object for the firewall state); else the input.
        let out_xml = match (&outcome, args.op()) {
            (Outcome::Done(x), Operation::Migrate) if x.starts_with('<') => x.as_bytes(),
            _ => raw.as_slice(),
        };
        let mut out = std::io::stdout();
        let _ = out.write_all(out_xml).and_then(|_| out.flush());
    }
    let exit = hook::decide_exit(&args, has_policy, &outcome);
    if let Some(m) = exit.message {
        eprintln!("{m}");
    }
    ExitCode::from(exit.code as u8)
}
