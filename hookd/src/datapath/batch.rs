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

/// The attributes of a batch command on map `fd`: `count` entries, keys
/// and values (null where the command takes none) at the pointers given.
fn batch_attr(fd: u32, keys: u64, values: u64, count: usize) -> bpf_attr {
    let mut attr = zeroed_attr();
    attr.batch.map_fd = fd;
    attr.batch.keys = keys;
    attr.batch.values = values;
    attr.batch.count = count as u32;
    attr
}

/// How many entries a batch command processed (the kernel writes it back,
/// on an error too).
fn batch_count(attr: &bpf_attr) -> usize {
    // SAFETY: every batch command's attributes are the `batch` member.
    unsafe { attr.batch.count as usize }
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
        let mut attr = batch_attr(
            fd,
            keys.as_mut_ptr() as u64,
            values.as_mut_ptr() as u64,
            chunk,
        );
        attr.batch.in_batch = if first {
            0
        } else {
            &mut token_in as *mut u64 as u64
        };
        attr.batch.out_batch = &mut token_out as *mut u64 as u64;
        let res = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
        // The kernel wrote `count` also when it ends with ENOENT.
        let got = batch_count(&attr);
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
        let mut attr = batch_attr(fd, keys.as_ptr() as u64, values.as_ptr() as u64, part.len());
        if let Err(e) = sys_bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) {
            let done = batch_count(&attr);
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
/// already gone is skipped (the kernel's batch stops at it with ENOENT;
/// the rest is sent again), so this serves callers that tidy what they
/// own. Any other refusal (a kernel without batch deletes for the map's
/// type) falls back to deleting key by key; the first error other than
/// "already gone" is returned once every key was tried.
pub(crate) fn delete_all<K: Pod>(fd: impl AsFd, keys: &[K]) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd() as u32;
    let mut rest = keys;
    while !rest.is_empty() {
        let part = &rest[..rest.len().min(CHUNK)];
        let mut attr = batch_attr(fd, part.as_ptr() as u64, 0, part.len());
        let next = match sys_bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => part.len(),
            // Key `count` is the one not found: step over it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => batch_count(&attr) + 1,
            // Not all refusals write `count` back (ENOTSUPP does not): try
            // every key left, those already removed being gone.
            Err(_) => return delete_each(fd, rest),
        };
        rest = &rest[next.min(rest.len())..];
    }
    Ok(())
}

/// `BPF_MAP_DELETE_ELEM` for each of `keys`, skipping those already gone.
fn delete_each<K: Pod>(fd: u32, keys: &[K]) -> io::Result<()> {
    let mut first_err = None;
    for key in keys {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_2.map_fd = fd;
        attr.__bindgen_anon_2.key = key as *const K as u64;
        match sys_bpf(bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                first_err.get_or_insert(e);
            }
            _ => {}
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::maps::MapData;
    use aya_obj::generated::bpf_map_type;

    fn map(kind: bpf_map_type) -> MapData {
        let def = aya_obj::Map::new_from_params(kind as u32, 4, 8, 64, 0);
        MapData::create(def, "hookd_test", None).unwrap()
    }

    /// Keys already gone are stepped over, the rest all removed; a map
    /// that refuses deletes altogether (an array) is an error, not silence.
    #[test]
    #[ignore = "privileged: run by scripts/test-privileged.sh"]
    fn delete_all_skips_keys_already_gone_and_reports_refusals() {
        let hash = map(bpf_map_type::BPF_MAP_TYPE_HASH);
        let entries: Vec<(u32, u64)> = (1..=10).map(|k| (k, u64::from(k) * 7)).collect();
        update_all(hash.fd(), &entries).unwrap();
        assert_eq!(lookup_all::<u32, u64>(hash.fd()).unwrap().len(), 10);
        let keys = [1, 2, 99, 3, 98, 4, 5, 6, 7, 8, 9, 10, 97];
        delete_all(hash.fd(), &keys).unwrap();
        assert!(lookup_all::<u32, u64>(hash.fd()).unwrap().is_empty());

        let array = map(bpf_map_type::BPF_MAP_TYPE_ARRAY);
        let err = delete_all(array.fd(), &[0u32, 1]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    }
}
