//! Unsolicited router advertisements. `hookd_from_vm` answers a guest's
//! router solicitation (bpf/c/lib/ra.h), but a guest solicits only when
//! its interface comes up, and the default route an advertisement gives
//! lasts its router lifetime (9000 s). hookd therefore sends each network
//! NIC with IPv6 (an entry in `hookd_ra`) the same advertisement, to all
//! nodes, every [`RA_INTERVAL`]: written on the tap with a packet socket.
//! `hookd_to_vm` judges it as any frame to the VM; security groups leave
//! neighbour discovery alone (`fw_infrastructure`), so it passes them.

use crate::datapath::Datapath;
use hookd_bpf::layout::{self, RaInfo};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How often each network NIC gets an unsolicited advertisement: well
/// inside the router lifetime, as RFC 4861's MaxRtrAdvInterval is.
pub const RA_INTERVAL: Duration = Duration::from_secs(600);

const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The one's-complement checksum of `data` (ICMPv6 with its pseudo-header).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The advertisement `hookd_from_vm` answers a solicitation from `::`
/// with: from the gateway (`gw_mac`, `info.gw_ll`) to all nodes.
pub fn unsolicited_ra(info: &RaInfo, gw_mac: [u8; 6]) -> Vec<u8> {
    let mut ra = vec![0u8; layout::RA_LEN];
    ra[0] = 134;
    ra[4] = 64;
    if info.flags & layout::RA_F_DHCP6 != 0 {
        ra[5] = 0x80; // M: addresses from DHCPv6
    }
    ra[6..8].copy_from_slice(&(layout::RA_ROUTER_LIFETIME as u16).to_be_bytes());
    ra[16] = 1;
    ra[17] = 1;
    ra[18..24].copy_from_slice(&gw_mac);
    ra[24] = 5;
    ra[25] = 1;
    ra[28..32].copy_from_slice(&info.mtu.to_be_bytes());
    ra[32] = 3;
    ra[33] = 4;
    ra[34] = 64;
    ra[35] = 0x80
        | if info.flags & layout::RA_F_SLAAC != 0 {
            0x40
        } else {
            0
        };
    ra[36..44].fill(0xff);
    ra[48..64].copy_from_slice(&info.prefix);
    let mut pseudo = Vec::with_capacity(40 + ra.len());
    pseudo.extend_from_slice(&info.gw_ll);
    pseudo.extend_from_slice(&ALL_NODES);
    pseudo.extend_from_slice(&(ra.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&ra);
    let sum = checksum(&pseudo);
    ra[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + ra.len());
    f.extend_from_slice(&ALL_NODES_MAC);
    f.extend_from_slice(&gw_mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, ra.len() as u8, 58, 255]);
    f.extend_from_slice(&info.gw_ll);
    f.extend_from_slice(&ALL_NODES);
    f.extend_from_slice(&ra);
    f
}

/// A raw packet socket.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_on(fd: &OwnedFd, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `sa` outlive the call; their sizes are given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Datapath {
    /// Sends every network NIC with IPv6 its router advertisement; returns
    /// how many were sent. A tap that is gone, or down, is skipped.
    pub fn advertise_routers(&self) -> usize {
        let fd = match packet_socket() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "no packet socket for router advertisements");
                return 0;
            }
        };
        let mut sent = 0;
        for (ifindex, info) in self.ra.iter().filter_map(Result::ok) {
            let Ok(net) = self.nic_nets.get(&ifindex, 0) else {
                continue;
            };
            match send_on(&fd, ifindex, &unsolicited_ra(&info, net.gw_mac)) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(ifindex, error = %e, "router advertisement not sent"),
            }
        }
        sent
    }
}
