//! Deterministic file content: the byte at offset `o` of a file with seed `s` is a pure
//! function of (s, o), so any range of a loaded buffer can be checked without re-reading
//! the file (a 1 GiB fixture is checked at memory speed).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn word(seed: u64, index: u64) -> u64 {
    // splitmix64 of (seed, index).
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Content repeats a 1 MiB random block, stamped with the block number in its first 8
/// bytes: no two 4 KiB pages of a file are alike, and filling or checking runs at memcpy
/// speed (a 1 GiB fixture in an emulated guest, unoptimised test build).
const BLOCK: usize = 1 << 20;

fn block_table(seed: u64) -> Arc<Vec<u8>> {
    static TABLES: Mutex<Vec<(u64, Arc<Vec<u8>>)>> = Mutex::new(Vec::new());
    let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, t)) = tables.iter().find(|(s, _)| *s == seed) {
        return Arc::clone(t);
    }
    let mut t = vec![0u8; BLOCK];
    for (i, chunk) in t.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(seed, i as u64).to_le_bytes());
    }
    let t = Arc::new(t);
    if tables.len() > 64 {
        tables.remove(0);
    }
    tables.push((seed, Arc::clone(&t)));
    t
}

/// Fills `out` with the content at file offset `offset`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let table = block_table(seed);
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let block = pos / BLOCK as u64;
        let within = (pos % BLOCK as u64) as usize;
        let n = (BLOCK - within).min(out.len() - i);
        out[i..i + n].copy_from_slice(&table[within..within + n]);
        // The stamp: block number xor-ed into the block's first 8 bytes.
        let stamp = block.to_le_bytes();
        for k in within..(within + n).min(8) {
            out[i + k - within] ^= stamp[k];
        }
        i += n;
        pos += n as u64;
    }
}

/// The content of `len` bytes at `offset`.
pub fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(seed, offset, &mut v);
    v
}

/// Index of the first byte of `actual` that differs from the content at `offset`.
pub fn first_mismatch(seed: u64, offset: u64, actual: &[u8]) -> Option<usize> {
    let mut expected = vec![0u8; BLOCK.min(actual.len())];
    let mut at = 0;
    while at < actual.len() {
        let n = BLOCK.min(actual.len() - at);
        fill(seed, offset + at as u64, &mut expected[..n]);
        if expected[..n] != actual[at..at + n] {
            let i = expected[..n]
                .iter()
                .zip(&actual[at..at + n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Some(at + i);
        }
        at += n;
    }
    None
}

/// Writes a file of `size` bytes of seed `seed` content and syncs it.
pub fn write_file(path: &Path, seed: u64, size: u64) -> io::Result<()> {
    const WRITE: u64 = 8 << 20;
    let mut f = File::create(path)?;
    let mut buf = vec![0u8; WRITE.min(size) as usize];
    let mut at = 0;
    while at < size {
        let n = WRITE.min(size - at) as usize;
        fill(seed, at, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        at += n as u64;
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole_at(seed: u64, offset: u64, len: usize) -> Vec<u8> {
        bytes(seed, 0, offset as usize + len)[offset as usize..].to_vec()
    }

    #[test]
    fn any_window_matches_the_whole() {
        let whole = bytes(7, 0, 100);
        for start in 0..20 {
            for len in [0, 1, 7, 8, 9, 33] {
                assert_eq!(
                    bytes(7, start, len),
                    whole[start as usize..start as usize + len]
                );
            }
        }
        assert_ne!(bytes(7, 0, 64), bytes(8, 0, 64));
        // Blocks differ by their stamp; a check across a block boundary sees it.
        let two = bytes(7, BLOCK as u64 - 4, 16);
        assert_eq!(&two[..4], &whole_at(7, BLOCK as u64 - 4, 4)[..]);
        assert_ne!(bytes(7, 0, 8), bytes(7, BLOCK as u64, 8));
        assert_eq!(first_mismatch(7, 3, &bytes(7, 3, 3 * BLOCK)), None);
        let mut wrong = whole.clone();
        wrong[42] ^= 1;
        assert_eq!(first_mismatch(7, 0, &wrong), Some(42));
        assert_eq!(first_mismatch(7, 0, &whole), None);
    }
}
