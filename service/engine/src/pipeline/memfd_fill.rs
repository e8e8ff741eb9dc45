//! udmabuf and memfd backends: a sealed memfd is populated gather by gather (huge folios
//! where the kernel allows) while the gathers already populated are read straight into it
//! with direct I/O. udmabuf wraps the memfd at the end.
//!
//! Steps: allocate (memfd + mapping), then populate (pieces of gathers, at most
//! [`IN_FLIGHT_GATHERS`] ahead of the reads) ⇉ read (chunks of populated gathers) ⇉ release
//! (finished gathers leave the mapping), run by [`Job`] on the load's thread and the
//! engine's workers.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::blocks::{Block, BlockPool};
use super::job::{Job, Steps};
use super::plan::{Chunk, Plan};
use super::read::read_chunk;
use super::tally::Tally;
use super::working::{Working, INLINE_MAX};
use super::{Fill, Filled};
use crate::error::{load_err, ErrorCode, LoadError};
use crate::request::Progress;
use crate::stats::{Fallback, FallbackKind};
use dmaload_abi::memfd::{shmem_thp, HugetlbPages, Memfd, ShmemThp, HUGETLB_PAGE};
use dmaload_abi::mmap::Mapping;
use dmaload_abi::system::page_size;

/// Population granule: a PMD-sized huge folio.
const HUGE: u64 = 2 << 20;

/// The buffer cut into gathers. The first gathers are small and double in size up to the
/// gather size (2, 4, 8, ... MiB), so reads start after a few milliseconds of population
/// instead of after a whole gather: `T(first gather)` shrinks for every file size. The last
/// gathers shrink the same way (..., 8, 4, 2 MiB): a gather is read only once it is
/// populated whole, so what is left after the population ends is the reading of the last
/// gather, a few milliseconds instead of a whole gather's read (~0.1 s for 128 MiB in the
/// virtual device, 15 % of a 256 MiB load).
pub(crate) struct Gathers {
    starts: Vec<u64>,
    size: u64,
}

impl Gathers {
    pub(crate) fn new(size: u64, gather: u64) -> Gathers {
        // In whole huge folios, so that every gather but the last starts and ends on one.
        let units = size.div_ceil(HUGE);
        let most = (gather / HUGE).max(1);
        let (mut front, mut back) = (Vec::new(), Vec::new());
        let (mut next_front, mut next_back) = (1u64, 1u64);
        let mut left = units;
        while left > 0 {
            let f = next_front.min(left);
            front.push(f);
            left -= f;
            next_front = (next_front * 2).min(most);
            if left == 0 {
                break;
            }
            let b = next_back.min(left);
            back.push(b);
            left -= b;
            next_back = (next_back * 2).min(most);
        }
        let mut starts = Vec::with_capacity(front.len() + back.len());
        let mut at = 0;
        for units in front.into_iter().chain(back.into_iter().rev()) {
            starts.push(at * HUGE);
            at += units;
        }
        Gathers { starts, size }
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The gather holding byte `offset`.
    pub(crate) fn of(&self, offset: u64) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    pub(crate) fn start(&self, index: usize) -> u64 {
        self.starts.get(index).copied().unwrap_or(self.size)
    }
}

/// A population piece: `[offset, offset + len)` of gather `gather`.
#[derive(Clone, Copy)]
struct Piece {
    gather: usize,
    offset: u64,
    len: u64,
}

fn split_at_gathers(chunks: &[Chunk], gathers: &Gathers) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(chunks.len() + gathers.len());
    for c in chunks {
        let mut rest = *c;
        loop {
            let boundary = gathers.start(gathers.of(rest.buffer_offset) + 1);
            let end = rest.buffer_offset + rest.len;
            if boundary >= end {
                out.push(rest);
                break;
            }
            let head = boundary - rest.buffer_offset;
            out.push(Chunk { len: head, ..rest });
            rest = Chunk {
                source: rest.source,
                file_offset: rest.file_offset + head,
                len: rest.len - head,
                buffer_offset: boundary,
            };
        }
    }
    out
}

fn pieces(gathers: &Gathers, threads: usize) -> Vec<Piece> {
    // Split each gather among the populating threads so that it is ready soonest.
    let mut out = Vec::new();
    for g in 0..gathers.len() {
        let (g_start, g_end) = (gathers.start(g), gathers.start(g + 1));
        let per = ((g_end - g_start) / threads.max(1) as u64)
            .div_ceil(HUGE)
            .max(1)
            * HUGE;
        let mut at = g_start;
        while at < g_end {
            let end = (at + per).min(g_end);
            out.push(Piece {
                gather: g,
                offset: at,
                len: end - at,
            });
            at = end;
        }
    }
    out
}

fn populate(mapping: &Mapping, piece: Piece) -> Result<(), LoadError> {
    match mapping.populate_write(piece.offset as usize, piece.len as usize) {
        Ok(()) => Ok(()),
        // Kernels before 5.14 have no MADV_POPULATE_WRITE: fault the pages in instead.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => mapping
            .touch_pages(
                piece.offset as usize,
                piece.len as usize,
                page_size() as usize,
            )
            .map_err(|e| load_err!(Internal, "touching memfd pages failed: {e}")),
        Err(e) => Err(load_err!(
            NoMemory,
            "the kernel could not provide {} bytes of memory ({e}); free memory and retry",
            piece.len
        )),
    }
}

/// Where hugetlb memory for a buffer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HugetlbSource {
    /// Free pages of the pool the device reserved at boot: the mapping reserves them all
    /// at once, so nobody can take them during the load.
    Pool,
    /// Surplus pages the kernel allocates as they are faulted in (`nr_overcommit_hugepages`;
    /// pool pages first where some are free). Nothing is reserved, so the populating threads
    /// allocate them in parallel; the kernel may fail to find a free 2 MiB block later,
    /// which [`fill`] answers by filling the buffer again with shmem memory.
    Surplus,
}

impl HugetlbSource {
    fn memory(self) -> &'static str {
        match self {
            HugetlbSource::Pool => HUGETLB_POOL,
            HugetlbSource::Surplus => HUGETLB_SURPLUS,
        }
    }
}

/// See [`LoadStats::memory`](crate::stats::LoadStats::memory).
const HUGETLB_POOL: &str = "hugetlb";
const HUGETLB_SURPLUS: &str = "hugetlb-surplus";

/// Which hugetlb pages can hold `size` bytes now, if any: the pool's unreserved free pages,
/// else those plus the surplus pages the kernel may still allocate. A short supply is noted
/// when the device has hugetlb pages at all.
fn hugetlb_source(size: u64, notes: &mut Vec<(FallbackKind, String)>) -> Option<HugetlbSource> {
    let pages = HugetlbPages::read();
    let needed = size.div_ceil(HUGETLB_PAGE);
    if pages.pool_free() >= needed {
        return Some(HugetlbSource::Pool);
    }
    if pages.pool_free() + pages.surplus_room() >= needed {
        return Some(HugetlbSource::Surplus);
    }
    if pages.pool_free() > 0 || pages.overcommit > 0 {
        notes.push((
            FallbackKind::SmallPages,
            format!(
                "hugetlb pages: {} free in the pool and {} more on demand, the buffer needs \
                 {needed}: used shmem memory",
                pages.pool_free(),
                pages.surplus_room()
            ),
        ));
    }
    None
}

/// A sealed hugetlb memfd and its mapping when the plan allows hugetlb and the kernel has
/// pages for the whole buffer; `None` (with a note when hugetlb pages exist but fall short)
/// to use shmem memory instead.
fn hugetlb_memory(
    plan: &Plan,
    name: &str,
    notes: &mut Vec<(FallbackKind, String)>,
) -> Option<(Memfd, Mapping, HugetlbSource)> {
    let size = plan.buffer_size;
    if !plan.tunables.hugetlb || size <= INLINE_MAX {
        return None;
    }
    let source = hugetlb_source(size, notes)?;
    let attempt = || -> std::io::Result<(Memfd, Mapping)> {
        let memfd = Memfd::create_hugetlb(name, size)?;
        memfd.seal_size()?;
        let fd = std::os::fd::AsFd::as_fd(&memfd);
        let len = memfd.size() as usize;
        let mapping = match source {
            HugetlbSource::Pool => Mapping::map_shared(fd, len)?,
            HugetlbSource::Surplus => Mapping::map_shared_noreserve(fd, len)?,
        };
        Ok((memfd, mapping))
    };
    match attempt() {
        Ok((memfd, mapping)) => Some((memfd, mapping, source)),
        Err(e) => {
            notes.push((
                FallbackKind::SmallPages,
                format!("hugetlb memory for {size} bytes failed ({e}): used shmem memory"),
            ));
            None
        }
    }
}

/// Gathers populated ahead of the readers at most. The memfd mapping only holds these
/// (finished gathers are dropped from it), so the process's peak RSS stays bounded by
/// `IN_FLIGHT_GATHERS × gather_size` whatever the file size.
const IN_FLIGHT_GATHERS: usize = 2;

/// The memory allocated for the buffer: a sealed memfd, our mapping of it, and what backs it.
struct Allocated {
    memfd: Memfd,
    mapping: Mapping,
    /// See [`LoadStats::memory`](crate::stats::LoadStats::memory).
    memory: &'static str,
}

/// Step "allocate": a sealed memfd of the buffer's size (hugetlb pages where `hugetlb`
/// allows and the kernel has them, else shmem with huge folios where the kernel gives them),
/// mapped. Nothing is populated yet. Fallbacks go to `tally`.
fn allocate(
    plan: &Plan,
    name: &str,
    inline: bool,
    hugetlb: bool,
    tally: &Tally,
) -> Result<Allocated, LoadError> {
    let size = plan.buffer_size;
    let mut notes = Vec::new();
    let huge = if hugetlb {
        hugetlb_memory(plan, name, &mut notes)
    } else {
        None
    };
    for (kind, why) in notes {
        tally.add_fallback(kind, why);
    }
    if let Some((memfd, mapping, source)) = huge {
        return Ok(Allocated {
            memfd,
            mapping,
            memory: source.memory(),
        });
    }
    let memfd = Memfd::create(name, size)
        .map_err(|e| load_err!(NoMemory, "memfd_create of {size} bytes failed: {e}"))?;
    memfd
        .seal_size()
        .map_err(|e| load_err!(Internal, "sealing the memfd failed: {e}"))?;
    let mapping = Mapping::map_shared(std::os::fd::AsFd::as_fd(&memfd), size as usize)
        .map_err(|e| load_err!(NoMemory, "mapping the memfd failed: {e}"))?;
    let memory = if inline {
        // A huge folio would be zeroed whole (2 MiB, twice with init_on_alloc) for a buffer
        // that needs less: measured 2-3x slower for 512 KiB in the virtual device.
        "shmem"
    } else {
        match shmem_thp() {
            ShmemThp::Available(_) => match mapping.advise_huge() {
                Ok(()) => "shmem-thp",
                Err(e) => {
                    tally.add_fallback(
                        FallbackKind::SmallPages,
                        format!("MADV_HUGEPAGE failed: {e}"),
                    );
                    "shmem"
                }
            },
            ShmemThp::Unavailable(why) => {
                tally.add_fallback(FallbackKind::SmallPages, why);
                "shmem"
            }
        }
    };
    Ok(Allocated {
        memfd,
        mapping,
        memory,
    })
}

/// A step of the memfd fill.
enum Step {
    /// Populate a piece of a gather (`MADV_POPULATE_WRITE`).
    Populate(Piece),
    /// Read chunk `index` into its populated gathers; direct sources bring a bounce block.
    Read { index: usize, bounce: Option<Block> },
    /// Drop finished gathers from our mapping (the memfd keeps the pages).
    Release(Range<usize>),
}

/// What the steps read and never change.
struct MemfdSteps {
    plan: Arc<Plan>,
    mapping: Mapping,
    layout: Gathers,
    pieces: Vec<Piece>,
    /// The plan's chunks, cut at gather boundaries so a gather is read as soon as it is ready.
    chunks: Vec<Chunk>,
    /// Gathers populated ahead of the readers at most (a chunk may span several).
    ahead: usize,
    readers: usize,
    populators: usize,
    /// Finished gathers leave the mapping (loads of more than one gather).
    release: bool,
    blocks: Arc<BlockPool>,
    block_len: usize,
    max_blocks: usize,
}

/// What the steps share under the job's lock.
struct State {
    next_piece: usize,
    /// Pieces not yet populated, per gather.
    pieces_left: Vec<u32>,
    /// Gathers `0..gathers_ready` are populated.
    gathers_ready: usize,
    populated_at: Option<Instant>,
    next_chunk: usize,
    /// Chunks not yet read, per gather (a chunk counts in every gather it touches).
    chunks_left: Vec<u32>,
    /// Gathers `0..gathers_read` are populated and read.
    gathers_read: usize,
    /// Gathers `0..gathers_released` left our mapping.
    gathers_released: usize,
    first_gather_at: Option<Instant>,
    populating: usize,
    reading: usize,
    bounces: Vec<Block>,
    bounces_made: usize,
}

impl MemfdSteps {
    /// The steps of filling `mapping`, and their starting state.
    fn new(
        plan: Arc<Plan>,
        mapping: Mapping,
        hugetlb: bool,
        working: &Working,
        blocks: Arc<BlockPool>,
    ) -> (MemfdSteps, State) {
        let tunables = plan.tunables;
        // hugetlb memory is populated and dropped in whole 2 MiB pages: gathers must be too.
        let gather_size = if hugetlb {
            tunables.gather_size.div_ceil(HUGE) * HUGE
        } else {
            tunables.gather_size
        };
        let layout = Gathers::new(mapping.len() as u64, gather_size);
        let gathers = layout.len();
        let inline = working.inline();
        // Small buffers are not populated ahead: the reads fault the few pages in.
        let pieces = if inline {
            Vec::new()
        } else {
            pieces(&layout, working.populators)
        };
        let mut pieces_left = vec![0u32; gathers];
        for p in &pieces {
            pieces_left[p.gather] += 1;
        }
        let chunks = split_at_gathers(&plan.chunks, &layout);
        let mut chunks_left = vec![0u32; gathers];
        let mut ahead = IN_FLIGHT_GATHERS;
        for c in &chunks {
            let (first, last) = (
                layout.of(c.buffer_offset),
                layout.of(c.buffer_offset + c.len - 1),
            );
            ahead = ahead.max(last - first + 2);
            for left in &mut chunks_left[first..=last] {
                *left += 1;
            }
        }
        let state = State {
            next_piece: 0,
            gathers_ready: if inline { gathers } else { 0 },
            populated_at: inline.then(Instant::now),
            pieces_left,
            next_chunk: 0,
            chunks_left,
            gathers_read: 0,
            gathers_released: 0,
            first_gather_at: None,
            populating: 0,
            reading: 0,
            bounces: Vec::new(),
            bounces_made: 0,
        };
        let steps = MemfdSteps {
            plan,
            mapping,
            layout,
            pieces,
            chunks,
            ahead,
            readers: working.readers,
            populators: working.populators,
            release: !inline,
            blocks,
            block_len: working.block_len,
            max_blocks: working.blocks,
        };
        (steps, state)
    }

    /// A bounce block for a reader: one it returned, or a new one within the reservation.
    fn bounce(&self, s: &mut State) -> Result<Block, LoadError> {
        if let Some(block) = s.bounces.pop() {
            return Ok(block);
        }
        if s.bounces_made >= self.max_blocks {
            return Err(load_err!(
                Internal,
                "a reader needs a bounce block beyond the {} reserved",
                self.max_blocks
            ));
        }
        s.bounces_made += 1;
        self.blocks
            .take(self.block_len)
            .map_err(|e| load_err!(NoMemory, "bounce block: {e}"))
    }

    /// The next chunk, if its gathers are populated.
    fn next_read(&self, s: &mut State) -> Result<Option<Step>, LoadError> {
        let Some(chunk) = self.chunks.get(s.next_chunk) else {
            return Ok(None);
        };
        if s.gathers_ready <= self.layout.of(chunk.buffer_offset + chunk.len - 1) {
            return Ok(None);
        }
        let bounce = if self.plan.sources[chunk.source].direct {
            Some(self.bounce(s)?)
        } else {
            None
        };
        let index = s.next_chunk;
        s.next_chunk += 1;
        s.reading += 1;
        Ok(Some(Step::Read { index, bounce }))
    }

    /// The next population piece, if it stays within the gathers allowed ahead.
    fn next_populate(&self, s: &mut State) -> Option<Step> {
        let piece = *self.pieces.get(s.next_piece)?;
        if piece.gather >= s.gathers_read + self.ahead {
            return None;
        }
        s.next_piece += 1;
        s.populating += 1;
        Some(Step::Populate(piece))
    }

    /// Advances `gathers_read` over gathers populated and read to the end.
    fn finish_gathers(&self, s: &mut State) {
        while s.gathers_read < s.gathers_ready && s.chunks_left[s.gathers_read] == 0 {
            s.gathers_read += 1;
        }
        if s.gathers_read > 0 && s.first_gather_at.is_none() {
            s.first_gather_at = Some(Instant::now());
        }
    }
}

impl Steps for MemfdSteps {
    type Step = Step;
    type State = State;

    fn next(&self, s: &mut State) -> Result<Option<Step>, LoadError> {
        // Releasing first keeps the mapping small; reading before populating keeps the
        // storage busy.
        if self.release && s.gathers_released < s.gathers_read {
            let range = s.gathers_released..s.gathers_read;
            s.gathers_released = s.gathers_read;
            return Ok(Some(Step::Release(range)));
        }
        if s.reading < self.readers {
            if let Some(read) = self.next_read(s)? {
                return Ok(Some(read));
            }
        }
        if s.populating < self.populators {
            return Ok(self.next_populate(s));
        }
        Ok(None)
    }

    fn run(&self, step: &mut Step, tally: &Tally) -> Result<(), LoadError> {
        match step {
            Step::Populate(piece) => populate(&self.mapping, *piece),
            Step::Read { index, bounce } => {
                let chunk = &self.chunks[*index];
                let src = &self.plan.sources[chunk.source];
                read_chunk(
                    tally,
                    src,
                    chunk,
                    &self.mapping,
                    true,
                    bounce.as_deref_mut(),
                )
            }
            Step::Release(gathers) => {
                let start = self.layout.start(gathers.start);
                let end = self.layout.start(gathers.end);
                self.mapping
                    .drop_pages(start as usize, (end - start) as usize)
                    .map_err(|e| {
                        load_err!(Internal, "MADV_DONTNEED on finished gathers failed: {e}")
                    })
            }
        }
    }

    fn complete(&self, step: Step, s: &mut State) -> u64 {
        let mut bytes = 0;
        match step {
            Step::Populate(piece) => {
                s.populating -= 1;
                s.pieces_left[piece.gather] -= 1;
                while s.gathers_ready < self.layout.len() && s.pieces_left[s.gathers_ready] == 0 {
                    s.gathers_ready += 1;
                }
                if s.gathers_ready == self.layout.len() && s.populated_at.is_none() {
                    s.populated_at = Some(Instant::now());
                }
            }
            Step::Read { index, bounce } => {
                s.reading -= 1;
                s.bounces.extend(bounce);
                let chunk = &self.chunks[index];
                let first = self.layout.of(chunk.buffer_offset);
                let last = self.layout.of(chunk.buffer_offset + chunk.len - 1);
                for left in &mut s.chunks_left[first..=last] {
                    *left -= 1;
                }
                bytes = chunk.len;
            }
            Step::Release(_) => return 0,
        }
        // Gathers without chunks (gaps between segments) finish on population.
        self.finish_gathers(s);
        bytes
    }

    fn finished(&self, s: &State) -> bool {
        s.gathers_read == self.layout.len()
    }
}

/// Fills a new memfd with the plan's bytes: allocate, then populate ⇉ read ⇉ release on the
/// load's thread and the pool's. Returns the sealed memfd. When surplus hugetlb pages run out
/// in the middle (the kernel found no free 2 MiB block), the buffer is filled again from the
/// start with shmem memory, and the load says so in its fallbacks.
pub(crate) fn fill(fill: &Fill<'_>) -> Result<(Memfd, Filled), LoadError> {
    // Counts only grow, across a second fill too.
    let progress = Monotonic {
        sink: fill.progress,
        sent: AtomicU64::new(0),
    };
    let first = Fill {
        progress: &progress,
        ..*fill
    };
    match fill_once(&first, true) {
        Err(Refill { error, started }) if !fill.cancel.is_cancelled() => {
            let (memfd, mut filled) = fill_once(&first, false).map_err(|r| r.error)?;
            filled.fallbacks.insert(
                0,
                Fallback {
                    kind: FallbackKind::SmallPages,
                    reason: format!(
                        "surplus hugetlb pages ran out {} ms into the load ({}): filled again \
                         with shmem memory",
                        started.elapsed().as_millis(),
                        error.message
                    ),
                },
            );
            Ok((memfd, filled))
        }
        other => other.map_err(|r| r.error),
    }
}

/// Progress that never goes back (a second fill starts counting from zero again).
struct Monotonic<'a> {
    sink: &'a dyn Progress,
    sent: AtomicU64,
}

impl Progress for Monotonic<'_> {
    fn progress(&self, bytes_done: u64, bytes_total: u64) {
        if self.sent.fetch_max(bytes_done, Ordering::Relaxed) < bytes_done {
            self.sink.progress(bytes_done, bytes_total);
        }
    }
}

/// A failed fill; `started` is set when it may be retried with shmem memory (surplus
/// hugetlb pages that the kernel could not supply).
struct Refill {
    error: LoadError,
    started: Instant,
}

fn fill_once(fill: &Fill<'_>, hugetlb: bool) -> Result<(Memfd, Filled), Refill> {
    let alloc_start = Instant::now();
    let final_error = |error: LoadError| Refill {
        error,
        started: alloc_start,
    };
    let tally = Tally::new(fill.plan.tunables.io_uring);
    let inline = fill.working.inline();
    let Allocated {
        memfd,
        mapping,
        memory,
    } = allocate(fill.plan, fill.name, inline, hugetlb, &tally).map_err(final_error)?;
    log::debug!(
        "memfd fill: {} bytes of {memory} memory",
        fill.plan.buffer_size
    );
    let (steps, state) = MemfdSteps::new(
        Arc::clone(fill.plan),
        mapping,
        memory == HUGETLB_POOL || memory == HUGETLB_SURPLUS,
        fill.working,
        Arc::clone(&fill.engine.blocks),
    );
    let job = Job::new(
        steps,
        state,
        tally,
        fill.plan.file_bytes,
        fill.working.threads,
    );
    let ran = job.drive(
        fill.cancel,
        &fill.engine.pool,
        fill.working.threads - 1,
        fill.progress,
    );
    match ran {
        Ok(()) => {}
        Err(e) if memory == HUGETLB_SURPLUS && e.code == ErrorCode::NoMemory && hugetlb => {
            return Err(Refill {
                error: e,
                started: alloc_start,
            })
        }
        Err(e) => return Err(final_error(e)),
    }
    let (populated, first_gather) = job.with_state(|s| (s.populated_at, s.first_gather_at));
    let populated = populated.unwrap_or_else(Instant::now);
    let first_gather = first_gather
        .map(|t| t.duration_since(fill.started))
        .unwrap_or_default();
    let mut filled = job
        .tally
        .filled(populated.duration_since(alloc_start), first_gather);
    filled.memory = memory;
    Ok((memfd, filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_grow_to_the_gather_size_shrink_at_the_end_and_pieces_cover_them() {
        let size = (300 << 20) + 4096;
        let layout = Gathers::new(size, 128 << 20);
        let starts: Vec<u64> = (0..layout.len()).map(|g| layout.start(g) >> 20).collect();
        // 2, 4, 8, 16, 32, 64, 50 MiB, then 64, 32, 16, 8, 4, 2 MiB and the last 4 KiB.
        assert_eq!(
            starts,
            [0, 2, 6, 14, 30, 62, 126, 176, 240, 272, 288, 296, 300]
        );
        assert_eq!(layout.start(layout.len()), size);
        assert_eq!(layout.of(0), 0);
        assert_eq!(layout.of((2 << 20) - 1), 0);
        assert_eq!(layout.of(2 << 20), 1);
        assert_eq!(layout.of(size - 1), 12);
        let ps = pieces(&layout, 2);
        let mut at = 0;
        for p in &ps {
            assert_eq!(p.offset, at);
            assert_eq!(p.gather, layout.of(p.offset));
            assert!(p.len <= 64 << 20);
            at += p.len;
        }
        assert_eq!(at, size);
        assert_eq!(Gathers::new(4096, 1 << 20).len(), 1);
        // Large buffers: whole gathers of the gather size in the middle.
        let layout = Gathers::new(1 << 30, 128 << 20);
        let sizes: Vec<u64> = (0..layout.len())
            .map(|g| (layout.start(g + 1) - layout.start(g)) >> 20)
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), 1024);
        assert_eq!(sizes.first(), Some(&2));
        assert_eq!(sizes.last(), Some(&2));
        assert_eq!(sizes.iter().max(), Some(&128));
        assert!(sizes.iter().all(|s| s % 2 == 0), "{sizes:?}");
    }
}
