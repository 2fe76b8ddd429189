//! hookd on the system bus: the proxy, and call errors as hookctl's failures.

use crate::output::{EXIT_INVALID, EXIT_NOT_FOUND, EXIT_UNREACHABLE, Failure};
use hookd_dbus::ManagerProxy;

pub async fn proxy() -> Result<ManagerProxy<'static>, Failure> {
    let unreachable = |e: zbus::Error| {
        Failure(
            EXIT_UNREACHABLE,
            format!("cannot reach hookd on the system bus: {e}"),
        )
    };
    let conn = zbus::Connection::system().await.map_err(unreachable)?;
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(unreachable)?;
    let name = zbus::names::BusName::try_from(hookd_dbus::BUS_NAME)
        .map_err(|e| Failure(EXIT_INVALID, e.to_string()))?;
    if !dbus
        .name_has_owner(name)
        .await
        .map_err(|e| unreachable(e.into()))?
    {
        return Err(Failure(
            EXIT_UNREACHABLE,
            format!(
                "hookd is not running ({} has no owner on the system bus)",
                hookd_dbus::BUS_NAME
            ),
        ));
    }
    ManagerProxy::new(&conn).await.map_err(unreachable)
}

pub fn call_failed(e: hookd_dbus::Error) -> Failure {
    match e {
        hookd_dbus::Error::NotFound(m) => Failure(EXIT_NOT_FOUND, m),
        // The bus itself refused the call (its policy): a refusal, not an
        // unreachable hookd.
        hookd_dbus::Error::ZBus(zbus::Error::FDO(e))
            if matches!(*e, zbus::fdo::Error::AccessDenied(_)) =>
        {
            Failure(EXIT_INVALID, e.to_string())
        }
        hookd_dbus::Error::ZBus(e) => Failure(EXIT_UNREACHABLE, e.to_string()),
        e => Failure(EXIT_INVALID, e.to_string()),
    }
}
