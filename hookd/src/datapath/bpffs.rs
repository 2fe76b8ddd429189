//! The bpf filesystem that holds hookd's pins.

use crate::datapath::error::DatapathError;
use std::path::Path;

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data; all zeroes is a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated; statfs writes into `buf`, which
    // outlives the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    rc == 0 && buf.f_type as i64 == BPF_FS_MAGIC
}

/// The default pin location lives on /sys/fs/bpf; where nobody mounted a
/// bpffs there (no systemd, a container), hookd mounts one, as cilium does.
pub(crate) fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    if is_bpffs(dir) {
        return Ok(());
    }
    if dir == Path::new("/sys/fs/bpf") {
        let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
        let (src, target, fstype) = (c("bpf"), c("/sys/fs/bpf"), c("bpf"));
        // SAFETY: all pointers are valid NUL-terminated strings or null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            tracing::info!("mounted a bpf filesystem on /sys/fs/bpf");
            return Ok(());
        }
    }
    Err(DatapathError::NotBpffs {
        path: dir.to_owned(),
    })
}
