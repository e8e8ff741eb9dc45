//! The digests a load computes from the bytes it reads: SHA-256 (what model hubs publish),
//! fed in file order, and the fs-verity file digest (Documentation/filesystems/fsverity.rst:
//! a SHA-256 Merkle tree over 4 KiB blocks, no salt, and the SHA-256 of the 256-byte
//! `fsverity_descriptor` naming its root), whose data-block level any thread computes for
//! any piece of the bytes. SHA-256 is `ring`'s (SHA-NI on x86-64, the SHA-2 instructions on
//! arm64).
//!
//! A piece of a segment is digested for fs-verity in *groups*: the 128 data blocks (512 KiB)
//! whose hashes fill one hash block of the tree's lowest level. A piece that starts at a
//! multiple of [`GROUP`] in its segment yields the hashes of its whole groups (the tree's
//! second-lowest level) without needing its neighbours; the levels above are small and are
//! built once every group is in ([`verity_digest`]).

use ring::digest::{Context, SHA256};

use dmaload_abi::digest::DIGEST_BYTES;
use dmaload_abi::verity::{DESCRIPTOR_BYTES, DESCRIPTOR_DATA_SIZE_AT, DESCRIPTOR_ROOT_HASH_AT};

/// A SHA-256 value.
pub type Hash = [u8; DIGEST_BYTES];

/// fs-verity data and hash block size (`log_blocksize` 12).
pub(crate) const BLOCK: usize = 4096;
/// Hashes in one hash block.
const HASHES_PER_BLOCK: usize = BLOCK / DIGEST_BYTES;
/// Data bytes whose block hashes fill one hash block: the unit pieces are digested in.
pub(crate) const GROUP: u64 = (BLOCK * HASHES_PER_BLOCK) as u64;

fn hash_of(bytes: &[u8]) -> Hash {
    let mut out = [0u8; DIGEST_BYTES];
    out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
    out
}

/// SHA-256 of `bytes`, in one call.
pub fn sha256(bytes: &[u8]) -> Hash {
    hash_of(bytes)
}

/// A running SHA-256, fed a segment's bytes in order.
#[derive(Clone)]
pub(crate) struct Sha256(Context);

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Sha256 {
    pub(crate) fn new() -> Sha256 {
        Sha256(Context::new(&SHA256))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Hash {
        let mut out = [0u8; DIGEST_BYTES];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// The hash of one (zero-padded) data or hash block.
fn block_hash(block: &[u8]) -> Hash {
    if block.len() == BLOCK {
        return hash_of(block);
    }
    let mut padded = [0u8; BLOCK];
    padded[..block.len()].copy_from_slice(block);
    hash_of(&padded)
}

/// Hash blocks the groups of `data_size` bytes make (entries of [`verity_groups`]'s output).
pub(crate) fn group_count(data_size: u64) -> usize {
    data_size.div_ceil(GROUP) as usize
}

/// fs-verity hashes of a piece of a segment of `data_size` bytes: `bytes` are the segment's
/// bytes from `offset`, a multiple of [`GROUP`], to a multiple of it or the segment's end.
/// Writes one hash per group into `out` (which has exactly that many entries): the hash of
/// the hash block of the group's data-block hashes or, for a segment of one block, the
/// block's own hash (the tree's root: such a tree has no levels).
pub(crate) fn verity_groups(data_size: u64, offset: u64, bytes: &[u8], out: &mut [Hash]) {
    debug_assert_eq!(offset % GROUP, 0);
    debug_assert_eq!(out.len(), bytes.len().div_ceil(GROUP as usize));
    if data_size <= BLOCK as u64 {
        if let Some(first) = out.first_mut() {
            *first = block_hash(bytes);
        }
        return;
    }
    for (group, hash) in bytes.chunks(GROUP as usize).zip(out.iter_mut()) {
        let mut hashes = [0u8; BLOCK];
        for (block, slot) in group
            .chunks(BLOCK)
            .zip(hashes.chunks_exact_mut(DIGEST_BYTES))
        {
            slot.copy_from_slice(&block_hash(block));
        }
        *hash = hash_of(&hashes);
    }
}

/// The fs-verity file digest of `data_size` bytes from the hashes of their groups (every
/// one, in order, as [`verity_groups`] made them).
pub(crate) fn verity_digest(data_size: u64, groups: &[Hash]) -> Hash {
    let root = if data_size == 0 {
        // An empty file has no blocks, no tree and an all-zero root hash.
        [0u8; DIGEST_BYTES]
    } else {
        // Each level up packs the hashes below into zero-padded blocks and hashes those, up
        // to a single hash: the root.
        let up = |below: &[Hash]| -> Vec<Hash> {
            below
                .chunks(HASHES_PER_BLOCK)
                .map(|hashes| {
                    let mut block = [0u8; BLOCK];
                    for (slot, hash) in block.chunks_exact_mut(DIGEST_BYTES).zip(hashes) {
                        slot.copy_from_slice(hash);
                    }
                    hash_of(&block)
                })
                .collect()
        };
        match groups {
            [] => [0u8; DIGEST_BYTES],
            [root] => *root,
            _ => {
                let mut level = up(groups);
                while level.len() > 1 {
                    level = up(&level);
                }
                level[0]
            }
        }
    };
    let mut descriptor = [0u8; DESCRIPTOR_BYTES];
    descriptor[0] = 1; // version
    descriptor[1] = 1; // FS_VERITY_HASH_ALG_SHA256
    descriptor[2] = 12; // log2(BLOCK)
    descriptor[3] = 0; // no salt
    descriptor[DESCRIPTOR_DATA_SIZE_AT..DESCRIPTOR_DATA_SIZE_AT + 8]
        .copy_from_slice(&data_size.to_le_bytes());
    descriptor[DESCRIPTOR_ROOT_HASH_AT..DESCRIPTOR_ROOT_HASH_AT + DIGEST_BYTES]
        .copy_from_slice(&root);
    hash_of(&descriptor)
}

/// The fs-verity file digest of `bytes`, in one call.
pub fn fsverity(bytes: &[u8]) -> Hash {
    let size = bytes.len() as u64;
    let mut groups = vec![[0u8; DIGEST_BYTES]; group_count(size)];
    verity_groups(size, 0, bytes, &mut groups);
    verity_digest(size, &groups)
}

/// The single-thread rates of this machine, in bytes per second, measured on `len` bytes
/// in memory: SHA-256 and the fs-verity digest (benchmarks state their costs against these).
pub fn one_core_rates(len: usize) -> (f64, f64) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9E37) as u8)
        .collect();
    let rate = |f: &dyn Fn(&[u8]) -> Hash| {
        let start = std::time::Instant::now();
        std::hint::black_box(f(std::hint::black_box(&bytes)));
        len as f64 / start.elapsed().as_secs_f64().max(1e-9)
    };
    (rate(&sha256), rate(&fsverity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaload_abi::digest::to_hex;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn known_values() {
        // sha256sum and `fsverity digest` of an empty file and of "a" (fsverity-utils 1.5).
        assert_eq!(
            to_hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            to_hex(&fsverity(b"")),
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"
        );
        assert_eq!(
            to_hex(&fsverity(b"a")),
            "bce75948b9e7510293f8f2720412af9697c1479281323f3f220623fb8e94b557"
        );
    }

    #[test]
    fn pieces_digest_like_the_whole() {
        // Around every level boundary: one block, one group, 128 groups, and a level more.
        for len in [
            1,
            4095,
            4096,
            4097,
            GROUP as usize - 1,
            GROUP as usize,
            GROUP as usize + 1,
            128 * GROUP as usize + 4097,
        ] {
            let bytes = pattern(len);
            let whole = fsverity(&bytes);
            let mut groups = vec![[0u8; DIGEST_BYTES]; group_count(len as u64)];
            // Pieces of three groups, digested back to front.
            let piece = 3 * GROUP as usize;
            let starts: Vec<usize> = (0..len).step_by(piece).collect();
            for &start in starts.iter().rev() {
                let end = (start + piece).min(len);
                let first = start / GROUP as usize;
                let out = &mut groups[first..first + (end - start).div_ceil(GROUP as usize)];
                verity_groups(len as u64, start as u64, &bytes[start..end], out);
            }
            assert_eq!(verity_digest(len as u64, &groups), whole, "{len} bytes");
            let mut sha = Sha256::new();
            for part in bytes.chunks(10_000) {
                sha.update(part);
            }
            assert_eq!(sha.finish(), sha256(&bytes));
        }
    }
}
