//! Helpers for the privileged tests: a private bpffs, a network namespace,
//! a tap driven from its file descriptor, and frame builders.
#![allow(dead_code)]

pub mod bus;
pub mod private_bus;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
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
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "privileged tests must run as root (scripts/test-all.sh)"
    );
}

/// A bpf filesystem mounted on a fresh temporary directory.
pub struct Bpffs {
    pub dir: tempfile::TempDir,
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

    /// Moves the calling thread into the namespace. Run test bodies in a
    /// dedicated thread so the test harness' threads stay where they were.
    pub fn enter(name: &str) {
        let f = File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: valid fd of a netns file.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
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

/// A seeded xorshift generator, for benchmark inputs that repeat run to run.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- frames -------------------------------------------------------------

pub fn mac(s: &str) -> [u8; 6] {
    s.parse::<hookd_model::mac::MacAddr>().unwrap().0
}

pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with_options(src, dst, proto, &[], payload)
}

/// An IPv4 packet whose header carries `options` (a multiple of 4 bytes).
pub fn ipv4_with_options(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options come in 4-byte words");
    let hl = 20 + options.len();
    let total = hl + payload.len();
    let mut h = vec![
        0x40 | (hl / 4) as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn icmp_echo(seq: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x12, 0x34, (seq >> 8) as u8, seq as u8];
    m.extend_from_slice(b"hookd-test-payload");
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = vec![0; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

pub fn arp(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa.octets());
    a
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(255);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// ICMPv6 message with a 4-byte body field then `target` (ND layout).
pub fn icmpv6_nd(kind: u8, target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m
}

/// The echo-reply frames among `frames` with our id and `seq`.
pub fn echo_replies(frames: &[Vec<u8>], seq: u16) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 14 + 20 + 8 && f[12..14] == [8, 0] && f[14 + 9] == 1)
        .filter(|f| {
            let icmp = &f[14 + usize::from(f[14] & 0xf) * 4..];
            icmp[0] == 0 && icmp[4..6] == [0x12, 0x34] && icmp[6..8] == seq.to_be_bytes()
        })
        .count()
}

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14] = 0xff;
    t
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

pub fn icmp(kind: u8, code: u8, id: u16, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    m.extend_from_slice(rest);
    m
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
