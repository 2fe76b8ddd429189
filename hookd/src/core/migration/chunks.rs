//! A blob cut into the pieces QEMU's `dbus-vmstate` carries: it takes at
//! most 1 MiB from each helper on the bus (and refuses an empty one), so
//! hookd serves `count` helpers and each carries one piece. Pure.
//!
//! A piece: magic "HKDV" | version u8 | index u8 | count u8 | 0 u8 |
//! total length of the blob u32 (LE) | its part of the blob.

use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"HKDV";
const VERSION: u8 = 1;
const HEADER: usize = 12;
/// What one helper may hand to QEMU (its `DBUS_VMSTATE_SIZE_LIMIT`).
pub const PIECE_LIMIT: usize = 1 << 20;
/// Blob bytes in one piece.
pub const PIECE_PAYLOAD: usize = PIECE_LIMIT - HEADER;
/// Most helpers hookd serves (the id-list QEMU is given names them all).
pub const MAX_PIECES: u8 = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error(
        "the firewall state is {len} bytes; {count} helpers carry at most {max} \
         (raise migration_state_mib in hookd.toml)"
    )]
    TooBig { len: usize, count: u8, max: usize },
    #[error("a piece of firewall state that is not hookd's (bad header)")]
    Header,
    #[error(
        "piece {index} of {count} arrived at helper {at} of {here}: the two hosts \
         serve different numbers of helpers (migration_state_mib differs)"
    )]
    Mismatch {
        index: u8,
        count: u8,
        at: u8,
        here: u8,
    },
    #[error("piece {index} says the state is {total} bytes, another said {other}")]
    Total { index: u8, total: u32, other: u32 },
    #[error("piece {index} has {got} bytes of the state, expected {want}")]
    Length { index: u8, got: usize, want: usize },
    #[error("piece {index} arrived twice")]
    Twice { index: u8 },
}

/// The number of helpers that carry `mib` MiB of state (a piece each).
pub fn helpers_for_mib(mib: u32) -> u8 {
    u8::try_from(mib.clamp(1, u32::from(MAX_PIECES))).unwrap_or(MAX_PIECES)
}

/// Piece `index` of `count` of `blob`.
pub fn piece(blob: &[u8], index: u8, count: u8) -> Result<Vec<u8>, ChunkError> {
    let max = usize::from(count) * PIECE_PAYLOAD;
    let total = u32::try_from(blob.len()).ok().filter(|_| blob.len() <= max);
    let total = total.ok_or(ChunkError::TooBig {
        len: blob.len(),
        count,
        max,
    })?;
    let from = (usize::from(index) * PIECE_PAYLOAD).min(blob.len());
    let to = (from + PIECE_PAYLOAD).min(blob.len());
    let mut out = Vec::with_capacity(HEADER + to - from);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, index, count, 0]);
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&blob[from..to]);
    Ok(out)
}

/// The pieces of one blob as they arrive, in any order.
#[derive(Debug, Default)]
pub struct Assembly {
    total: Option<u32>,
    parts: BTreeMap<u8, Vec<u8>>,
}

impl Assembly {
    /// Takes `data`, received by helper `at` of `here`. Returns the whole
    /// blob once every piece has come.
    pub fn add(&mut self, data: &[u8], at: u8, here: u8) -> Result<Option<Vec<u8>>, ChunkError> {
        if data.len() < HEADER || &data[..4] != MAGIC || data[4] != VERSION {
            return Err(ChunkError::Header);
        }
        let (index, count) = (data[5], data[6]);
        if index != at || count != here {
            return Err(ChunkError::Mismatch {
                index,
                count,
                at,
                here,
            });
        }
        let total = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
        if let Some(other) = self.total.filter(|t| *t != total) {
            return Err(ChunkError::Total {
                index,
                total,
                other,
            });
        }
        let total_len = total as usize;
        let from = (usize::from(index) * PIECE_PAYLOAD).min(total_len);
        let want = (from + PIECE_PAYLOAD).min(total_len) - from;
        let body = &data[HEADER..];
        if body.len() != want {
            return Err(ChunkError::Length {
                index,
                got: body.len(),
                want,
            });
        }
        if self.parts.insert(index, body.to_vec()).is_some() {
            return Err(ChunkError::Twice { index });
        }
        self.total = Some(total);
        if self.parts.len() < usize::from(count) {
            return Ok(None);
        }
        Ok(Some(
            std::mem::take(&mut self.parts)
                .into_values()
                .flatten()
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn pieces_reassemble_in_any_order() {
        for len in [
            0,
            1,
            PIECE_PAYLOAD,
            PIECE_PAYLOAD + 1,
            3 * PIECE_PAYLOAD - 5,
        ] {
            let b = blob(len);
            let count = 3;
            let pieces: Vec<Vec<u8>> = (0..count).map(|i| piece(&b, i, count).unwrap()).collect();
            assert!(
                pieces
                    .iter()
                    .all(|p| p.len() <= PIECE_LIMIT && !p.is_empty())
            );
            let mut a = Assembly::default();
            assert_eq!(a.add(&pieces[2], 2, count).unwrap(), None);
            assert_eq!(a.add(&pieces[0], 0, count).unwrap(), None);
            assert_eq!(a.add(&pieces[1], 1, count).unwrap(), Some(b), "len {len}");
        }
    }

    #[test]
    fn too_much_state_is_refused_naming_the_setting() {
        let e = piece(&blob(2 * PIECE_PAYLOAD + 1), 0, 2).unwrap_err();
        assert!(e.to_string().contains("migration_state_mib"), "{e}");
        assert_eq!(helpers_for_mib(16), 16);
        assert_eq!(helpers_for_mib(0), 1);
        assert_eq!(helpers_for_mib(100_000), MAX_PIECES);
    }

    #[test]
    fn pieces_of_another_layout_or_helper_count_are_refused() {
        let b = blob(100);
        let p = piece(&b, 0, 2).unwrap();
        let mut a = Assembly::default();
        assert!(matches!(a.add(&p, 0, 3), Err(ChunkError::Mismatch { .. })));
        assert!(matches!(a.add(&p, 1, 2), Err(ChunkError::Mismatch { .. })));
        assert_eq!(a.add(b"HKDV", 0, 2), Err(ChunkError::Header));
        let mut short = p.clone();
        short.pop();
        assert!(matches!(
            a.add(&short, 0, 2),
            Err(ChunkError::Length { .. })
        ));
        a.add(&p, 0, 2).unwrap();
        assert_eq!(a.add(&p, 0, 2), Err(ChunkError::Twice { index: 0 }));
        let other = piece(&blob(101), 1, 2).unwrap();
        assert!(matches!(a.add(&other, 1, 2), Err(ChunkError::Total { .. })));
    }
}
