//! dma-heap backend. O_DIRECT cannot target a dma-heap mapping (EFAULT), so direct chunks are
//! read into a small ring of aligned bounce blocks while the allocation is still running,
//! and copied into the mapping once it exists, between `DMA_BUF_IOCTL_SYNC` start and end.
//!
//! Steps: allocate (the dma-buf, named, mapped, CPU access begun) ⇉ read (a direct chunk into
//! a free block; a buffered chunk straight into the mapping once it exists) ⇉ copy (a filled
//! block into the mapping), run by [`Job`] on the load's thread and the engine's workers.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::blocks::{Block, BlockPool};
use super::devices::Devices;
use super::job::{Job, Steps};
use super::plan::Plan;
use super::read::{claim, read_buffered, read_into_block};
use super::tally::Tally;
use super::working::Working;
use super::{Fill, Filled};
use crate::error::{load_err, LoadError};
use dmaload_abi::dma_buf::{self, Access};
use dmaload_abi::mmap::Mapping;

/// A step of the dma-heap fill.
enum Step {
    /// Allocate, name and map the dma-buf, and begin CPU access.
    Allocate,
    /// Read chunk `index`: a direct one into `block` (its first byte lands at `start`), a
    /// buffered one (no block) straight into the mapping.
    Read {
        index: usize,
        block: Option<Block>,
        start: usize,
    },
    /// Copy chunk `index` from `block` (from `start`) into the mapping.
    Copy {
        index: usize,
        block: Block,
        start: usize,
    },
}

/// What the steps read, and what the allocation publishes.
struct HeapSteps {
    plan: Arc<Plan>,
    devices: Arc<Devices>,
    heap: String,
    name: String,
    /// Chunks starting before this offset make the first gather.
    first_gather_end: u64,
    readers: usize,
    copiers: usize,
    blocks: Arc<BlockPool>,
    block_len: usize,
    max_blocks: usize,
    started: Instant,
    mapping: OnceLock<Mapping>,
    /// The dma-buf, with CPU access begun; the load's thread takes it at the end.
    fd: Mutex<Option<OwnedFd>>,
}

/// What the steps share under the job's lock.
struct State {
    allocating: bool,
    allocated: Option<Duration>,
    next_chunk: usize,
    free: Vec<Block>,
    blocks_made: usize,
    /// Blocks read and waiting to be copied: (block, chunk index, offset of its first byte).
    filled: VecDeque<(Block, usize, usize)>,
    reading: usize,
    copying: usize,
    chunks_done: usize,
    first_gather_left: usize,
    first_gather_at: Option<Instant>,
}

/// Allocates the dma-buf, names it (best effort: naming is for debugging only), maps it and
/// begins CPU access.
fn allocate_mapped(
    devices: &Devices,
    heap: &str,
    size: u64,
    name: &str,
) -> Result<(OwnedFd, Mapping), LoadError> {
    let fd = devices.allocate(heap, size)?;
    if let Err(e) = dma_buf::set_name(fd.as_fd(), name) {
        log::warn!("DMA_BUF_SET_NAME failed: {e}");
    }
    let mapping = Mapping::map_shared(fd.as_fd(), size as usize)
        .map_err(|e| load_err!(NoMemory, "mapping the dma-buf failed: {e}"))?;
    dma_buf::begin_cpu_access(fd.as_fd(), Access::Write)
        .map_err(|e| load_err!(Internal, "DMA_BUF_IOCTL_SYNC start failed: {e}"))?;
    Ok((fd, mapping))
}

impl HeapSteps {
    /// A block to read into: one copied out already, or a new one within the reservation.
    fn free_block(&self, s: &mut State) -> Result<Option<Block>, LoadError> {
        if let Some(block) = s.free.pop() {
            return Ok(Some(block));
        }
        if s.blocks_made >= self.max_blocks {
            return Ok(None);
        }
        s.blocks_made += 1;
        self.blocks
            .take(self.block_len)
            .map(Some)
            .map_err(|e| load_err!(NoMemory, "bounce ring: {e}"))
    }

    /// The next chunk to read, if what it needs is there.
    fn next_read(&self, s: &mut State) -> Result<Option<Step>, LoadError> {
        let Some(chunk) = self.plan.chunks.get(s.next_chunk) else {
            return Ok(None);
        };
        let block = if self.plan.sources[chunk.source].direct {
            match self.free_block(s)? {
                Some(block) => Some(block),
                None => return Ok(None),
            }
        } else if s.allocated.is_some() {
            // Buffered reads can target the mapping itself (one copy, as `normal`).
            None
        } else {
            return Ok(None);
        };
        let index = s.next_chunk;
        s.next_chunk += 1;
        s.reading += 1;
        Ok(Some(Step::Read {
            index,
            block,
            start: 0,
        }))
    }

    fn mapping(&self) -> Result<&Mapping, LoadError> {
        self.mapping
            .get()
            .ok_or_else(|| load_err!(Internal, "the dma-buf is not mapped yet"))
    }

    /// A chunk is in the buffer.
    fn chunk_done(&self, index: usize, s: &mut State) -> u64 {
        let chunk = &self.plan.chunks[index];
        s.chunks_done += 1;
        if chunk.buffer_offset < self.first_gather_end {
            s.first_gather_left -= 1;
            if s.first_gather_left == 0 {
                s.first_gather_at = Some(Instant::now());
            }
        }
        chunk.len
    }
}

impl Steps for HeapSteps {
    type Step = Step;
    type State = State;

    fn next(&self, s: &mut State) -> Result<Option<Step>, LoadError> {
        if !s.allocating {
            s.allocating = true;
            return Ok(Some(Step::Allocate));
        }
        if s.allocated.is_some() && s.copying < self.copiers {
            if let Some((block, index, start)) = s.filled.pop_front() {
                s.copying += 1;
                return Ok(Some(Step::Copy {
                    index,
                    block,
                    start,
                }));
            }
        }
        if s.reading < self.readers {
            return self.next_read(s);
        }
        Ok(None)
    }

    fn run(&self, step: &mut Step, tally: &Tally) -> Result<(), LoadError> {
        match step {
            Step::Allocate => {
                let size = self.plan.buffer_size;
                let (fd, mapping) = allocate_mapped(&self.devices, &self.heap, size, &self.name)?;
                *self.fd.lock().unwrap_or_else(|p| p.into_inner()) = Some(fd);
                self.mapping
                    .set(mapping)
                    .map_err(|_| load_err!(Internal, "the dma-buf was allocated twice"))
            }
            Step::Read {
                index,
                block: Some(block),
                start,
            } => {
                let chunk = &self.plan.chunks[*index];
                *start = read_into_block(tally, &self.plan.sources[chunk.source], chunk, block)?;
                Ok(())
            }
            Step::Read {
                index, block: None, ..
            } => {
                let chunk = &self.plan.chunks[*index];
                let src = &self.plan.sources[chunk.source];
                read_buffered(tally, src, chunk, self.mapping()?)
            }
            Step::Copy {
                index,
                block,
                start,
            } => {
                let copy_start = Instant::now();
                let mut region = claim(self.mapping()?, &self.plan.chunks[*index])?;
                let len = region.len();
                region.copy_from_slice(&block.as_slice()[*start..*start + len]);
                tally.note_copy(copy_start);
                Ok(())
            }
        }
    }

    fn complete(&self, step: Step, s: &mut State) -> u64 {
        match step {
            Step::Allocate => {
                s.allocated = Some(self.started.elapsed());
                0
            }
            Step::Read {
                index,
                block: Some(block),
                start,
            } => {
                s.reading -= 1;
                s.filled.push_back((block, index, start));
                0
            }
            Step::Read {
                index, block: None, ..
            } => {
                s.reading -= 1;
                self.chunk_done(index, s)
            }
            Step::Copy { index, block, .. } => {
                s.copying -= 1;
                s.free.push(block);
                self.chunk_done(index, s)
            }
        }
    }

    fn finished(&self, s: &State) -> bool {
        s.allocated.is_some() && s.chunks_done == self.plan.chunks.len()
    }
}

/// Fills a new dma-buf from heap `heap` with the plan's bytes. Returns its fd.
pub(crate) fn fill(fill: &Fill<'_>, heap: &str) -> Result<(OwnedFd, Filled), LoadError> {
    let plan = fill.plan;
    let working: &Working = fill.working;
    let steps = HeapSteps {
        plan: Arc::clone(plan),
        devices: Arc::clone(&fill.engine.devices),
        heap: heap.to_string(),
        name: fill.name.to_string(),
        first_gather_end: plan.tunables.gather_size,
        readers: working.readers,
        copiers: working.copiers,
        blocks: Arc::clone(&fill.engine.blocks),
        block_len: working.block_len,
        max_blocks: working.blocks,
        started: Instant::now(),
        mapping: OnceLock::new(),
        fd: Mutex::new(None),
    };
    let state = State {
        allocating: false,
        allocated: None,
        next_chunk: 0,
        free: Vec::new(),
        blocks_made: 0,
        filled: VecDeque::new(),
        reading: 0,
        copying: 0,
        chunks_done: 0,
        first_gather_left: plan
            .chunks
            .iter()
            .filter(|c| c.buffer_offset < plan.tunables.gather_size)
            .count(),
        first_gather_at: None,
    };
    let tally = Tally::new(plan.tunables.io_uring);
    let job = Job::new(steps, state, tally, plan.file_bytes, working.threads);
    let ran = job.drive(
        fill.cancel,
        &fill.engine.pool,
        working.threads - 1,
        fill.progress,
    );
    let fd = job
        .steps
        .fd
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let ended = fd
        .as_ref()
        .map(|fd| dma_buf::end_cpu_access(fd.as_fd(), Access::Write));
    ran?;
    let fd = fd.ok_or_else(|| load_err!(Internal, "the allocation step left no buffer"))?;
    if let Some(Err(e)) = ended {
        return Err(load_err!(Internal, "DMA_BUF_IOCTL_SYNC end failed: {e}"));
    }
    let (alloc, first_gather) = job.with_state(|s| (s.allocated, s.first_gather_at));
    let first_gather = first_gather
        .map(|t| t.duration_since(fill.started))
        .unwrap_or_default();
    let filled = job.tally.filled(alloc.unwrap_or_default(), first_gather);
    Ok((fd, filled))
}
