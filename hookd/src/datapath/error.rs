//! The data path's errors, each with the kernel's or aya's error as source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not on a bpf filesystem; mount one with: mount -t bpf bpf /sys/fs/bpf")]
    NotBpffs { path: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("loading hookd's eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("{what}: {source}")]
    Program {
        what: String,
        source: aya::programs::ProgramError,
    },
    #[error("{what}: {source}")]
    Map {
        what: String,
        source: aya::maps::MapError,
    },
    #[error("{what}: {source}")]
    Pin {
        what: String,
        source: aya::pin::PinError,
    },
    #[error("tap {tap}: {source}")]
    NoTap { tap: String, source: std::io::Error },
    #[error("eBPF object has no {0}")]
    Missing(String),
    /// What the NIC asks for is another's (an address on its network).
    #[error("{0}")]
    Conflict(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Io { what, source }
}

pub(crate) fn map_err(
    what: impl Into<String>,
) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Map { what, source }
}

pub(crate) fn prog_err(
    what: impl Into<String>,
) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Program { what, source }
}
