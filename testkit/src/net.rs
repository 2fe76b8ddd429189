//! Root-only fixtures: a private bpffs, network namespaces (and a guard
//! that puts the thread back where it was), taps driven from their file
//! descriptor, and the build's own binaries.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "command failed: {cmd}");
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "privileged tests must run as root (scripts/test-all.sh)"
    );
}

/// A bpf filesystem mounted on a fresh temporary directory.
pub struct Bpffs {
    pub dir: tempfile::TempDir,
}

impl Default for Bpffs {
    fn default() -> Bpffs {
        Bpffs::new()
    }
}

impl Bpffs {
    pub fn new() -> Bpffs {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        sh(&format!("mount -t bpf bpf {}", dir.path().display()));
        Bpffs { dir }
    }
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("hookd")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = format!("hookd-t-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&format!("ip netns add {name}"));
        Netns { name }
    }

    /// Moves the calling thread into the namespace until the returned
    /// guard is dropped, which puts it back where it was.
    #[must_use = "the thread leaves the namespace when the guard drops"]
    pub fn enter(name: &str) -> InNetns {
        let back = File::open("/proc/thread-self/ns/net").expect("the thread's netns");
        setns(&format!("/run/netns/{name}"));
        InNetns { back }
    }
}

fn setns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    setns_fd(&f);
}

fn setns_fd(f: &File) {
    // SAFETY: `f` is an open netns file for the duration of the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// The calling thread inside a namespace; dropping it returns the thread
/// to the namespace it came from.
pub struct InNetns {
    back: File,
}

impl Drop for InNetns {
    fn drop(&mut self) {
        setns_fd(&self.back);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A tap whose file descriptor plays the VM: what we write, the host
/// receives from the "guest"; what the host sends to the guest, we read.
pub struct Tap {
    pub name: String,
    file: File,
    /// The virtio-net header each frame needs (empty without IFF_VNET_HDR).
    vnet_hdr: Vec<u8>,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const TUNGETVNETHDRSZ: libc::c_ulong = 0x800454d7;

/// Opens /dev/net/tun and binds it to `name` with `flags` (TUNSETIFF).
fn open_tun(name: &str, flags: libc::c_int) -> File {
    let path = CString::new("/dev/net/tun").unwrap();
    // SAFETY: plain open(2) of a valid path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    assert!(
        fd >= 0,
        "open /dev/net/tun: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; 16],
        flags: flags as libc::c_short,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF takes a struct ifreq, which IfReq mirrors.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    file
}

impl Tap {
    /// Creates `name` in the calling thread's network namespace.
    pub fn create(name: &str) -> Tap {
        Tap {
            name: name.into(),
            file: open_tun(name, libc::IFF_TAP | libc::IFF_NO_PI),
            vnet_hdr: Vec::new(),
        }
    }

    /// Opens one more queue of `name`, a multi-queue tap that another
    /// program holds (QEMU, for a libvirt domain): frames written here enter
    /// the host as if that guest sent them. TUNSETIFF sets the flags of every
    /// queue, so the tap's own flags are kept, and frames get the zeroed
    /// virtio-net header the tap then expects.
    pub fn attach_queue(name: &str) -> Tap {
        let sysfs = format!("/sys/class/net/{name}/tun_flags");
        let text = std::fs::read_to_string(&sysfs).unwrap_or_else(|e| panic!("{sysfs}: {e}"));
        let flags = i32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("{sysfs}: {e}"));
        assert!(
            flags & libc::IFF_MULTI_QUEUE != 0,
            "{name} is not a multi-queue tap"
        );
        let file = open_tun(name, flags & !libc::IFF_PERSIST);
        let mut hdr_len: libc::c_int = 0;
        if flags & libc::IFF_VNET_HDR != 0 {
            // SAFETY: TUNGETVNETHDRSZ writes one int.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNGETVNETHDRSZ, &mut hdr_len) };
            assert_eq!(
                rc,
                0,
                "TUNGETVNETHDRSZ: {}",
                std::io::Error::last_os_error()
            );
        }
        Tap {
            name: name.into(),
            file,
            vnet_hdr: vec![0; hdr_len as usize],
        }
    }

    pub fn send(&mut self, frame: &[u8]) {
        if self.vnet_hdr.is_empty() {
            self.file.write_all(frame).unwrap();
        } else {
            let iov = [
                std::io::IoSlice::new(&self.vnet_hdr),
                std::io::IoSlice::new(frame),
            ];
            let n = self.file.write_vectored(&iov).unwrap();
            assert_eq!(n, self.vnet_hdr.len() + frame.len(), "short tap write");
        }
    }

    /// The frames the host has sent to the guest so far, without waiting.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match self.file.read(&mut buf) {
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("tap read: {e}"),
            }
        }
    }

    /// Frames the host sends to the guest within `wait`.
    pub fn recv_for(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            match self.file.read(&mut buf) {
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("tap read: {e}"),
            }
        }
        out
    }
}

/// Sets up `tap` as the host side of a VM with the MAC `vm_mac`: the host
/// is 192.0.2.1/24, with static neighbours for the addresses the tests send
/// from (192.0.2.10 and .99), so a frame that passes gets a reply.
pub fn host_side(tap: &str, host_mac: &str, vm_mac: &str) {
    sh(&format!(
        "ip link set {tap} address {host_mac} && ip addr add 192.0.2.1/24 dev {tap} && ip link set {tap} up && \
         ip neigh replace 192.0.2.10 lladdr {vm_mac} dev {tap} nud permanent && \
         ip neigh replace 192.0.2.99 lladdr {vm_mac} dev {tap} nud permanent && \
         sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{tap}.rp_filter=0"
    ));
}

/// The hookctl binary of this build (another package's, so cargo gives no
/// CARGO_BIN_EXE_ for it): next to this test's own directory.
pub fn hookctl_bin() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/<test> -> target/<profile>/hookctl
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join("hookctl"))
            .expect("a target directory");
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build --workspace)",
            bin.display()
        );
        bin.display().to_string()
    })
}
