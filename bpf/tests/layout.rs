//! The Rust side of the kernel interface must match what clang compiled from
//! `c/lib/types.h`. `build.rs` generates it from BTF with its own reader and
//! checks it at compile time; this reads the BTF again with bpftool and
//! compares every constant, struct size and field offset.

use hookd_bpf::layout::{ABI_CONSTANTS, ABI_STRUCTS, DropReason};
use std::collections::BTreeMap;
use std::process::Command;

type Structs = BTreeMap<String, (usize, Vec<(String, usize)>)>;

fn btf_dump(obj: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), obj).unwrap();
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(file.path())
        .output()
        .expect("bpftool is installed by .ci/run (apt-get install bpftool)");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `'name' ...` of a member or enumerator line, and the value of `key=`.
fn quoted_and(line: &str, key: &str) -> (String, String) {
    let name = line.trim().split('\'').nth(1).unwrap().to_string();
    let value = line.split(key).nth(1).unwrap().split_whitespace().next();
    (name, value.unwrap().trim_end_matches(',').to_string())
}

/// Every named struct: size and (member, byte offset).
fn structs(dump: &str) -> Structs {
    let mut out = Structs::new();
    let mut lines = dump.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.split_once("] STRUCT '").map(|x| x.1) else {
            continue;
        };
        let name = rest.split('\'').next().unwrap().to_string();
        let size = rest.split("size=").nth(1).unwrap().split_whitespace();
        let mut members = Vec::new();
        while let Some(m) = lines.next_if(|l| l.starts_with('\t')) {
            let (member, bits) = quoted_and(m, "bits_offset=");
            members.push((member, bits.parse::<usize>().unwrap() / 8));
        }
        if name != "(anon)" {
            out.insert(
                name,
                (size.take(1).collect::<String>().parse().unwrap(), members),
            );
        }
    }
    out
}

/// Every enumerator of every enum, with its value.
fn enumerators(dump: &str) -> BTreeMap<String, i128> {
    let mut out = BTreeMap::new();
    let mut lines = dump.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.contains("] ENUM ") {
            continue;
        }
        while let Some(e) = lines.next_if(|l| l.starts_with('\t')) {
            let (name, value) = quoted_and(e, "val=");
            assert!(
                out.insert(name.clone(), value.parse().unwrap()).is_none(),
                "{name} twice"
            );
        }
    }
    out
}

fn rust_structs() -> Structs {
    ABI_STRUCTS
        .iter()
        .map(|(name, size, members)| {
            let members = members.iter().map(|(m, o)| (m.to_string(), *o)).collect();
            (name.to_string(), (*size, members))
        })
        .collect()
}

#[test]
fn every_constant_matches_the_btf() {
    let c = enumerators(&btf_dump(hookd_bpf::ABI_OBJ));
    let rust: BTreeMap<String, i128> = ABI_CONSTANTS
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    assert!(c.len() > 30, "too few constants in abi.o's BTF: {c:?}");
    assert_eq!(c, rust, "constants of types.h (left) and Rust (right)");
}

#[test]
fn every_struct_matches_the_btf() {
    let rust = rust_structs();
    let c = structs(&btf_dump(hookd_bpf::ABI_OBJ));
    assert_eq!(c, rust, "structs of types.h (left) and Rust (right)");
    // The object hookd loads was compiled from the same header: the map
    // keys and values its BTF has are the same structs.
    let shipped = structs(&btf_dump(hookd_bpf::HOOKD_OBJ));
    for name in [
        "nic_config",
        "addr_key",
        "nic_stats",
        "fw_class_key",
        "fw_rule_key",
    ] {
        assert!(
            shipped.contains_key(name),
            "struct {name} not in hookd.bpf.o"
        );
    }
    for (name, layout) in &shipped {
        if let Some(r) = rust.get(name) {
            assert_eq!(
                layout, r,
                "struct {name} in hookd.bpf.o (left) and Rust (right)"
            );
        }
    }
}

/// The names are a contract (hookctl output, JSON, D-Bus): generated from
/// the C names, so renaming a DROP_* constant must fail here.
#[test]
fn drop_reason_names_are_stable() {
    let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "mac_spoof",
            "ip_spoof",
            "arp_spoof",
            "nd_spoof",
            "dhcp_server",
            "router_advert",
            "vlan",
            "ethertype",
            "malformed",
            "fw_rule",
            "fw_default",
            "ct_invalid",
            "fragment",
            "no_route",
            "unknown_unicast",
            "not_forwarded",
            "ttl",
            "tenant_mismatch",
            "flood_bound"
        ]
    );
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
}
