//! Compiles hookd's eBPF programs (c/*.bpf.c) with clang into OUT_DIR, where
//! src/lib.rs embeds them, and generates the Rust side of their kernel
//! interface (OUT_DIR/abi.rs, included by src/layout.rs) from the BTF of
//! c/abi.c.
//!
//! `HOOKD_BPF_CFLAGS` adds clang flags to the programs (not to abi.c), e.g.
//! `-mcpu=v3`: the package test builds its "next version" that way, a build
//! whose programs differ to the kernel while the source is the same.

#[path = "build/abi.rs"]
mod abi;

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["hookd", "empty", "redirect"];

fn find_clang() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("HOOKD_CLANG") {
        return Some(PathBuf::from(c));
    }
    ["clang-19", "clang"].iter().find_map(|name| {
        Command::new(name)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from(name))
    })
}

fn main() {
    let src = Path::new("c");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-env-changed=HOOKD_CLANG");
    println!("cargo:rerun-if-env-changed=HOOKD_BPF_CFLAGS");
    let extra = std::env::var("HOOKD_BPF_CFLAGS").unwrap_or_default();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(clang) = find_clang() else {
        panic!(
            "\n\nhookd-bpf: clang was not found. The eBPF programs are C compiled with clang.\n\
             Install it with: apt-get install clang-19 libbpf-dev\n\
             (or set HOOKD_CLANG to a clang binary that supports -target bpf)\n\n"
        );
    };
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    // The tracing build of hookd's programs (c/lib/trace.h): it writes no
    // shared map, for hookctl trace --live.
    let tracing = format!("-DHOOKD_TRACE {extra}");
    let objects = PROGRAMS
        .iter()
        .map(|p| (format!("{p}.bpf.c"), format!("{p}.bpf.o"), extra.as_str()))
        .chain([
            (
                "hookd.bpf.c".into(),
                "hookd-trace.bpf.o".into(),
                tracing.as_str(),
            ),
            ("abi.c".to_string(), "abi.o".to_string(), ""),
        ]);
    for (input, output, flags) in objects {
        let (input, output) = (src.join(input), out.join(output));
        let status = Command::new(&clang)
            .args([
                "-g", "-O2", "-target", "bpf", "-Wall", "-Werror", &multiarch, "-c",
            ])
            .args(flags.split_whitespace())
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .status()
            .unwrap_or_else(|e| panic!("hookd-bpf: running {}: {e}", clang.display()));
        if !status.success() {
            panic!(
                "\n\nhookd-bpf: clang failed on {}. If headers such as <bpf/bpf_helpers.h> are \
                 missing, install libbpf-dev.\n\n",
                input.display()
            );
        }
    }
    let header = std::fs::read_to_string(src.join("lib/types.h")).expect("reading c/lib/types.h");
    let abi_obj = std::fs::read(out.join("abi.o")).expect("reading abi.o");
    std::fs::write(out.join("abi.rs"), abi::generate(&abi_obj, &header)).expect("writing abi.rs");
}
