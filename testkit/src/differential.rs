//! What the differential tests (hookd/tests/differential*.rs) share:
//! random picks, random security-group rules, and how frames are shown.

use crate::frames::Rng;
use std::fmt::Write as _;

/// The run's length and seed: `HOOKD_DIFF_FRAMES` and `HOOKD_DIFF_SEED`
/// where they are set, else these defaults. A value that is not a number
/// stops the test rather than quietly running the default.
pub fn run_size(frames: usize, seed: u64) -> (usize, u64) {
    let env = |name: &str, default: u64| match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a whole number")),
        Err(_) => default,
    };
    (
        env("HOOKD_DIFF_FRAMES", frames as u64) as usize,
        env("HOOKD_DIFF_SEED", seed),
    )
}

pub fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

pub fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

/// Rule `remote`s, `ports`, and the ports flows use (some inside them).
pub const RULE_REMOTES: [&str; 8] = [
    "198.51.100.0/24",
    "198.51.100.64/26",
    "203.0.113.0/24",
    "203.0.113.9/32",
    "0.0.0.0/0",
    "2001:db8:100::/48",
    "2001:db8:ff::/48",
    "2000::/3",
];
pub const RULE_PORTS: [&str; 8] = [
    "22",
    "53",
    "80,443",
    "8000-8080",
    "1-1024",
    "5353",
    "40000-65535",
    "123,5000-5100",
];

pub const ICMP_TYPES: [u8; 8] = [8, 0, 3, 11, 128, 129, 1, 13];

/// A rule of `protocol` with random ports, ICMP type/code and remote.
pub fn random_rule(rng: &mut Rng) -> String {
    let action = if chance(rng, 65) { "allow" } else { "deny" };
    let protocol = *pick(rng, &["tcp", "udp", "icmp", "icmpv6", "any", "sctp"]);
    let mut r = format!("<hookd:rule action='{action}' protocol='{protocol}'");
    if matches!(protocol, "tcp" | "udp" | "sctp") && chance(rng, 70) {
        let _ = write!(r, " ports='{}'", pick(rng, &RULE_PORTS));
    }
    if matches!(protocol, "icmp" | "icmpv6") && chance(rng, 50) {
        let _ = write!(r, " icmp-type='{}'", pick(rng, &ICMP_TYPES));
        if chance(rng, 30) {
            let _ = write!(r, " icmp-code='{}'", rng.below(2));
        }
    }
    if chance(rng, 60) {
        let _ = write!(r, " remote='{}'", pick(rng, &RULE_REMOTES));
    }
    if chance(rng, 10) {
        r.push_str(" log='true'"); // reported, and judged the same
    }
    r.push_str("/>");
    r
}

/// An IPv4 or IPv6 EtherType without a whole IP header behind it.
pub fn short_ip(f: &[u8]) -> bool {
    match (f.get(12), f.get(13)) {
        (Some(0x08), Some(0x00)) => f.len() < 14 + 20,
        (Some(0x86), Some(0xdd)) => f.len() < 14 + 40,
        _ => false,
    }
}

pub fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}
