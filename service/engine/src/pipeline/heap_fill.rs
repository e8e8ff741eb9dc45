//! dma-heap backend. O_DIRECT cannot target a dma-heap mapping (EFAULT), so reader threads
//! fill a small ring of aligned bounce buffers while the allocation is still running, and
//! copier threads move them into the mapping between `DMA_BUF_IOCTL_SYNC` start and end.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::blocks::Block;
use super::control::{run_thread, Control, Failure};
use super::plan::Plan;
use super::read::{claim, read_buffered, read_into_block};
use super::Filled;
use crate::error::{load_err, LoadError};
use crate::request::{CancelToken, Progress};
use dmaload_abi::dma_buf::{self, Access};
use dmaload_abi::dma_heap::DmaHeap;
use dmaload_abi::mmap::Mapping;
use dmaload_abi::system::page_size;

struct RingState {
    free: Vec<Block>,
    /// Filled blocks: (block, chunk index, offset of the chunk's first byte in the block).
    filled: VecDeque<(Block, usize, usize)>,
    next_chunk: usize,
    /// Direct chunks not yet queued for copying.
    unqueued: usize,
    first_gather_left: usize,
    first_gather_at: Option<Instant>,
    alloc_done: Option<Duration>,
}

/// The allocated, mapped buffer, published by the allocating thread.
struct Allocated {
    fd: OwnedFd,
    mapping: Mapping,
}

/// Buffers up to this size are filled by the calling thread alone: starting threads costs
/// more than the overlap gains.
const INLINE_MAX: u64 = 2 << 20;

/// Allocates the dma-buf, names it (best effort: naming is for debugging only) and maps it.
fn allocate_mapped(heap: &DmaHeap, size: u64, name: &str) -> Result<(OwnedFd, Mapping), LoadError> {
    let fd = heap.allocate(size).map_err(|e| {
        load_err!(
            NoMemory,
            "{} refused {size} bytes ({e}); free memory and retry",
            heap.path().display()
        )
    })?;
    if let Err(e) = dma_buf::set_name(fd.as_fd(), name) {
        log::warn!("DMA_BUF_SET_NAME failed: {e}");
    }
    let mapping = Mapping::map_shared(fd.as_fd(), size as usize)
        .map_err(|e| load_err!(NoMemory, "mapping the dma-buf failed: {e}"))?;
    Ok((fd, mapping))
}

fn fill_inline(
    plan: &Plan,
    heap: &DmaHeap,
    name: &str,
    cancel: &CancelToken,
    progress: &dyn Progress,
    started: Instant,
    block_len: usize,
) -> Result<(OwnedFd, Filled), LoadError> {
    let control = Control::for_plan(plan, cancel, progress, ());
    let size = plan.buffer_size;
    let alloc_start = Instant::now();
    let (fd, mut mapping) = allocate_mapped(heap, size, name)?;
    let alloc = alloc_start.elapsed();
    let mut block =
        super::blocks::take(block_len).map_err(|e| load_err!(NoMemory, "bounce block: {e}"))?;
    dma_buf::begin_cpu_access(fd.as_fd(), Access::Write)
        .map_err(|e| load_err!(Internal, "DMA_BUF_IOCTL_SYNC start failed: {e}"))?;
    let result = (|| {
        for chunk in &plan.chunks {
            if control.checkpoint().is_err() {
                return Err(control
                    .take_error()
                    .unwrap_or_else(|| load_err!(Internal, "stopped")));
            }
            let src = &plan.sources[chunk.source];
            if src.direct {
                let start = read_into_block(&control, src, chunk, &mut block)?;
                let copy_start = Instant::now();
                let at = chunk.buffer_offset as usize;
                let len = chunk.len as usize;
                mapping.as_mut_slice()[at..at + len]
                    .copy_from_slice(&block.as_slice()[start..start + len]);
                control
                    .copy_ns
                    .fetch_add(copy_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            } else {
                read_buffered(&control, src, chunk, &mapping)?;
            }
            control.advance(chunk.len);
        }
        Ok(())
    })();
    let ended = dma_buf::end_cpu_access(fd.as_fd(), Access::Write);
    result?;
    ended.map_err(|e| load_err!(Internal, "DMA_BUF_IOCTL_SYNC end failed: {e}"))?;
    drop(mapping);
    Ok((fd, control.filled(alloc, started.elapsed())))
}

pub(crate) fn fill(
    plan: &Plan,
    heap: &DmaHeap,
    name: &str,
    cancel: &CancelToken,
    progress: &dyn Progress,
    started: Instant,
) -> Result<(OwnedFd, Filled), LoadError> {
    let knobs = plan.knobs;
    let max_align = plan.sources.iter().map(|s| s.align()).max().unwrap_or(1);
    let page = page_size();
    let block_len = (knobs.chunk_size + 2 * max_align).div_ceil(page) * page;
    if plan.buffer_size <= INLINE_MAX {
        return fill_inline(
            plan,
            heap,
            name,
            cancel,
            progress,
            started,
            block_len as usize,
        );
    }
    let direct_chunks = plan
        .chunks
        .iter()
        .filter(|c| plan.sources[c.source].direct)
        .count();
    let readers = knobs.reader_threads.min(plan.chunks.len()).max(1);
    let ring = if direct_chunks == 0 {
        0
    } else {
        knobs.bounce_buffers.max(readers + 1)
    };
    let mut free = Vec::with_capacity(ring);
    for _ in 0..ring.min(direct_chunks + 1) {
        free.push(
            super::blocks::take(block_len as usize)
                .map_err(|e| load_err!(NoMemory, "bounce ring: {e}"))?,
        );
    }
    let state = RingState {
        free,
        filled: VecDeque::new(),
        next_chunk: 0,
        unqueued: direct_chunks,
        first_gather_left: plan
            .chunks
            .iter()
            .filter(|c| c.buffer_offset < knobs.gather_size)
            .count(),
        first_gather_at: None,
        alloc_done: None,
    };
    let control = Control::for_plan(plan, cancel, progress, state);
    let allocated: OnceLock<Allocated> = OnceLock::new();
    let size = plan.buffer_size;
    let alloc_start = Instant::now();

    let chunk_done = |index: usize| {
        control.advance(plan.chunks[index].len);
        if plan.chunks[index].buffer_offset < knobs.gather_size {
            let mut s = control.lock();
            s.first_gather_left -= 1;
            if s.first_gather_left == 0 {
                s.first_gather_at = Some(Instant::now());
            }
        }
    };
    let wait_mapped = || -> Result<&Mapping, Failure> {
        control.wait_for(|s| s.alloc_done.map(|_| ()))?;
        allocated
            .get()
            .map(|a| &a.mapping)
            .ok_or_else(|| Failure::Error(load_err!(Internal, "allocation not published")))
    };

    std::thread::scope(|scope| {
        scope.spawn(|| {
            run_thread(&control, || {
                let (fd, mapping) = allocate_mapped(heap, size, name)?;
                dma_buf::begin_cpu_access(fd.as_fd(), Access::Write)
                    .map_err(|e| load_err!(Internal, "DMA_BUF_IOCTL_SYNC start failed: {e}"))?;
                if allocated.set(Allocated { fd, mapping }).is_err() {
                    return Err(load_err!(Internal, "allocated twice").into());
                }
                control.lock().alloc_done = Some(alloc_start.elapsed());
                control.notify();
                Ok(())
            })
        });
        for _ in 0..readers {
            scope.spawn(|| {
                run_thread(&control, || loop {
                    control.checkpoint()?;
                    let index = {
                        let mut s = control.lock();
                        let index = s.next_chunk;
                        s.next_chunk += 1;
                        index
                    };
                    let Some(chunk) = plan.chunks.get(index) else {
                        return Ok(());
                    };
                    let src = &plan.sources[chunk.source];
                    if !src.direct {
                        // Buffered reads can target the mapping itself (one copy, as `normal`).
                        let mapping = wait_mapped()?;
                        read_buffered(&control, src, chunk, mapping)?;
                        chunk_done(index);
                        continue;
                    }
                    let mut block = control.wait_for(|s| s.free.pop())?;
                    match read_into_block(&control, src, chunk, &mut block) {
                        Ok(start) => {
                            let mut s = control.lock();
                            s.filled.push_back((block, index, start));
                            s.unqueued -= 1;
                            drop(s);
                            control.notify();
                        }
                        Err(e) => {
                            control.lock().free.push(block);
                            return Err(e.into());
                        }
                    }
                })
            });
        }
        let copiers = if direct_chunks == 0 {
            0
        } else {
            knobs.populate_threads.max(1)
        };
        for _ in 0..copiers {
            scope.spawn(|| {
                run_thread(&control, || {
                    let mapping = wait_mapped()?;
                    loop {
                        let next = control.wait_for(|s| match s.filled.pop_front() {
                            Some(item) => Some(Some(item)),
                            None if s.unqueued == 0 => Some(None),
                            None => None,
                        })?;
                        let Some((mut block, index, start)) = next else {
                            return Ok(());
                        };
                        let chunk = &plan.chunks[index];
                        let copy_start = Instant::now();
                        let mut region = claim(mapping, chunk)?;
                        let len = region.len();
                        region.copy_from_slice(&block.as_slice()[start..start + len]);
                        drop(region);
                        control
                            .copy_ns
                            .fetch_add(copy_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        control.lock().free.push(block);
                        control.notify();
                        chunk_done(index);
                    }
                })
            });
        }
    });
    let allocated = allocated.into_inner();
    if let Some(err) = control.take_error() {
        if let Some(a) = &allocated {
            let _ = dma_buf::end_cpu_access(a.fd.as_fd(), Access::Write);
        }
        return Err(err);
    }
    let Some(Allocated { fd, mapping }) = allocated else {
        return Err(load_err!(
            Internal,
            "the allocation thread ended without a buffer"
        ));
    };
    drop(mapping);
    dma_buf::end_cpu_access(fd.as_fd(), Access::Write)
        .map_err(|e| load_err!(Internal, "DMA_BUF_IOCTL_SYNC end failed: {e}"))?;
    let s = control.lock();
    let filled = control.filled(
        s.alloc_done.unwrap_or_default(),
        s.first_gather_at
            .map(|t| t.duration_since(started))
            .unwrap_or_default(),
    );
    drop(s);
    Ok((fd, filled))
}
