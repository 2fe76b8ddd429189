//! Who may call what: root may call everything; the reading methods are
//! also open to the read group (`read_group` in hookd.toml). Credentials
//! come from the bus, or from the socket on peer-to-peer connections.

use hookd_dbus::Error;
use std::sync::Arc;
use zbus::Connection;
use zbus::message::Header;

/// Who may call the reading methods. Root may always call everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Any caller (peer-to-peer tests).
    Everyone,
    /// Members of this group (`read_group` in hookd.toml).
    Group(u32),
    /// Nobody but root (`read_group` names no group on this host).
    RootOnly,
}

/// Checks that the caller may read.
pub(crate) async fn require_reader(
    readers: Readers,
    hdr: &Header<'_>,
    conn: &Connection,
    what: &str,
) -> Result<(), Error> {
    if readers == Readers::Everyone {
        return Ok(());
    }
    let c = caller(hdr, conn).await?;
    match readers {
        _ if c.uid == 0 => Ok(()),
        Readers::Group(gid) if c.gids.contains(&gid) => Ok(()),
        _ => Err(Error::AccessDenied(format!(
            "{what} is reserved to root and the read group (caller uid {})",
            c.uid
        ))),
    }
}

struct Caller {
    uid: u32,
    gids: Vec<u32>,
}

/// The caller's uid and groups: from the bus for bus connections, from the
/// socket for peer-to-peer ones. Groups come with the credentials where the
/// bus gives them, else from the caller's /proc entry.
async fn caller(hdr: &Header<'_>, conn: &Connection) -> Result<Caller, Error> {
    let creds = match hdr.sender() {
        Some(sender) => {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            Arc::new(
                dbus.get_connection_credentials(sender.clone().into())
                    .await
                    .map_err(|e| Error::AccessDenied(e.to_string()))?,
            )
        }
        None => conn
            .peer_creds()
            .await
            .map_err(|e| Error::AccessDenied(format!("reading the peer's credentials: {e}")))?
            .clone(),
    };
    let uid = creds
        .unix_user_id()
        .ok_or_else(|| Error::AccessDenied("the caller's uid is unknown".into()))?;
    let gids = match (creds.unix_group_ids(), creds.process_id()) {
        (Some(g), _) => g.clone(),
        (None, Some(pid)) => proc_groups(pid),
        (None, None) => Vec::new(),
    };
    Ok(Caller { uid, gids })
}

/// Primary and supplementary groups from /proc/PID/status.
fn proc_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Groups:").or_else(|| {
                l.strip_prefix("Gid:")
                    .map(|r| r.split_whitespace().next().unwrap_or(""))
            })
        })
        .flat_map(|r| r.split_whitespace().filter_map(|g| g.parse().ok()))
        .collect()
}

pub(crate) async fn require_root(
    hdr: &Header<'_>,
    conn: &Connection,
    what: &str,
) -> Result<(), Error> {
    match caller(hdr, conn).await?.uid {
        0 => Ok(()),
        uid => Err(Error::AccessDenied(format!(
            "{what} is reserved to root (caller uid {uid})"
        ))),
    }
}
