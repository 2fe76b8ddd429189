//! Hostile bus clients at volume: raw D-Bus connections that authenticate,
//! subscribe to every signal hookd sends, pipeline a burst of method calls
//! to hookd (well-formed, malformed, refused and oversized) and then never
//! read a byte of what comes back, until they are told to go.
//!
//! They run as other uids in child processes (the test or benchmark binary
//! run again with [`ENV`] set, through `setpriv`), because a system bus
//! admits at most 256 connections per uid and because a hostile user is
//! another process: what hookd's process holds is then hookd's alone. The
//! sockets are raw so that nothing reads on the client side (a zbus client
//! would drain its socket into its own queue).

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

/// Set in a child process to "SOCKET\tCOUNT\tSEED": open COUNT connections.
pub const ENV: &str = "HOOKD_TEST_HOSTILE_CLIENTS";

/// The uids the clients run as: nobody, daemon, bin and sys, accounts that
/// base-passwd creates on every Debian system (dbus-daemon drops a
/// connection whose uid has no account, as it cannot look up its groups).
pub const UIDS: [u32; 4] = [65534, 1, 2, 3];

/// The most connections one uid may hold on a system bus (dbus-daemon's
/// default `max_connections_per_user`) less a few.
pub const PER_UID: usize = 250;

/// What a child prints once its connections have sent their calls (after
/// whatever a test harness prints first).
const READY: &str = "hostile clients ready:";

/// A policy argument over hookd's 4 MiB limit for XML (5 MiB).
pub const OVERSIZED: usize = 5 << 20;

/// Connections that send the oversized argument: one in this many.
const OVERSIZED_EVERY: usize = 32;

/// The method calls each connection sends, with no wait between them.
fn calls(i: usize) -> Vec<zbus::Message> {
    let vm = format!("vm{}", i % 50);
    let call = |member: &'static str| {
        zbus::Message::method_call(hookd_dbus::MANAGER_PATH, member)
            .destination(hookd_dbus::BUS_NAME)
            .interface(hookd_dbus::MANAGER_INTERFACE)
    };
    let mut v: Vec<zbus::Result<zbus::Message>> = vec![
        call("ListDomains").build(&()),
        call("GetDomain").build(&(vm.as_str(),)),
        call("GetPolicy").build(&(vm.as_str(),)),
        call("Trace").build(&(
            vm.as_str(),
            "52:54:00:00:00:01",
            "ingress",
            "198.51.100.3",
            "tcp",
            1002u16,
            0u8,
            0u8,
        )),
        call("ListNetworks").build(&()),
        call("Health").build(&()),
        // Refused: changes are root's.
        call("SetPolicy").build(&(vm.as_str(), "<policy/>", false)),
        call("DefineNetwork").build(&("<network/>",)),
        call("HookEvent").build(&(vm.as_str(), "stopped", "end", "-", "<domain/>")),
        // Malformed: the wrong signature, an unknown method, bad XML.
        call("GetDomain").build(&(7u32, 9u64)),
        call("NoSuchMethod").build(&()),
        call("ValidatePolicy").build(&("<hookd:policy xmlns:hookd='urn:hookd:policy:1'><",)),
    ];
    if i.is_multiple_of(OVERSIZED_EVERY) {
        v.push(call("ValidatePolicy").build(&("x".repeat(OVERSIZED).as_str(),)));
    }
    v.into_iter()
        .map(|m| m.expect("a well-formed D-Bus message"))
        .collect()
}

/// One connection: SASL EXTERNAL as this process's uid, Hello, a match for
/// all of hookd's signals, the calls of `calls`; nothing read after "OK".
fn connect(socket: &str, i: usize) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() }.to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    s.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte)?;
        line.push(byte[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::other(format!(
            "bus refused authentication: {}",
            String::from_utf8_lossy(&line).trim()
        )));
    }
    s.write_all(b"BEGIN\r\n")?;
    let bus = |member: &'static str| {
        zbus::Message::method_call("/org/freedesktop/DBus", member)
            .destination("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
    };
    let rule = format!("type='signal',sender='{}'", hookd_dbus::BUS_NAME);
    let mut out = vec![
        bus("Hello").build(&()).map_err(std::io::Error::other)?,
        bus("AddMatch")
            .build(&(rule.as_str(),))
            .map_err(std::io::Error::other)?,
    ];
    out.extend(calls(i));
    for m in out {
        s.write_all(m.data())?;
    }
    Ok(s)
}

/// In a child process started by [`Crowd::start`], does the child's work and
/// exits: opens the connections, says "ready", holds them until stdin
/// closes. Elsewhere, returns.
pub fn serve_if_child() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let mut parts = spec.split('\t');
    let (socket, count, seed) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(c), Some(seed)) => (s.to_string(), c.parse(), seed.parse()),
        _ => panic!("{ENV}={spec}: expected SOCKET\\tCOUNT\\tSEED"),
    };
    let (count, seed): (usize, usize) = (count.expect("COUNT"), seed.expect("SEED"));
    let held: Vec<UnixStream> = (seed..seed + count)
        .map(|i| connect(&socket, i).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // Straight to the descriptor: a test harness captures println!.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY} {}", held.len());
    let _ = out.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
    std::process::exit(0);
}

/// Hostile clients in child processes, one per uid, holding their
/// connections until [`Crowd::stop`] (or drop).
pub struct Crowd {
    children: Vec<Child>,
    pub connections: usize,
}

impl Crowd {
    /// Opens `per_uid` connections to the bus at `address` (unix:path=...)
    /// as each of `uids`, by running this binary again with `args` (for a
    /// test: `--exact NAME`, so that the child runs only that test, which
    /// calls [`serve_if_child`] first). Returns when every connection has
    /// sent its calls.
    pub fn start(address: &str, args: &[&str], uids: &[u32], per_uid: usize) -> Crowd {
        let socket = address
            .strip_prefix("unix:path=")
            .unwrap_or_else(|| panic!("{address}: not a unix:path= address"));
        let exe = std::env::current_exe().expect("this binary's path");
        let mut children = Vec::new();
        for (k, uid) in uids.iter().enumerate() {
            let mut child = Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(&exe)
                .args(args)
                .env(ENV, format!("{socket}\t{per_uid}\t{}", k * per_uid))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("setpriv");
            let ready = child
                .stdout
                .take()
                .map(std::io::BufReader::new)
                .and_then(|out| {
                    out.lines()
                        .map_while(Result::ok)
                        .find(|l| l.starts_with(READY))
                });
            assert_eq!(
                ready,
                Some(format!("{READY} {per_uid}")),
                "hostile clients as uid {uid} did not all connect"
            );
            children.push(child);
        }
        Crowd {
            children,
            connections: uids.len() * per_uid,
        }
    }

    /// Closes every connection (the children exit) and waits for them.
    pub fn stop(mut self) {
        self.reap();
    }

    fn reap(&mut self) {
        for mut c in self.children.drain(..) {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.reap();
    }
}
