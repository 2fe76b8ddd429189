//! Whole-table reads and writes of hash maps with the kernel's batch
//! commands (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_UPDATE_BATCH`), which aya 0.14
//! does not offer: one syscall per few thousand entries where aya's
//! iterator makes two per entry. Carrying a VM's conntrack table through a
//! live migration happens while the guest is stopped, so it must be fast.

use aya::Pod;
use aya_obj::generated::{bpf_attr, bpf_cmd};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Entries per syscall. A hash map's batch is whole buckets, so this must
/// exceed the longest bucket (a handful of entries in practice; ENOSPC
/// otherwise, answered by a bigger retry).
const CHUNK: usize = 4096;

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised bpf_attr of the size passed;
    // the kernel reads and writes only inside it and the buffers it names.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integer fields; all-zero is valid
    // and is what the kernel expects of the fields a command does not use.
    unsafe { MaybeUninit::<bpf_attr>::zeroed().assume_init() }
}

/// Every entry of the hash or LRU hash map `fd` (keys `K`, values `V`).
/// Entries changed while it runs may be seen or not, as with any map walk.
pub(crate) fn lookup_all<K: Pod, V: Pod>(fd: impl AsFd) -> io::Result<Vec<(K, V)>> {
    let fd = fd.as_fd().as_raw_fd() as u32;
    let mut out = Vec::new();
    let mut chunk = CHUNK;
    // The batch token of hash maps is a bucket index (u32).
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    loop {
        let mut keys: Vec<MaybeUninit<K>> = vec![MaybeUninit::uninit(); chunk];
        let mut values: Vec<MaybeUninit<V>> = vec![MaybeUninit::uninit(); chunk];
        let mut attr = zeroed_attr();
        attr.batch.in_batch = if first {
            0
        } else {
            &mut token_in as *mut u64 as u64
        };
        attr.batch.out_batch = &mut token_out as *mut u64 as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = chunk as u32;
        attr.batch.map_fd = fd;
        let res = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
        // SAFETY: the kernel wrote `count` (also when it ends with ENOENT).
        let got = unsafe { attr.batch.count } as usize;
        let done = match res {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                chunk *= 2; // a bucket longer than the batch: retry bigger
                continue;
            }
            Err(e) => return Err(e),
        };
        for i in 0..got.min(chunk) {
            // SAFETY: the kernel filled the first `got` keys and values.
            out.push(unsafe { (keys[i].assume_init(), values[i].assume_init()) });
        }
        if done {
            return Ok(out);
        }
        token_in = token_out;
        first = false;
    }
}

/// Writes `entries` into the hash or LRU hash map `fd` (insert or
/// replace). On an error some entries are written (the error says how
/// many of its thread's part): callers write into a table they drop on
/// failure, or into a migrated NIC's, where an error fails the migration
/// (or, with `migration_state_errors = "proceed"`, keeps what was
/// written: connections the source had allowed).
pub(crate) fn update_all<K: Pod + Sync, V: Pod + Sync>(
    fd: impl AsFd,
    entries: &[(K, V)],
) -> io::Result<()> {
    // The kernel locks per bucket: threads writing parts of a big batch
    // run side by side (a migration's load happens while the guest waits).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(entries.len() / (4 * CHUNK))
        .clamp(1, 4);
    if threads == 1 {
        return update_part(fd.as_fd(), entries);
    }
    let fd = fd.as_fd();
    let per = entries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(per)
            .map(|part| s.spawn(move || update_part(fd, part)))
            .collect();
        parts.into_iter().try_for_each(|p| {
            p.join()
                .unwrap_or_else(|_| Err(io::Error::other("a writer panicked")))
        })
    })
}

fn update_part<K: Pod, V: Pod>(fd: BorrowedFd<'_>, entries: &[(K, V)]) -> io::Result<()> {
    let fd = fd.as_raw_fd() as u32;
    let mut written = 0usize;
    for part in entries.chunks(CHUNK) {
        let keys: Vec<K> = part.iter().map(|(k, _)| *k).collect();
        let values: Vec<V> = part.iter().map(|(_, v)| *v).collect();
        let mut attr = zeroed_attr();
        attr.batch.keys = keys.as_ptr() as u64;
        attr.batch.values = values.as_ptr() as u64;
        attr.batch.count = part.len() as u32;
        attr.batch.map_fd = fd;
        if let Err(e) = sys_bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) {
            // SAFETY: the kernel wrote how many it processed.
            let done = unsafe { attr.batch.count } as usize;
            return Err(io::Error::new(
                e.kind(),
                format!("{e} after {} of {} entries", written + done, entries.len()),
            ));
        }
        written += part.len();
    }
    Ok(())
}

/// Removes `keys` from the map `fd`, a batch command per chunk. A key
/// already gone is skipped (the kernel's batch stops at it; the rest is
/// sent again), so this serves callers that tidy what they own.
pub(crate) fn delete_all<K: Pod>(fd: impl AsFd, keys: &[K]) {
    let fd = fd.as_fd().as_raw_fd() as u32;
    let mut rest = keys;
    while !rest.is_empty() {
        let part = &rest[..rest.len().min(CHUNK)];
        let mut attr = zeroed_attr();
        attr.batch.keys = part.as_ptr() as u64;
        attr.batch.count = part.len() as u32;
        attr.batch.map_fd = fd;
        let res = sys_bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr);
        // SAFETY: the kernel wrote how many it deleted.
        let done = unsafe { attr.batch.count } as usize;
        // On an error, key `done` is the one refused: step over it.
        let next = if res.is_ok() { part.len() } else { done + 1 };
        rest = &rest[next.min(rest.len())..];
    }
}
