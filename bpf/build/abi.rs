//! The Rust side of the kernel interface, generated from the BTF of
//! `c/abi.c` (which anchors every enum and struct of `c/lib/types.h`):
//! the constants, `DropReason`, and compile-time checks of the size, field
//! offsets and field types of each hand-written struct in `src/layout.rs`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The Rust type of each C enum's constants; `DropReason` makes the enum.
const ENUMS: &[(&str, &str)] = &[
    ("nic_flag", "u16"),
    ("drop_reason", "DropReason"),
    ("stats_size", "usize"),
    ("fw_mode", "u8"),
    ("fw_kind", "u8"),
    ("direction", "u8"),
    ("lpm_fixed_bits", "u32"),
    ("map_size", "u32"),
    ("ct_state", "u8"),
    ("ct_timeout_s", "u64"),
    ("ct_key_kind", "u8"),
    ("net_addr_kind", "u8"),
    ("route_kind", "u8"),
    ("route_fixed_bits", "u32"),
    ("answer_mark", "u32"),
    ("net_counter", "usize"),
    ("ra_flag", "u8"),
    ("ra_sizes", "usize"),
    ("trace_how", "u8"),
];

/// The Rust mirror of each C struct. LPM keys are mirrored by their data
/// after `prefixlen`, which aya's `lpm_trie::Key` puts in front.
const STRUCTS: &[(&str, &str, bool)] = &[
    ("nic_config", "NicConfig", false),
    ("addr_key", "AddrData", true),
    ("nic_stats", "NicStats", false),
    ("fw_class_key", "FwClassData", true),
    ("fw_rule_key", "FwRuleData", true),
    ("fw_verdict", "FwVerdict", false),
    ("trace_note", "TraceNote", false),
    ("fw_hit_key", "FwHitKey", false),
    ("fw_event", "FwEvent", false),
    ("log_window", "LogWindow", false),
    ("ct_key", "CtKey", false),
    ("ct_entry", "CtEntry", false),
    ("nic_net", "NicNet", false),
    ("net_addr_key", "NetAddrKey", false),
    ("net_addr", "NetAddr", false),
    ("route_key", "RouteData", true),
    ("route", "Route", false),
    ("dhcp_lease", "DhcpLease", false),
    ("net_stats", "NetStats", false),
    ("uplink", "Uplink", false),
    ("net_members", "NetMembers", false),
    ("ra_info", "RaInfo", false),
];

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The `.BTF` section of a little-endian ELF64 object.
fn btf_section(elf: &[u8]) -> &[u8] {
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 object"
    );
    let shoff = u64_at(elf, 0x28) as usize;
    let (shentsize, shnum) = (u16_at(elf, 0x3a) as usize, u16_at(elf, 0x3c) as usize);
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        let (off, size) = (u64_at(elf, h + 24) as usize, u64_at(elf, h + 32) as usize);
        (u32_at(elf, h) as usize, &elf[off..off + size])
    };
    let (_, names) = section(u16_at(elf, 0x3e) as usize);
    (0..shnum)
        .map(section)
        .find(|(name, _)| names[*name..].starts_with(b".BTF\0"))
        .expect("the object has no .BTF section (compiled without -g?)")
        .1
}

#[derive(Debug)]
enum Type {
    Int {
        size: u32,
        signed: bool,
    },
    Array {
        elem: u32,
        len: u32,
    },
    Alias(u32), // typedef, const, volatile
    Struct {
        name: String,
        size: u32,
        members: Vec<(String, u32, u32)>,
    }, // name, type, bit offset
    Enum {
        name: String,
        values: Vec<(String, i64)>,
    },
    Other,
}

fn parse_btf(btf: &[u8]) -> Vec<Type> {
    assert_eq!(u16_at(btf, 0), 0xeb9f, "bad BTF magic");
    let hdr = u32_at(btf, 4) as usize;
    let (types_off, types_len) = (hdr + u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let strs = &btf[hdr + u32_at(btf, 16) as usize..][..u32_at(btf, 20) as usize];
    let name = |off: u32| {
        let s = &strs[off as usize..];
        String::from_utf8(s[..s.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
    };
    let t = &btf[types_off..types_off + types_len];
    let mut types = vec![Type::Other]; // type 0 is void
    let mut o = 0;
    while o < t.len() {
        let (name_off, info, size) = (u32_at(t, o), u32_at(t, o + 4), u32_at(t, o + 8));
        let (kind, vlen, kflag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
        o += 12;
        let ty = match kind {
            1 => Type::Int {
                size,
                signed: u32_at(t, o) >> 24 & 1 != 0,
            },
            3 => Type::Array {
                elem: u32_at(t, o),
                len: u32_at(t, o + 8),
            },
            8..=10 => Type::Alias(size),
            4 => Type::Struct {
                name: name(name_off),
                size,
                members: (0..vlen)
                    .map(|i| {
                        let m = o + 12 * i;
                        let off = u32_at(t, m + 8);
                        assert!(kflag == 0 || off >> 24 == 0, "bitfields are not supported");
                        (name(u32_at(t, m)), u32_at(t, m + 4), off)
                    })
                    .collect(),
            },
            6 => Type::Enum {
                name: name(name_off),
                values: (0..vlen)
                    .map(|i| {
                        let v = u32_at(t, o + 8 * i + 4);
                        let v = if kflag != 0 {
                            i64::from(v as i32)
                        } else {
                            i64::from(v)
                        };
                        (name(u32_at(t, o + 8 * i)), v)
                    })
                    .collect(),
            },
            _ => Type::Other,
        };
        o += match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 => 12 * vlen,
            6 | 13 => 8 * vlen,
            19 => 12 * vlen,
            _ => 0,
        };
        types.push(ty);
    }
    types
}

/// The Rust spelling of a member's C type.
fn rust_type(types: &[Type], id: u32) -> String {
    match &types[id as usize] {
        Type::Alias(t) => rust_type(types, *t),
        Type::Int { size, signed } => format!("{}{}", if *signed { "i" } else { "u" }, size * 8),
        Type::Array { elem, len } => format!("[{}; {len}]", rust_type(types, *elem)),
        other => panic!("a member of type {other:?} has no Rust mirror here"),
    }
}

/// The `/* comment */` on the line that defines enumerator NAME in types.h.
fn comment(header: &str, name: &str) -> Option<String> {
    header.lines().map(str::trim).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !rest.starts_with([' ', '=', ',']) {
            return None;
        }
        let c = &rest[rest.find("/*")? + 2..];
        Some(c[..c.find("*/")?].trim().to_string())
    })
}

fn camel(c_name: &str) -> String {
    c_name
        .split('_')
        .map(|w| w[..1].to_string() + &w[1..].to_lowercase())
        .collect()
}

/// Generates `abi.rs` from the BTF of `abi_obj` and the text of types.h.
pub fn generate(abi_obj: &[u8], header: &str) -> String {
    let types = parse_btf(btf_section(abi_obj));
    let mut enums = BTreeMap::new();
    let mut structs = BTreeMap::new();
    for t in &types {
        match t {
            Type::Enum { name, values } => {
                enums.insert(name.clone(), values);
            }
            Type::Struct {
                name,
                size,
                members,
            } => {
                structs.insert(name.clone(), (*size, members));
            }
            _ => {}
        }
    }
    // Everything types.h defines must be anchored in abi.c and mirrored.
    for line in header.lines() {
        let Some(def) = line.strip_suffix(" {") else {
            continue;
        };
        let (kind, name) = def.split_once(' ').unwrap_or(("", ""));
        let known = match kind {
            "enum" => enums.contains_key(name),
            "struct" => structs.contains_key(name),
            _ => continue,
        };
        assert!(
            known,
            "types.h defines `{def}`, which c/abi.c does not anchor"
        );
    }
    for name in enums.keys() {
        assert!(
            ENUMS.iter().any(|e| e.0 == name),
            "build/abi.rs: enum {name} has no Rust type in ENUMS"
        );
    }
    for name in structs.keys() {
        assert!(
            STRUCTS.iter().any(|s| s.0 == name),
            "build/abi.rs: struct {name} has no Rust mirror in STRUCTS"
        );
    }

    let mut out =
        String::from("// @generated by bpf/build.rs from the BTF of c/abi.c (c/lib/types.h).\n\n");
    let mut table = String::new();
    for &(c_enum, rust) in ENUMS {
        let values = enums
            .get(c_enum)
            .unwrap_or_else(|| panic!("enum {c_enum} is not in c/abi.c's BTF"));
        if rust == "DropReason" {
            out += &drop_reason(header, values);
            for (name, _) in values.iter() {
                let variant = camel(name.strip_prefix("DROP_").unwrap());
                writeln!(table, "    (\"{name}\", DropReason::{variant} as i128),").unwrap();
            }
            continue;
        }
        for (name, v) in values.iter() {
            let doc =
                comment(header, name).unwrap_or_else(|| format!("`enum {c_enum}` in types.h."));
            writeln!(out, "/// {doc}\npub const {name}: {rust} = {v};").unwrap();
            writeln!(table, "    (\"{name}\", {name} as i128),").unwrap();
        }
    }
    writeln!(
        out,
        "\n/// Every constant of types.h as the Rust side has it (for tests/layout.rs).\n\
         #[doc(hidden)]\npub const ABI_CONSTANTS: &[(&str, i128)] = &[\n{table}];\n"
    )
    .unwrap();

    let mut table = String::new();
    for &(c_struct, rust, lpm) in STRUCTS {
        let (size, members) = structs
            .get(c_struct)
            .unwrap_or_else(|| panic!("struct {c_struct} is not in c/abi.c's BTF"));
        let whole = if lpm {
            format!("aya::maps::lpm_trie::Key<{rust}>")
        } else {
            rust.to_string()
        };
        writeln!(
            out,
            "const _: () = assert!(size_of::<{whole}>() == {size}, \"size of struct {c_struct}\");"
        )
        .unwrap();
        write!(table, "    (\"{c_struct}\", size_of::<{whole}>(), &[").unwrap();
        for (i, (m, ty, bits)) in members.iter().enumerate() {
            let (ty, off) = (rust_type(&types, *ty), bits / 8);
            if lpm && i == 0 {
                assert!(
                    m == "prefixlen" && ty == "u32" && off == 0,
                    "struct {c_struct}: an LPM key starts with __u32 prefixlen"
                );
                table += "(\"prefixlen\", 0), ";
                continue;
            }
            let at = if lpm {
                format!("4 + offset_of!({rust}, {m})")
            } else {
                format!("offset_of!({rust}, {m})")
            };
            writeln!(
                out,
                "const _: () = assert!({at} == {off}, \"offset of {c_struct}.{m}\");\n\
                 const _: fn(&{rust}) -> &{ty} = |s| &s.{m};"
            )
            .unwrap();
            write!(table, "(\"{m}\", {at}), ").unwrap();
        }
        table += "]),\n";
    }
    writeln!(
        out,
        "\n/// Size and field offsets of every struct of types.h as the Rust side\n\
         /// has them (for tests/layout.rs).\n#[doc(hidden)]\n\
         pub const ABI_STRUCTS: &[AbiStruct] = &[\n{table}];\n\n\
         /// A struct's C name, size and (field, byte offset).\n#[doc(hidden)]\n\
         pub type AbiStruct = (&'static str, usize, &'static [(&'static str, usize)]);"
    )
    .unwrap();
    out
}

fn drop_reason(header: &str, values: &[(String, i64)]) -> String {
    let mut out = String::from(
        "/// Why the data path dropped a frame (`enum drop_reason` in types.h);\n\
         /// the index into [`NicStats::drops`].\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq)]\n#[repr(usize)]\npub enum DropReason {\n",
    );
    let (mut all, mut names, mut abouts) = (String::new(), String::new(), String::new());
    for (name, v) in values {
        let short = name
            .strip_prefix("DROP_")
            .unwrap_or_else(|| panic!("{name}: drop reasons start with DROP_"));
        let variant = camel(short);
        let doc = comment(header, name).unwrap_or_else(|| format!("`{name}`"));
        writeln!(out, "    /// {doc}\n    {variant} = {v},").unwrap();
        writeln!(all, "        Self::{variant},").unwrap();
        writeln!(abouts, "            Self::{variant} => {doc:?},").unwrap();
        writeln!(
            names,
            "            Self::{variant} => \"{}\",",
            short.to_lowercase()
        )
        .unwrap();
    }
    writeln!(
        out,
        "}}\n\nimpl DropReason {{\n    /// Every reason, in the order of types.h.\n    \
         pub const ALL: [DropReason; {n}] = [\n{all}    ];\n\n    \
         /// Stable name used in `hookctl` output, JSON and D-Bus: the C name\n    \
         /// without `DROP_`, in lower case.\n    \
         pub fn name(self) -> &'static str {{\n        match self {{\n{names}        }}\n    }}\n\n    \
         /// What it means, from types.h.\n    \
         pub fn about(self) -> &'static str {{\n        match self {{\n{abouts}        }}\n    }}\n}}\n\n\
         const _: () = assert!({max} < DROP_REASONS, \"a drop reason beyond nic_stats.drops\");\n",
        n = values.len(),
        max = values.iter().map(|v| v.1).max().unwrap_or(0),
    )
    .unwrap();
    out
}
