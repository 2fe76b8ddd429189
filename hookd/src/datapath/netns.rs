//! Network namespaces and rtnetlink, for the tenant namespaces: creating
//! a named namespace as `ip netns add` does (a bind mount of the namespace
//! under a directory, `/run/netns` by default), running a short task inside
//! one, and sending rtnetlink requests (messages built with
//! `netlink-packet-route`) on a socket of the namespace the calling thread
//! is in.
//!
//! A thread of hookd enters a namespace only on a thread of its own that
//! ends with the task: no other thread ever runs in a tenant's namespace.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mount(src: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let (src, target, none) = (c_path(src)?, c_path(target)?, c"none");
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    })
}

/// The directory of named namespaces, as iproute2 prepares it: a mount
/// point of its own with shared propagation, so that a namespace named
/// here is seen in every mount namespace (`ip netns exec` from a shell, a
/// systemd unit's).
fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let shared = libc::MS_SHARED | libc::MS_REC;
    match mount(Path::new("none"), dir, shared) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: make it one, then shared.
            mount(dir, dir, libc::MS_BIND | libc::MS_REC)?;
            mount(Path::new("none"), dir, shared)
        }
        r => r,
    }
}

/// Runs `f` on a new thread that has entered the namespace at `ns`.
pub(crate) fn in_netns<T: Send>(
    ns: &Path,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let file = File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `file` is an open namespace file; setns changes only
            // this thread, which ends with `f`.
            check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace task panicked")))
    })
}

/// Creates a network namespace named by the file `path` (its directory
/// prepared as iproute2 does). Nothing is left if it fails.
pub(crate) fn create(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_dir(dir)?;
    File::options().write(true).create_new(true).open(path)?;
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare changes only this thread's network namespace;
            // the thread ends right after the namespace is bound.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
            mount(Path::new("/proc/thread-self/ns/net"), path, libc::MS_BIND)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace task panicked")))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Removes the named namespace at `path`: the kernel frees it, and the
/// devices in it, when nothing else holds it.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Is `path` a namespace bound by [`create`] (not an empty file left by a
/// namespace that is gone)?
pub(crate) fn is_bound(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e736673;
    let Ok(c) = c_path(path) else { return false };
    // SAFETY: statfs is plain old data; all zeroes is a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated; statfs writes into `buf`.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    rc == 0 && buf.f_type as i64 == NSFS_MAGIC
}

/// How long a request waits for the kernel's answer.
const RECV_TIMEOUT_S: libc::time_t = 5;

/// An rtnetlink socket in the namespace of the thread that opened it.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub(crate) fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // The kernel answers at once; a bound wait keeps a thread that
        // holds the daemon from waiting for ever on an answer lost.
        let timeout = libc::timeval {
            tv_sec: RECV_TIMEOUT_S,
            tv_usec: 0,
        };
        // SAFETY: the socket's fd is open for the call; `timeout` is a
        // valid timeval of the size passed.
        check(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request (with `flags` besides REQUEST and ACK) and waits
    /// for the kernel's answer: Ok on its ACK, its errno otherwise.
    pub(crate) fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags).map(drop)
    }

    /// [`Rtnl::request`], returning the messages the kernel answered with
    /// before its ACK (the object a `Get` asks for, or a dump's objects
    /// with `NLM_F_DUMP`).
    pub(crate) fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut answers = Vec::new();
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        loop {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no rtnetlink answer in {RECV_TIMEOUT_S} s"),
                    ));
                }
                Err(e) => return Err(e),
            };
            let mut at = 0;
            while at < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    // A dump the kernel could not keep consistent (the
                    // objects changed under it) is not an answer.
                    if reply.header.flags & NLM_F_DUMP_INTR != 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "rtnetlink dump interrupted by a change; ask again",
                        ));
                    }
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(answers),
                                Some(_) => Err(e.to_io()),
                            };
                        }
                        // A dump ends here (its ACK is this, not an Error),
                        // with the dump's error, if any, as its code.
                        NetlinkPayload::Done(d) if d.code < 0 => {
                            return Err(io::Error::from_raw_os_error(-d.code));
                        }
                        NetlinkPayload::Done(_) => return Ok(answers),
                        NetlinkPayload::InnerMessage(m) => answers.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }
}
