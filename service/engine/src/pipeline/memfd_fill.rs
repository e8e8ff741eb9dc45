//! udmabuf and memfd backends: a sealed memfd is populated gather by gather (huge folios
//! where the kernel allows) by populating threads, while reader threads read each populated
//! gather straight into it with direct I/O. udmabuf wraps the memfd at the end.

use std::time::Instant;

use super::control::{run_thread, Control};
use super::plan::{Chunk, Plan};
use super::read::read_chunk;
use super::Filled;
use crate::error::{load_err, LoadError};
use crate::request::{CancelToken, Progress};
use crate::stats::FallbackKind;
use dmaload_abi::memfd::{hugetlb_pages_free, shmem_thp, Memfd, ShmemThp, HUGETLB_PAGE};
use dmaload_abi::mmap::Mapping;
use dmaload_abi::system::page_size;

/// Population granule: a PMD-sized huge folio.
const HUGE: u64 = 2 << 20;

struct FillState {
    /// Next population piece to hand out.
    next_piece: usize,
    /// Pieces not yet populated, per gather.
    pieces_left: Vec<u32>,
    /// Gathers `0..gathers_ready` are populated.
    gathers_ready: usize,
    populated_at: Option<Instant>,
    next_chunk: usize,
    /// Chunks not yet read, per gather (a chunk counts in every gather it touches).
    chunks_left: Vec<u32>,
    /// Gathers `0..gathers_read` are populated and read; their pages left our mapping.
    gathers_read: usize,
    first_gather_at: Option<Instant>,
}

/// Gathers populated ahead of the readers at most. The memfd mapping only holds these
/// (finished gathers are dropped from it), so the process's peak RSS stays bounded by
/// `IN_FLIGHT_GATHERS × gather_size` whatever the file size.
const IN_FLIGHT_GATHERS: usize = 2;

/// Buffers up to this size are filled by the calling thread alone.
const INLINE_MAX: u64 = HUGE;

impl FillState {
    /// Advances `gathers_read` over finished gathers; returns the newly finished range.
    fn finish_gathers(&mut self) -> std::ops::Range<usize> {
        let from = self.gathers_read;
        while self.gathers_read < self.gathers_ready && self.chunks_left[self.gathers_read] == 0 {
            self.gathers_read += 1;
        }
        if from == 0 && self.gathers_read > 0 && self.first_gather_at.is_none() {
            self.first_gather_at = Some(Instant::now());
        }
        from..self.gathers_read
    }
}

/// The buffer cut into gathers. The first gathers are small and double in size up to the
/// gather size (2, 4, 8, ... MiB), so reads start after a few milliseconds of population
/// instead of after a whole gather: `T(first gather)` shrinks for every file size.
pub(crate) struct Gathers {
    starts: Vec<u64>,
    size: u64,
}

impl Gathers {
    pub(crate) fn new(size: u64, gather: u64) -> Gathers {
        let mut starts = Vec::new();
        let mut at = 0;
        let mut next = HUGE.min(gather);
        while at < size {
            starts.push(at);
            at += next;
            next = (next * 2).min(gather);
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

/// A sealed hugetlb memfd and its mapping when the plan allows hugetlb and the pool has
/// room for the whole buffer; `None` (with a note when a pool exists but falls short) to use
/// shmem memory instead. The mapping reserves the pool pages, so a pool emptied by someone
/// else after the check fails here, not in the middle of the load.
fn hugetlb_memory(
    plan: &Plan,
    name: &str,
    notes: &mut Vec<(FallbackKind, String)>,
) -> Option<(Memfd, Mapping)> {
    let size = plan.buffer_size;
    if !plan.knobs.hugetlb || size <= INLINE_MAX {
        return None;
    }
    let free = hugetlb_pages_free();
    let needed = size.div_ceil(HUGETLB_PAGE);
    if free < needed {
        if free > 0 {
            notes.push((
                FallbackKind::SmallPages,
                format!(
                    "the hugetlb pool has {free} free 2 MiB pages, the buffer needs {needed}: \
                     used shmem memory"
                ),
            ));
        }
        return None;
    }
    let attempt = || -> std::io::Result<(Memfd, Mapping)> {
        let memfd = Memfd::create_hugetlb(name, size)?;
        memfd.seal_size()?;
        let mapping = Mapping::map_shared(std::os::fd::AsFd::as_fd(&memfd), memfd.size() as usize)?;
        Ok((memfd, mapping))
    };
    match attempt() {
        Ok(memory) => Some(memory),
        Err(e) => {
            notes.push((
                FallbackKind::SmallPages,
                format!("hugetlb memory for {size} bytes failed ({e}): used shmem memory"),
            ));
            None
        }
    }
}

/// Fills a new memfd with the plan's bytes. Returns the sealed memfd.
pub(crate) fn fill(
    plan: &Plan,
    name: &str,
    cancel: &CancelToken,
    progress: &dyn Progress,
    started: Instant,
) -> Result<(Memfd, Filled), LoadError> {
    let size = plan.buffer_size;
    let alloc_start = Instant::now();
    let mut notes = Vec::new();
    let (memfd, mapping, hugetlb) = match hugetlb_memory(plan, name, &mut notes) {
        Some((memfd, mapping)) => (memfd, mapping, true),
        None => {
            let memfd = Memfd::create(name, size)
                .map_err(|e| load_err!(NoMemory, "memfd_create of {size} bytes failed: {e}"))?;
            memfd
                .seal_size()
                .map_err(|e| load_err!(Internal, "sealing the memfd failed: {e}"))?;
            let mapping = Mapping::map_shared(std::os::fd::AsFd::as_fd(&memfd), size as usize)
                .map_err(|e| load_err!(NoMemory, "mapping the memfd failed: {e}"))?;
            (memfd, mapping, false)
        }
    };
    // A hugetlb memfd is 2 MiB-rounded and populated whole.
    let alloc_size = memfd.size();

    let knobs = plan.knobs;
    // hugetlb memory is populated and dropped in whole 2 MiB pages: gathers must be too.
    let gather_size = if hugetlb {
        knobs.gather_size.div_ceil(HUGE) * HUGE
    } else {
        knobs.gather_size
    };
    let layout = Gathers::new(alloc_size, gather_size);
    let pieces = pieces(&layout, knobs.populate_threads);
    let gathers = layout.len();
    let mut pieces_left = vec![0u32; gathers];
    for p in &pieces {
        pieces_left[p.gather] += 1;
    }
    let mut chunks_left = vec![0u32; gathers];
    // Populate far enough ahead for any chunk (a chunk may span several gathers).
    let mut ahead = IN_FLIGHT_GATHERS;
    // Chunks end at gather boundaries too, so each gather is read as soon as it is ready.
    let chunks = split_at_gathers(&plan.chunks, &layout);
    for c in &chunks {
        let first = layout.of(c.buffer_offset);
        let last = layout.of(c.buffer_offset + c.len - 1);
        ahead = ahead.max(last - first + 2);
        for left in &mut chunks_left[first..=last] {
            *left += 1;
        }
    }
    let state = FillState {
        next_piece: 0,
        pieces_left,
        gathers_ready: 0,
        populated_at: None,
        next_chunk: 0,
        chunks_left,
        gathers_read: 0,
        first_gather_at: None,
    };
    let control = Control::for_plan(plan, cancel, progress, state);
    for (kind, why) in notes {
        control.add_fallback(kind, why);
    }
    // What backs the buffer, as the stats report it.
    let memory = if hugetlb {
        "hugetlb"
    } else if size <= INLINE_MAX {
        // A huge folio would be zeroed whole (2 MiB, twice with init_on_alloc) for a buffer
        // that needs less: measured 2-3x slower for 512 KiB in the virtual device.
        "shmem"
    } else {
        match shmem_thp() {
            ShmemThp::Available(_) => match mapping.advise_huge() {
                Ok(()) => "shmem-thp",
                Err(e) => {
                    control.add_fallback(
                        FallbackKind::SmallPages,
                        format!("MADV_HUGEPAGE failed: {e}"),
                    );
                    "shmem"
                }
            },
            ShmemThp::Unavailable(why) => {
                control.add_fallback(FallbackKind::SmallPages, why);
                "shmem"
            }
        }
    };
    log::debug!("memfd fill: {size} bytes of {memory} memory");

    let max_align = plan.sources.iter().map(|s| s.align()).max().unwrap_or(1);
    let bounce_len = (1u64 << 20).max(2 * max_align) as usize;
    let readers = knobs.reader_threads.min(chunks.len()).max(1);
    if size <= INLINE_MAX {
        // Small buffers: threads and pre-population cost more than they overlap; the reads
        // fault the few pages in themselves.
        let alloc = alloc_start.elapsed();
        let mut bounce = super::blocks::take(bounce_len)
            .map_err(|e| load_err!(NoMemory, "bounce block: {e}"))?;
        for chunk in &chunks {
            if control.checkpoint().is_err() {
                return Err(control
                    .take_error()
                    .unwrap_or_else(|| load_err!(Internal, "stopped")));
            }
            read_chunk(
                &control,
                &plan.sources[chunk.source],
                chunk,
                &mapping,
                true,
                &mut bounce,
            )?;
            control.advance(chunk.len);
        }
        let mut filled = control.filled(alloc, started.elapsed());
        filled.memory = memory;
        drop(mapping);
        return Ok((memfd, filled));
    }
    // Drops finished gathers from our mapping: the memfd keeps the pages.
    let release = |range: std::ops::Range<usize>| -> Result<(), LoadError> {
        if range.is_empty() {
            return Ok(());
        }
        let start = layout.start(range.start);
        let end = layout.start(range.end);
        mapping
            .drop_pages(start as usize, (end - start) as usize)
            .map_err(|e| load_err!(Internal, "MADV_DONTNEED on finished gathers failed: {e}"))
    };
    std::thread::scope(|scope| {
        for _ in 0..knobs.populate_threads {
            scope.spawn(|| {
                run_thread(&control, || loop {
                    let piece = control.wait_for(|s| {
                        let Some(&piece) = pieces.get(s.next_piece) else {
                            return Some(None);
                        };
                        // Stay a few gathers ahead of the readers, no more.
                        if piece.gather >= s.gathers_read + ahead {
                            return None;
                        }
                        s.next_piece += 1;
                        Some(Some(piece))
                    })?;
                    let Some(piece) = piece else { return Ok(()) };
                    populate(&mapping, piece)?;
                    let mut s = control.lock();
                    s.pieces_left[piece.gather] -= 1;
                    while s.gathers_ready < gathers && s.pieces_left[s.gathers_ready] == 0 {
                        s.gathers_ready += 1;
                    }
                    if s.gathers_ready == gathers && s.populated_at.is_none() {
                        s.populated_at = Some(Instant::now());
                    }
                    // Gathers without chunks (gaps between segments) finish on population.
                    let finished = s.finish_gathers();
                    drop(s);
                    control.notify();
                    release(finished)?;
                })
            });
        }
        for _ in 0..readers {
            scope.spawn(|| {
                run_thread(&control, || {
                    let mut bounce = super::blocks::take(bounce_len)
                        .map_err(|e| load_err!(NoMemory, "bounce block: {e}"))?;
                    loop {
                        control.checkpoint()?;
                        let index = {
                            let mut s = control.lock();
                            let index = s.next_chunk;
                            s.next_chunk += 1;
                            index
                        };
                        let Some(chunk) = chunks.get(index) else {
                            return Ok(());
                        };
                        let first = layout.of(chunk.buffer_offset);
                        let last = layout.of(chunk.buffer_offset + chunk.len - 1);
                        control.wait_for(|s| (s.gathers_ready > last).then_some(()))?;
                        let src = &plan.sources[chunk.source];
                        read_chunk(&control, src, chunk, &mapping, true, &mut bounce)?;
                        control.advance(chunk.len);
                        let mut s = control.lock();
                        for left in &mut s.chunks_left[first..=last] {
                            *left -= 1;
                        }
                        let finished = s.finish_gathers();
                        drop(s);
                        control.notify();
                        release(finished)?;
                    }
                })
            });
        }
    });
    if let Some(err) = control.take_error() {
        return Err(err);
    }
    let s = control.lock();
    if s.gathers_read != gathers {
        return Err(load_err!(Internal, "memfd fill ended early"));
    }
    let populated = s.populated_at.unwrap_or_else(Instant::now);
    let first_gather = s
        .first_gather_at
        .map(|t| t.duration_since(started))
        .unwrap_or_default();
    drop(s);
    let mut filled = control.filled(populated.duration_since(alloc_start), first_gather);
    filled.memory = memory;
    drop(mapping);
    Ok((memfd, filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_grow_to_the_gather_size_and_pieces_cover_them() {
        let size = (300 << 20) + 4096;
        let layout = Gathers::new(size, 128 << 20);
        let starts: Vec<u64> = (0..layout.len()).map(|g| layout.start(g) >> 20).collect();
        assert_eq!(starts, [0, 2, 6, 14, 30, 62, 126, 254]);
        assert_eq!(layout.of(0), 0);
        assert_eq!(layout.of((2 << 20) - 1), 0);
        assert_eq!(layout.of(2 << 20), 1);
        assert_eq!(layout.of(size - 1), 7);
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
    }
}
