//! The load pipeline, as named steps: plan (validate, cut into chunks) → choose the backend →
//! admit (reserve the buffer and the working memory under every limit) → fill (allocate ⇉
//! read ⇉ copy, per backend) → finish (the files did not shrink) → hand out. A buffer fd
//! leaves only after its last byte is in; on any failure or cancel everything allocated is
//! dropped (freed) before returning.
//!
//! Both fills are [`job::Steps`]: [`job::Job`] runs them on the load's own thread and the
//! engine's workers ([`pool`]), the same for every backend.

mod backends;
mod blocks;
mod devices;
mod digests;
mod heap_fill;
mod job;
mod measured;
mod memfd_fill;
mod plan;
mod pool;
mod read;
mod tally;
#[cfg(feature = "io-uring")]
mod uring_read;
mod working;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::engine::{BackendInfo, Engine, LoadedBuffer};
use crate::error::{load_err, ErrorCode, LoadError};
use crate::limits::{Charge, LoadSlot, Reservation};
use crate::request::{Caller, IoEngine, LoadRequest, Progress};
use crate::stats::{Backend, Fallback, FallbackKind, LoadStats};
use dmaload_abi::dma_buf;
use dmaload_abi::file::drop_cached;
use dmaload_abi::statx::file_facts;

pub(crate) use backends::{allowed, discover_backends, Detail};
pub(crate) use blocks::BlockPool;
pub(crate) use devices::Devices;
pub(crate) use measured::Measurements;
pub(crate) use pool::WorkerPool;

use digests::Digesting;
use plan::Plan;
use working::Working;

/// What a backend's fill reports.
#[derive(Debug, Default)]
pub(crate) struct Filled {
    pub(crate) alloc: Duration,
    pub(crate) first_gather: Duration,
    pub(crate) io: Duration,
    pub(crate) copy: Duration,
    pub(crate) bytes_direct: u64,
    pub(crate) bytes_buffered: u64,
    pub(crate) bytes_bounced: u64,
    pub(crate) fallbacks: Vec<Fallback>,
    /// See [`LoadStats::memory`].
    pub(crate) memory: &'static str,
}

/// What a backend's fill works with.
pub(crate) struct Fill<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) plan: &'a Arc<Plan>,
    /// The working memory admitted.
    pub(crate) working: &'a Working,
    /// The digests the steps compute.
    pub(crate) digesting: &'a Arc<Digesting>,
    /// The buffer's debug name.
    pub(crate) name: &'a str,
    pub(crate) cancel: &'a CancelToken,
    pub(crate) progress: &'a dyn Progress,
    /// When the load started.
    pub(crate) started: Instant,
}

pub(crate) fn load(
    engine: &Engine,
    backends: &[BackendInfo],
    caller: Caller,
    req: LoadRequest,
    cancel: &CancelToken,
    progress: &dyn Progress,
) -> Result<LoadedBuffer, LoadError> {
    let config = &engine.config;
    let started = Instant::now();
    let mut stats = LoadStats::default();
    let name = if req.name.is_empty() {
        "dmaload".to_string()
    } else {
        req.name.clone()
    };
    let kind = req.backend.clone();
    let limits = plan::RequestLimits {
        max_segments: config.max_segments,
        max_files: config.max_files,
    };
    let mut plan = plan::plan(req, &config.default_tunables, limits, &mut stats)?;
    let backend = backends::choose_backend(
        &kind,
        backends,
        plan.buffer_size,
        &engine.measured,
        &mut stats,
    )?;
    plan.tunables.io_uring = config.io_engine == IoEngine::IoUring;
    // A hugetlb memfd is 2 MiB-rounded: fine behind a udmabuf of the exact size, not as a
    // plain memfd handed out.
    plan.tunables.hugetlb = config.hugetlb && backend == Backend::Udmabuf;
    let plan = Arc::new(plan);
    let (slot, charge, working) = admit(engine, caller, &plan, &backend, &mut stats)?;
    if cancel.is_cancelled() {
        return Err(load_err!(
            Cancelled,
            "the load was cancelled before it started"
        ));
    }
    let digesting = Digesting::new(&plan.digests);
    let fill = Fill {
        engine,
        plan: &plan,
        working: &working,
        digesting: &digesting,
        name: &name,
        cancel,
        progress,
        started,
    };
    let (fd, filled) = fill_buffer(&fill, &backend)?;
    finish(&plan)?;
    // Checked before the buffer leaves: on a mismatch `fd` and `charge` drop here, and with
    // them the buffer and its charge.
    let (digests, digest_time) = digesting.finish(&plan.digests)?;
    stats.working_bytes = slot.working();
    drop(slot);
    record(&mut stats, filled);
    stats.digest = digest_time;
    stats.total = started.elapsed();
    engine
        .measured
        .record(&backend, plan.buffer_size, stats.total);
    Ok(LoadedBuffer {
        fd,
        size: plan.buffer_size,
        backend,
        stats,
        charge,
        digests,
    })
}

/// Step "admit": reserves the buffer and the most working memory the limits leave, down to a
/// single reader's. Kept bounce blocks make room when the global cap or the memory is short.
fn admit(
    engine: &Engine,
    caller: Caller,
    plan: &Plan,
    backend: &Backend,
    stats: &mut LoadStats,
) -> Result<(LoadSlot, Charge, Working), LoadError> {
    let choices = working::choices(plan, backend, engine.pool.size());
    let bytes: Vec<u64> = choices.iter().map(Working::bytes).collect();
    let ask = Reservation {
        buffer: plan.buffer_size,
        working: &bytes,
    };
    let reserve = || {
        let available = engine.mem_available();
        engine
            .accounting
            .admit(&engine.config, caller, ask, available)
    };
    let (slot, charge, index) = match reserve() {
        Err(e)
            if matches!(e.code, ErrorCode::GlobalCap | ErrorCode::NoMemory)
                && engine.blocks.trim() > 0 =>
        {
            reserve()
        }
        other => other,
    }?;
    let working = choices[index];
    if index > 0 {
        stats.add_fallback(
            FallbackKind::WorkingMemory,
            format!(
                "{} bytes of bounce blocks for {} readers did not fit the limits: used {} bytes \
                 for {}",
                bytes[0], choices[0].readers, bytes[index], working.readers
            ),
        );
    }
    Ok((slot, charge, working))
}

/// Step "fill": allocates the buffer and reads the plan into it.
fn fill_buffer(fill: &Fill<'_>, backend: &Backend) -> Result<(OwnedFd, Filled), LoadError> {
    match backend {
        Backend::Heap(heap) => heap_fill::fill(fill, heap),
        Backend::Udmabuf => {
            let (memfd, mut filled) = memfd_fill::fill(fill)?;
            let wrap_start = Instant::now();
            let fd = fill
                .engine
                .devices
                .wrap(memfd.as_fd(), fill.plan.buffer_size)?;
            if let Err(e) = dma_buf::set_name(fd.as_fd(), fill.name) {
                log::warn!("DMA_BUF_SET_NAME failed: {e}");
            }
            filled.alloc += wrap_start.elapsed();
            Ok((fd, filled))
        }
        Backend::Memfd => {
            let (memfd, filled) = memfd_fill::fill(fill)?;
            Ok((memfd.into_fd(), filled))
        }
    }
}

/// Step "finish": every byte is in; the files must not have shrunk meanwhile.
fn finish(plan: &Plan) -> Result<(), LoadError> {
    for src in plan.sources.iter().filter(|s| !s.direct) {
        // Readahead of one reader can bring back pages another reader already dropped:
        // drop the whole segment once more now that all reads are done (advisory).
        let _ = drop_cached(src.fd(), src.read_start, src.required_end - src.read_start);
    }
    // A file that shrank after its bytes were read still changed under the load.
    for (index, src) in plan.sources.iter().enumerate() {
        let now = file_facts(src.fd()).map(|f| f.size).unwrap_or(0);
        if now < src.required_end {
            return Err(load_err!(
                FileChanged,
                "file {index}: the file shrank to {now} bytes during the load (needed {}); \
                 reload it once it is stable",
                src.required_end
            ));
        }
    }
    Ok(())
}

fn record(stats: &mut LoadStats, filled: Filled) {
    for f in filled.fallbacks {
        stats.add_fallback(f.kind, f.reason);
    }
    stats.alloc = filled.alloc;
    stats.first_gather = filled.first_gather;
    stats.io = filled.io;
    stats.copy = filled.copy;
    stats.bytes_direct = filled.bytes_direct;
    stats.bytes_buffered = filled.bytes_buffered;
    stats.bytes_bounced = filled.bytes_bounced;
    stats.memory = filled.memory;
}
