//! Compiles hookd's eBPF programs (c/*.bpf.c) with clang into OUT_DIR, where
//! src/lib.rs embeds them.

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
    println!("cargo:rerun-if-env-changed=HOOKD_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(clang) = find_clang() else {
        panic!(
            "\n\nhookd-bpf: clang was not found. The eBPF programs are C compiled with clang.\n\
             Install it with: apt-get install clang-19 libbpf-dev\n\
             (or set HOOKD_CLANG to a clang binary that supports -target bpf)\n\n"
        );
    };
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for prog in PROGRAMS {
        let input = src.join(format!("{prog}.bpf.c"));
        let output = out.join(format!("{prog}.bpf.o"));
        let status = Command::new(&clang)
            .args([
                "-g", "-O2", "-target", "bpf", "-Wall", "-Werror", &multiarch, "-c",
            ])
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
}
