//! hookd's side of libvirt's API (the `virt` crate). libvirt's event loop
//! runs on a thread of its own; the domain events hookd follows (metadata
//! changed in hookd's namespace, a device plugged or unplugged) reach tokio
//! through a channel. Calls into libvirt open a short connection of their
//! own and block, so callers run them with `spawn_blocking`.
//!
//! Nothing here is ever called while a hook call is being served: libvirt
//! waits for its hook, so a hook call that waited for libvirt would
//! deadlock.

pub mod follow;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use virt::connect::Connect;
use virt::sys;

/// How long the event thread waits between attempts to reach libvirtd.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("libvirt ({uri}): {what}: {message}")]
pub struct LibvirtError {
    uri: String,
    what: String,
    message: String,
}

/// A domain event hookd acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Something hookd reads in this domain's XML may have changed.
    Changed { uuid: String, why: &'static str },
    /// (Re)connected to libvirtd: every running domain may have changed
    /// while hookd was not listening.
    Connected,
    /// The domain's guest stopped or started running (lifecycle events).
    Lifecycle { uuid: String, what: Lifecycle },
}

/// The lifecycle events a migration's source cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The vCPUs stopped for a migration's switch-over (`Suspended
    /// Migrated`): QEMU saves the device state next.
    StoppedForMigration,
    /// The guest runs again (a failed migration resumes it) or is gone.
    RunningOrGone,
}

impl Lifecycle {
    /// What a libvirt lifecycle event (type, detail) means here, if anything.
    fn of(event: c_int, detail: c_int) -> Option<Lifecycle> {
        let (event, detail) = (u32::try_from(event).ok()?, u32::try_from(detail).ok()?);
        match event {
            sys::VIR_DOMAIN_EVENT_SUSPENDED
                if detail == sys::VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED =>
            {
                Some(Lifecycle::StoppedForMigration)
            }
            sys::VIR_DOMAIN_EVENT_RESUMED | sys::VIR_DOMAIN_EVENT_STOPPED => {
                Some(Lifecycle::RunningOrGone)
            }
            _ => None,
        }
    }
}

/// Where libvirtd is; `Clone` and cheap, one per caller.
#[derive(Debug, Clone)]
pub struct Libvirt {
    uri: String,
}

impl Libvirt {
    pub fn new(uri: &str) -> Libvirt {
        // libvirt prints every error to stderr by default; hookd reports
        // the ones that matter itself.
        virt::error::clear_error_callback();
        Libvirt {
            uri: uri.to_string(),
        }
    }

    fn err(&self, what: &str) -> impl FnOnce(virt::error::Error) -> LibvirtError + '_ {
        let what = what.to_string();
        move |e| LibvirtError {
            uri: self.uri.clone(),
            what,
            message: e.message().to_string(),
        }
    }

    fn open(&self) -> Result<Connect, LibvirtError> {
        Connect::open(Some(&self.uri)).map_err(self.err("connecting"))
    }

    /// The live XML of a running domain.
    pub fn domain_xml(&self, uuid: &str) -> Result<String, LibvirtError> {
        let conn = self.open()?;
        let dom = conn
            .lookup_domain_by_uuid_string(uuid)
            .map_err(self.err(&format!("looking up domain {uuid}")))?;
        dom.xml_desc(0)
            .map_err(self.err(&format!("reading the XML of {uuid}")))
    }

    /// UUIDs of the running domains.
    pub fn running_domains(&self) -> Result<Vec<String>, LibvirtError> {
        let conn = self.open()?;
        conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .map_err(self.err("listing running domains"))?
            .iter()
            .map(|d| d.uuid_string().map_err(self.err("reading a UUID")))
            .collect()
    }

    /// Writes `policy` (None: removes it) into the domain's metadata in
    /// hookd's namespace: the live definition, and the persistent one when
    /// the domain has one. Returns which were written.
    pub fn persist_policy(
        &self,
        uuid: &str,
        policy: Option<&str>,
    ) -> Result<&'static str, LibvirtError> {
        let conn = self.open()?;
        let dom = conn
            .lookup_domain_by_uuid_string(uuid)
            .map_err(self.err(&format!("looking up domain {uuid}")))?;
        let persistent = dom
            .is_persistent()
            .map_err(self.err(&format!("asking whether {uuid} is persistent")))?;
        let (flags, written) = if persistent {
            (
                sys::VIR_DOMAIN_AFFECT_LIVE | sys::VIR_DOMAIN_AFFECT_CONFIG,
                "live and persistent definitions",
            )
        } else {
            (
                sys::VIR_DOMAIN_AFFECT_LIVE,
                "live definition (transient domain)",
            )
        };
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            policy,
            Some("hookd"),
            Some(hookd_model::policy::NAMESPACE),
            flags,
        )
        .map_err(self.err(&format!("writing the policy into {uuid}'s metadata")))?;
        Ok(written)
    }

    /// Gives the running domain's QEMU the dbus-vmstate object that
    /// carries its firewall state through a live migration, over QEMU's
    /// monitor (libvirt marks the domain tainted: custom-monitor). Returns
    /// false when QEMU has it already (a VM that came by migration has it
    /// on its command line).
    pub fn add_vmstate_object(&self, uuid: &str, id_list: &str) -> Result<bool, LibvirtError> {
        use hookd_model::vmstate;
        let conn = self.open()?;
        let dom = conn
            .lookup_domain_by_uuid_string(uuid)
            .map_err(self.err(&format!("looking up domain {uuid}")))?;
        let xml = dom
            .xml_desc(0)
            .map_err(self.err(&format!("reading the XML of {uuid}")))?;
        if vmstate::has_object(&xml) {
            return Ok(false);
        }
        let cmd = vmstate::object_add_command(vmstate::SYSTEM_BUS, id_list).map_err(|e| {
            LibvirtError {
                uri: self.uri.clone(),
                what: "building the dbus-vmstate object".into(),
                message: e,
            }
        })?;
        match dom.qemu_monitor_command(&cmd, 0) {
            Ok(reply) if reply.contains("\"error\"") => Err(LibvirtError {
                uri: self.uri.clone(),
                what: format!("adding the dbus-vmstate object to {uuid}'s QEMU"),
                message: reply,
            }),
            Ok(_) => Ok(true),
            Err(e) => Err(self
                .err(&format!("adding the dbus-vmstate object to {uuid}'s QEMU"))(
                e
            )),
        }
    }

    /// Starts the event thread; events arrive on the receiver until hookd
    /// exits. The thread reconnects whenever libvirtd goes away.
    pub fn watch(&self) -> std::io::Result<UnboundedReceiver<Event>> {
        let (tx, rx) = unbounded_channel();
        let me = self.clone();
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(move || me.event_thread(tx))?;
        Ok(rx)
    }

    fn event_thread(self, tx: UnboundedSender<Event>) {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::error!(error = %e, "libvirt event loop unavailable: policy changes made with virsh will not apply live");
            return;
        }
        let mut reported = false;
        while !tx.is_closed() {
            match self.open() {
                Ok(conn) => {
                    reported = false;
                    tracing::info!(uri = %self.uri, "following libvirt domain events");
                    self.follow(&conn, &tx);
                    tracing::warn!(uri = %self.uri, "lost the libvirt connection; reconnecting");
                }
                Err(e) if !reported => {
                    tracing::warn!(error = %e, "libvirt not reachable yet; retrying every {}s", RETRY.as_secs());
                    reported = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(RETRY);
        }
    }

    /// Runs libvirt's event loop for one connection, until it closes.
    fn follow(&self, conn: &Connect, tx: &UnboundedSender<Event>) {
        static CLOSED: AtomicBool = AtomicBool::new(false);
        unsafe extern "C" fn on_close(_: sys::virConnectPtr, _: c_int, _: *mut c_void) {
            CLOSED.store(true, Ordering::SeqCst);
        }
        CLOSED.store(false, Ordering::SeqCst);
        // SAFETY: the connection outlives the registrations, which are
        // removed below before it is dropped; each opaque pointer is a
        // boxed sender that libvirt frees with `free_sender`.
        let ids: Vec<c_int> = unsafe {
            let p = conn.as_ptr();
            if sys::virConnectRegisterCloseCallback(p, Some(on_close), std::ptr::null_mut(), None)
                < 0
            {
                tracing::warn!("cannot watch the libvirt connection for closing");
            }
            let callbacks: [(u32, sys::virConnectDomainEventGenericCallback); 4] = [
                (
                    sys::VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                    Some(std::mem::transmute::<
                        unsafe extern "C" fn(
                            sys::virConnectPtr,
                            sys::virDomainPtr,
                            c_int,
                            *const c_char,
                            *mut c_void,
                        ),
                        unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
                    >(on_metadata)),
                ),
                (sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE, {
                    // Its shape checked against libvirt's before the cast.
                    let cb: sys::virConnectDomainEventCallback = Some(on_lifecycle);
                    std::mem::transmute::<
                        sys::virConnectDomainEventCallback,
                        sys::virConnectDomainEventGenericCallback,
                    >(cb)
                }),
                (sys::VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, device_callback()),
                (sys::VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, device_callback()),
            ];
            callbacks
                .into_iter()
                .filter_map(|(id, cb)| {
                    let opaque = Box::into_raw(Box::new(tx.clone())) as *mut c_void;
                    let r = sys::virConnectDomainEventRegisterAny(
                        p,
                        std::ptr::null_mut(),
                        id as c_int,
                        cb,
                        opaque,
                        Some(free_sender),
                    );
                    if r < 0 {
                        tracing::warn!(event = id, "cannot register for a libvirt domain event");
                        None
                    } else {
                        Some(r)
                    }
                })
                .collect()
        };
        // Keepalive probes make a dead libvirtd close the connection.
        let _ = conn.set_keep_alive(5, 3);
        let _ = tx.send(Event::Connected);
        while !CLOSED.load(Ordering::SeqCst) && !tx.is_closed() {
            if let Err(e) = virt::event::event_run_default_impl() {
                tracing::warn!(error = %e, "libvirt event loop");
                break;
            }
        }
        for id in ids {
            // SAFETY: ids come from the registrations above on this connection.
            unsafe { sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), id) };
        }
        // SAFETY: unregisters the callback registered above.
        unsafe { sys::virConnectUnregisterCloseCallback(conn.as_ptr(), Some(on_close)) };
    }
}

/// Device added and removed share a callback shape.
fn device_callback() -> sys::virConnectDomainEventGenericCallback {
    // SAFETY: libvirt calls DEVICE_ADDED/REMOVED callbacks with this shape.
    Some(unsafe {
        std::mem::transmute::<
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *const c_char, *mut c_void),
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
        >(on_device)
    })
}

unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    // SAFETY: opaque was made by Box::into_raw in `follow`.
    drop(unsafe { Box::from_raw(opaque as *mut UnboundedSender<Event>) });
}

unsafe fn send(dom: sys::virDomainPtr, opaque: *mut c_void, why: &'static str) {
    // SAFETY: the caller's arguments, passed on as they came.
    unsafe { send_event(dom, opaque, |uuid| Event::Changed { uuid, why }) }
}

/// Sends the event `make` builds from the domain's UUID.
unsafe fn send_event(
    dom: sys::virDomainPtr,
    opaque: *mut c_void,
    make: impl FnOnce(String) -> Event,
) {
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: libvirt passes a live domain; the UUID is read locally.
    if unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) } < 0 {
        return;
    }
    // SAFETY: NUL-terminated by libvirt; opaque is our boxed sender.
    let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: opaque is the sender `watch` boxed and registered with the
    // callback; it lives as long as the registration.
    let tx = unsafe { &*(opaque as *const UnboundedSender<Event>) };
    let _ = tx.send(make(uuid));
}

unsafe extern "C" fn on_lifecycle(
    _: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    if let Some(what) = Lifecycle::of(event, detail) {
        // SAFETY: libvirt's arguments, passed on as they came.
        unsafe { send_event(dom, opaque, |uuid| Event::Lifecycle { uuid, what }) };
    }
    0
}

unsafe extern "C" fn on_metadata(
    _: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    kind: c_int,
    nsuri: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: nsuri is NUL-terminated when not null.
    let ours = kind == sys::VIR_DOMAIN_METADATA_ELEMENT as c_int
        && !nsuri.is_null()
        && unsafe { CStr::from_ptr(nsuri) }.to_bytes() == hookd_model::policy::NAMESPACE.as_bytes();
    if ours {
        // SAFETY: libvirt's arguments, passed on as they came.
        unsafe { send(dom, opaque, "metadata-change") };
    }
}

unsafe extern "C" fn on_device(
    _: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    _alias: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: libvirt's arguments, passed on as they came.
    unsafe { send(dom, opaque, "device-change") };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_migrations_stop_and_running_again_are_followed() {
        let of = |e: u32, d: u32| Lifecycle::of(e as c_int, d as c_int);
        assert_eq!(
            of(
                sys::VIR_DOMAIN_EVENT_SUSPENDED,
                sys::VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED
            ),
            Some(Lifecycle::StoppedForMigration)
        );
        // Paused by its owner: nothing to read ahead.
        assert_eq!(
            of(
                sys::VIR_DOMAIN_EVENT_SUSPENDED,
                sys::VIR_DOMAIN_EVENT_SUSPENDED_PAUSED
            ),
            None
        );
        for e in [sys::VIR_DOMAIN_EVENT_RESUMED, sys::VIR_DOMAIN_EVENT_STOPPED] {
            assert_eq!(of(e, 0), Some(Lifecycle::RunningOrGone));
        }
        assert_eq!(of(sys::VIR_DOMAIN_EVENT_STARTED, 0), None);
        assert_eq!(Lifecycle::of(-1, 1), None);
    }
}
