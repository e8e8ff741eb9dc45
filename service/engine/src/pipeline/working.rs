//! A load's working memory: the bounce blocks it holds beside the buffer, decided from the
//! plan before anything is allocated, so that it can be reserved and charged with the buffer.
//!
//! * memfd/udmabuf: one bounce block per reader when a source is read direct (unaligned
//!   heads and tails, or whole chunks whose file and buffer offsets differ in alignment).
//! * dma-heap: a ring of blocks of one chunk each (O_DIRECT cannot target a dma-heap
//!   mapping), `max(bounce_buffers, readers + 1)` of them, no more than there are direct
//!   chunks, at most [`MAX_WORKING_BYTES`].
//!
//! The threads that read, populate and copy come from the engine's pool and keep nothing of
//! a load; their io_uring rings (a few pages each) belong to them, not to the load.
//!
//! [`choices`] lists what the load may use, the tunables' wish first, then fewer readers and
//! blocks down to a single reader with a single block: admission reserves the first choice
//! that fits the caller's cap, the global cap and available memory.

use super::plan::Plan;
use super::read::{bounce_need, BounceNeed};
use crate::stats::Backend;
use dmaload_abi::system::page_size;

/// Most working memory one load may use, whatever its tunables ask for.
pub(crate) const MAX_WORKING_BYTES: u64 = 1 << 30;

/// Buffers up to this size are filled by the load's own thread alone: starting work on other
/// threads costs more than the overlap gains.
pub(crate) const INLINE_MAX: u64 = 2 << 20;

/// A bounce block big enough to stream a misaligned chunk through in few reads.
const STREAM_BLOCK: u64 = 1 << 20;

/// How a load works and the memory it holds for that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Working {
    /// Reads at once.
    pub(crate) readers: usize,
    /// Population steps at once (memfd and udmabuf).
    pub(crate) populators: usize,
    /// Copy steps at once (dma-heap).
    pub(crate) copiers: usize,
    /// Bounce blocks held at once, and the length of each.
    pub(crate) blocks: usize,
    pub(crate) block_len: usize,
    /// Threads working on the load, its own included.
    pub(crate) threads: usize,
}

impl Working {
    pub(crate) fn bytes(&self) -> u64 {
        self.blocks as u64 * self.block_len as u64
    }

    /// Whether the buffer is filled by the load's own thread alone.
    pub(crate) fn inline(&self) -> bool {
        self.threads == 1
    }
}

fn page_round(x: u64) -> u64 {
    let page = page_size();
    x.div_ceil(page) * page
}

/// What the load may use, largest first; never empty. `pool` is the engine's worker count.
pub(crate) fn choices(plan: &Plan, backend: &Backend, pool: usize) -> Vec<Working> {
    match backend {
        Backend::Heap(_) => heap_choices(plan, pool),
        Backend::Udmabuf | Backend::Memfd => memfd_choices(plan, pool),
    }
}

/// Readers wanted: the tunable, no more than the pool has or the plan has chunks.
fn readers(plan: &Plan, pool: usize) -> usize {
    plan.tunables
        .reader_threads
        .min(pool.max(1))
        .min(plan.chunks.len())
        .max(1)
}

fn memfd_choices(plan: &Plan, pool: usize) -> Vec<Working> {
    let need = plan
        .chunks
        .iter()
        .map(|c| bounce_need(&plan.sources[c.source], c))
        .max()
        .unwrap_or(BounceNeed::None);
    let direct = plan.sources.iter().any(|s| s.direct);
    let max_align = plan.sources.iter().map(|s| s.align()).max().unwrap_or(1);
    // A direct read the kernel refuses into the buffer memory is bounced too, so every
    // direct reader holds a block; a small one unless a chunk needs to stream through it.
    let block_len = match need {
        BounceNeed::Whole => STREAM_BLOCK.max(2 * max_align),
        _ => page_round(2 * max_align),
    } as usize;
    let per_reader = usize::from(direct);
    if plan.buffer_size <= INLINE_MAX {
        return vec![Working {
            readers: 1,
            populators: 0,
            copiers: 0,
            blocks: per_reader,
            block_len,
            threads: 1,
        }];
    }
    let populators = plan.tunables.populate_threads.clamp(1, pool.max(1));
    (1..=readers(plan, pool))
        .rev()
        .map(|readers| Working {
            readers,
            populators,
            copiers: 0,
            blocks: readers * per_reader,
            block_len,
            threads: (readers + populators).min(pool + 1),
        })
        .collect()
}

fn heap_choices(plan: &Plan, pool: usize) -> Vec<Working> {
    let direct: Vec<_> = plan
        .chunks
        .iter()
        .filter(|c| plan.sources[c.source].direct)
        .collect();
    let max_align = plan.sources.iter().map(|s| s.align()).max().unwrap_or(1);
    let longest = direct.iter().map(|c| c.len).max().unwrap_or(0);
    // A block holds a chunk's aligned window: the chunk plus at most an alignment each side.
    let block_len = page_round(longest.min(plan.tunables.chunk_size) + 2 * max_align) as usize;
    // No more blocks than direct chunks: a block holds one chunk until it is copied.
    let ring_max = direct
        .len()
        .min((MAX_WORKING_BYTES / block_len as u64).max(1) as usize);
    let copiers = usize::from(!direct.is_empty());
    if plan.buffer_size <= INLINE_MAX {
        return vec![Working {
            readers: 1,
            populators: 0,
            copiers,
            blocks: ring_max.min(1),
            block_len,
            threads: 1,
        }];
    }
    let copiers = copiers * plan.tunables.populate_threads.clamp(1, pool.max(1));
    let full_readers = readers(plan, pool);
    let ring = |readers: usize, asked: usize| asked.max(readers + 1).min(ring_max);
    let mut out = vec![Working {
        readers: full_readers,
        populators: 0,
        copiers,
        blocks: ring(full_readers, plan.tunables.bounce_buffers),
        block_len,
        threads: (full_readers + copiers.max(1)).min(pool + 1),
    }];
    // Fewer readers, each with a block to fill while one is being copied; at last one
    // reader with one block, read and copied in turn.
    for readers in (1..=full_readers).rev() {
        out.push(Working {
            readers,
            blocks: ring(readers, 0),
            threads: (readers + copiers.max(1)).min(pool + 1),
            ..out[0]
        });
    }
    out.push(Working {
        readers: 1,
        blocks: ring_max.min(1),
        threads: 2.min(pool + 1),
        ..out[0]
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Chunk, Plan, ResolvedTunables, Source};
    use super::*;

    fn resolve_tunables() -> ResolvedTunables {
        ResolvedTunables {
            gather_size: 128 << 20,
            chunk_size: 8 << 20,
            reader_threads: 4,
            populate_threads: 2,
            bounce_buffers: 4,
            io_uring: false,
            hugetlb: false,
        }
    }

    /// A plan of one source and `(file_offset, len, buffer_offset)` chunks.
    fn plan(direct: bool, chunks: &[(u64, u64, u64)], tunables: ResolvedTunables) -> Plan {
        let chunks: Vec<Chunk> = chunks
            .iter()
            .map(|&(file_offset, len, buffer_offset)| Chunk {
                source: 0,
                file_offset,
                len,
                buffer_offset,
            })
            .collect();
        let end = chunks
            .iter()
            .map(|c| c.buffer_offset + c.len)
            .max()
            .unwrap_or(0);
        Plan {
            sources: vec![Source::for_tests(direct)],
            buffer_size: page_round(end),
            file_bytes: chunks.iter().map(|c| c.len).sum(),
            chunks,
            tunables,
        }
    }

    fn chunks(len: u64, chunk: u64) -> Vec<(u64, u64, u64)> {
        (0..len.div_ceil(chunk))
            .map(|i| (i * chunk, (len - i * chunk).min(chunk), i * chunk))
            .collect()
    }

    #[test]
    fn memfd_loads_hold_a_bounce_block_per_direct_reader_and_shrink_to_one() {
        let p = plan(true, &chunks(64 << 20, 8 << 20), resolve_tunables());
        let c = choices(&p, &Backend::Memfd, 6);
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].readers, c[0].blocks, c[0].threads), (4, 4, 6));
        // Aligned chunks need edges at most: blocks of two alignment units.
        assert_eq!(c[0].block_len as u64, page_round(2 * 4096));
        assert_eq!((c[3].readers, c[3].blocks), (1, 1));
        // Buffered sources need none.
        let p = plan(false, &chunks(64 << 20, 8 << 20), resolve_tunables());
        assert!(choices(&p, &Backend::Memfd, 6)
            .iter()
            .all(|w| w.bytes() == 0));
        // File and buffer offsets that differ in alignment stream through 1 MiB blocks.
        let p = plan(true, &[(512, 8 << 20, 4096)], resolve_tunables());
        assert_eq!(choices(&p, &Backend::Udmabuf, 6)[0].block_len, 1 << 20);
        // A small buffer: its own thread, one block.
        let p = plan(true, &[(0, 4096, 0)], resolve_tunables());
        let c = choices(&p, &Backend::Memfd, 6);
        assert_eq!((c.len(), c[0].threads, c[0].blocks), (1, 1, 1));
    }

    #[test]
    fn heap_rings_are_bounded_whatever_the_tunables_ask() {
        let heap = Backend::Heap("system".into());
        let p = plan(true, &chunks(256 << 20, 8 << 20), resolve_tunables());
        let c = choices(&p, &heap, 6);
        // max(bounce_buffers 4, readers 4 + 1) blocks of a chunk and two alignment units.
        assert_eq!((c[0].readers, c[0].blocks), (4, 5));
        assert_eq!(c[0].block_len, (8 << 20) + 8192);
        assert_eq!(c.last().map(|w| (w.readers, w.blocks)), Some((1, 1)));
        assert!(c.windows(2).all(|w| w[0].bytes() >= w[1].bytes()));
        // 64 readers of 256 MiB chunks asked 65 × 256 MiB: bounded to 1 GiB.
        let greedy = ResolvedTunables {
            chunk_size: 256 << 20,
            reader_threads: 64,
            bounce_buffers: 1,
            ..resolve_tunables()
        };
        let p = plan(true, &chunks(4 << 30, 256 << 20), greedy);
        let c = choices(&p, &heap, 64);
        assert!(c[0].bytes() <= MAX_WORKING_BYTES, "{:?}", c[0]);
        assert_eq!(c[0].blocks, 3);
        // No direct chunk: no ring at all.
        let p = plan(false, &chunks(64 << 20, 8 << 20), resolve_tunables());
        assert!(choices(&p, &heap, 6).iter().all(|w| w.bytes() == 0));
        // A small load's block fits its chunk, not the chunk size.
        let p = plan(true, &[(0, 10_000, 0)], resolve_tunables());
        let c = choices(&p, &heap, 6);
        assert_eq!((c.len(), c[0].blocks, c[0].block_len), (1, 1, 20480));
    }
}
