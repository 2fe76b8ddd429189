//! The Rust mirror of the map layouts must match what clang compiled: sizes
//! and member offsets are read from the object's BTF with bpftool.

use aya::maps::lpm_trie::Key;
use hookd_bpf::layout::{
    AddrData, AddrKey, FwClassData, FwHitKey, FwRuleData, FwVerdict, NicConfig, NicStats,
};
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
    let cases: [Case; 7] = [
        (
            "nic_config",
            size_of::<NicConfig>(),
            vec![
                ("mac", offset_of!(NicConfig, mac)),
                ("flags", offset_of!(NicConfig, flags)),
                ("fw_ingress", offset_of!(NicConfig, fw_ingress)),
                ("fw_egress", offset_of!(NicConfig, fw_egress)),
                ("fw_gen", offset_of!(NicConfig, fw_gen)),
                ("fw_kinds", offset_of!(NicConfig, fw_kinds)),
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
        (
            "fw_class_key",
            size_of::<Key<FwClassData>>(),
            vec![
                ("prefixlen", 0),
                ("ifindex", 4 + offset_of!(FwClassData, ifindex)),
                ("half", 4 + offset_of!(FwClassData, half)),
                ("dir", 4 + offset_of!(FwClassData, dir)),
                ("pad", 4 + offset_of!(FwClassData, pad)),
                ("addr", 4 + offset_of!(FwClassData, addr)),
            ],
        ),
        (
            "fw_rule_key",
            size_of::<Key<FwRuleData>>(),
            vec![
                ("prefixlen", 0),
                ("ifindex", 4 + offset_of!(FwRuleData, ifindex)),
                ("half", 4 + offset_of!(FwRuleData, half)),
                ("dir", 4 + offset_of!(FwRuleData, dir)),
                ("proto", 4 + offset_of!(FwRuleData, proto)),
                ("any", 4 + offset_of!(FwRuleData, any)),
                ("class", 4 + offset_of!(FwRuleData, class)),
                ("port", 4 + offset_of!(FwRuleData, port)),
                ("pad", 4 + offset_of!(FwRuleData, pad)),
            ],
        ),
        (
            "fw_verdict",
            size_of::<FwVerdict>(),
            vec![
                ("deny", offset_of!(FwVerdict, deny)),
                ("log", offset_of!(FwVerdict, log)),
                ("rule", offset_of!(FwVerdict, rule)),
            ],
        ),
        (
            "fw_hit_key",
            size_of::<FwHitKey>(),
            vec![
                ("ifindex", offset_of!(FwHitKey, ifindex)),
                ("dir", offset_of!(FwHitKey, dir)),
                ("half", offset_of!(FwHitKey, half)),
                ("rule", offset_of!(FwHitKey, rule)),
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
