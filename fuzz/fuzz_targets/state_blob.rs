//! The firewall state a migration's source sends (through QEMU's
//! dbus-vmstate, so from another host): decoded all or nothing, bounded,
//! and what decodes encodes again to the same state. An input whose first
//! byte is odd has its checksum put right (the rest, with a CRC32 of it
//! appended), so that the fuzzer reaches past the checksum into the
//! decompression and the layout.
#![no_main]

use hookd::core::migration::blob::VmState;
use libfuzzer_sys::fuzz_target;

const UUID: &str = "00000000-0000-4000-8000-0000000000c1";

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut sealed;
    let data = if mode & 1 == 1 {
        sealed = rest.to_vec();
        sealed.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
        &sealed[..]
    } else {
        rest
    };
    let Ok(state) = VmState::decode(data, UUID) else {
        return;
    };
    assert_eq!(state.uuid, UUID);
    let mut macs: Vec<_> = state.nics.iter().map(|n| n.mac).collect();
    macs.sort_unstable_by_key(|m| m.0);
    macs.dedup();
    assert_eq!(macs.len(), state.nics.len(), "a NIC decoded twice");
    let blob = state.encode().expect("a decoded state encodes");
    let again = VmState::decode(&blob, UUID).expect("its encoding decodes");
    assert_eq!(again, state);
    for nic in &state.nics {
        let _ = nic.to_table(7, 1 << 40);
    }
});
