//! The Rust mirror of the map layouts must match what clang compiled: sizes
//! and member offsets are read from the object's BTF with bpftool.

use hookd_bpf::layout::{AddrData, AddrKey, NicConfig, NicStats};
use std::mem::{offset_of, size_of};
use std::process::Command;

/// (struct size, [(member, byte offset)]) from `bpftool btf dump`.
fn btf_struct(dump: &str, name: &str) -> (usize, Vec<(String, usize)>) {
    let header = format!("STRUCT '{name}' size=");
    let mut lines = dump.lines().skip_while(|l| !l.contains(&header));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("struct {name} not in BTF"));
    let size = first
        .split("size=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let members = lines
        .take_while(|l| l.starts_with('\t'))
        .map(|l| {
            let member = l.trim().split('\'').nth(1).unwrap().to_string();
            let bits: usize = l
                .split("bits_offset=")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (member, bits / 8)
        })
        .collect();
    (size.parse().unwrap(), members)
}

#[test]
fn rust_layouts_match_the_compiled_btf() {
    let obj = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(obj.path(), hookd_bpf::HOOKD_OBJ).unwrap();
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(obj.path())
        .output()
        .expect("bpftool is installed by .ci/run (apt-get install bpftool)");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();

    type Case = (&'static str, usize, Vec<(&'static str, usize)>);
    let cases: [Case; 3] = [
        (
            "nic_config",
            size_of::<NicConfig>(),
            vec![
                ("mac", offset_of!(NicConfig, mac)),
                ("flags", offset_of!(NicConfig, flags)),
                ("reserved", offset_of!(NicConfig, reserved)),
                ("generation", offset_of!(NicConfig, generation)),
            ],
        ),
        (
            "addr_key",
            size_of::<AddrKey>(),
            vec![
                // aya's Key<K> is { u32 prefix_len; K data }
                ("prefixlen", 0),
                ("ifindex", 4 + offset_of!(AddrData, ifindex)),
                ("addr", 4 + offset_of!(AddrData, addr)),
            ],
        ),
        (
            "nic_stats",
            size_of::<NicStats>(),
            vec![
                ("to_vm_packets", offset_of!(NicStats, to_vm_packets)),
                ("to_vm_bytes", offset_of!(NicStats, to_vm_bytes)),
                ("from_vm_packets", offset_of!(NicStats, from_vm_packets)),
                ("from_vm_bytes", offset_of!(NicStats, from_vm_bytes)),
                ("drops", offset_of!(NicStats, drops)),
            ],
        ),
    ];
    for (name, rust_size, rust_members) in cases {
        let (c_size, c_members) = btf_struct(&dump, name);
        assert_eq!(c_size, rust_size, "size of struct {name}");
        let rust: Vec<(String, usize)> = rust_members
            .into_iter()
            .map(|(m, o)| (m.to_string(), o))
            .collect();
        assert_eq!(c_members, rust, "members of struct {name}");
    }
}
