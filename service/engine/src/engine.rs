//! The engine: limits, accounting, backend discovery, and the entry point of every load.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::cancel::CancelToken;
use crate::error::{load_err, LoadError};
use crate::limits::{Accounting, Charge, EngineConfig, Usage};
use crate::pipeline::{BlockPool, Devices, Measurements, WorkerPool};
use crate::request::{Caller, LoadRequest, Progress};
use crate::stats::{Backend, LoadStats};
use dmaload_abi::digest::Digest;
use dmaload_abi::meminfo::MemInfoFile;
use dmaload_abi::system::cpu_count;

/// A backend this device offers, with its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    pub backend: Backend,
    /// False when the service configuration disables it.
    pub allowed: bool,
    /// Largest buffer it can make (udmabuf's size limit, the engine's maximum otherwise).
    pub max_buffer_bytes: u64,
    /// True when the buffer fd is a dma-buf.
    pub dma_buf: bool,
    /// Human-readable details (device path, size limit source).
    pub detail: String,
}

/// A filled buffer, handed out only after the last byte is in.
#[derive(Debug)]
pub struct LoadedBuffer {
    /// The buffer fd (`O_CLOEXEC`): a dma-buf unless `backend` is `Memfd`.
    pub fd: OwnedFd,
    /// Buffer size in bytes (page-rounded).
    pub size: u64,
    pub backend: Backend,
    pub stats: LoadStats,
    /// The caller's charge for this buffer; released when dropped.
    pub charge: Charge,
    /// The digests the request asked for, by segment and algorithm (expected ones included:
    /// they matched).
    pub digests: Vec<Digest>,
}

/// One per process; `Sync`, so binder threads share it.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) accounting: Arc<Accounting>,
    /// What `auto` learned about the backends' speed on this device.
    pub(crate) measured: Measurements,
    /// Threads that run loads' steps beside each load's own thread.
    pub(crate) pool: WorkerPool,
    /// Bounce blocks kept between loads.
    pub(crate) blocks: Arc<BlockPool>,
    /// The allocator devices, kept open.
    pub(crate) devices: Arc<Devices>,
    /// Backends as discovered for loads at most [`DISCOVERY_TTL`] ago: discovery reads a
    /// directory and sysfs files, a fixed cost every small load would pay again.
    discovered: std::sync::Mutex<Option<(std::time::Instant, Vec<BackendInfo>)>>,
    /// /proc/meminfo, kept open: admission reads MemAvailable for every load.
    meminfo: Option<MemInfoFile>,
}

/// The pool's size: the configured count, else the default readers plus populating threads.
fn worker_threads(config: &EngineConfig) -> usize {
    if config.worker_threads > 0 {
        return config.worker_threads as usize;
    }
    let cpus = cpu_count() as usize;
    (2 * cpus).clamp(2, 8) + cpus.clamp(1, 4)
}

/// How long a backend discovery is reused by loads (listings always look afresh).
const DISCOVERY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine, LoadError> {
        if config.max_concurrent_loads == 0 || config.max_concurrent_loads_per_caller == 0 {
            return Err(load_err!(
                InvalidArgument,
                "concurrent load limits must be at least 1"
            ));
        }
        if config.max_segments == 0 || config.max_files == 0 {
            return Err(load_err!(
                InvalidArgument,
                "max_segments and max_files must be at least 1"
            ));
        }
        let accounting = Accounting::new();
        Ok(Engine {
            pool: WorkerPool::new(worker_threads(&config)),
            blocks: BlockPool::new(Arc::clone(&accounting), config.global_cap_bytes),
            devices: Arc::new(Devices::open(&config)),
            config,
            accounting,
            measured: Default::default(),
            discovered: Default::default(),
            meminfo: MemInfoFile::open(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Heaps, udmabuf and memfd as present on this device, with their limits.
    pub fn backends(&self) -> Vec<BackendInfo> {
        let mut backends =
            crate::pipeline::discover_backends(&self.config, crate::pipeline::Detail::Described);
        for b in &mut backends {
            let measured = self.measured.describe(&b.backend);
            if !measured.is_empty() {
                b.detail = format!("{}; measured {measured}", b.detail);
            }
        }
        backends
    }

    /// What `auto` measured for `backend` with buffers the size of `size` (its size class):
    /// bytes per second (a moving average) and the number of loads measured.
    pub fn measured_rate(&self, backend: &Backend, size: u64) -> Option<(f64, u32)> {
        self.measured.rate(backend, size)
    }

    /// MemAvailable now, in bytes.
    pub(crate) fn mem_available(&self) -> Option<u64> {
        MemInfoFile::read_kept(self.meminfo.as_ref()).map(|m| m.available)
    }

    /// What `uid` holds now.
    pub fn usage(&self, uid: u32) -> Usage {
        self.accounting.usage(uid)
    }

    /// Every uid holding something now (charged buffers, loads in flight, working memory),
    /// sorted.
    pub fn active_uids(&self) -> Vec<u32> {
        self.accounting.uids()
    }

    /// What everybody holds now.
    pub fn total_usage(&self) -> Usage {
        self.accounting.total()
    }

    /// Bounce blocks kept between loads now, in bytes (the service's own memory, counted
    /// against the global cap), and the most that may be kept.
    pub fn pooled_bytes(&self) -> (u64, u64) {
        (self.accounting.pooled(), self.blocks.max_idle())
    }

    /// Worker threads started so far, and the most there will be.
    pub fn worker_threads(&self) -> (usize, usize) {
        (self.pool.started(), self.pool.size())
    }

    /// Loads the request's segments into a new buffer charged to `caller`.
    pub fn load(
        &self,
        caller: Caller,
        req: LoadRequest,
        cancel: &CancelToken,
        progress: &dyn Progress,
    ) -> Result<LoadedBuffer, LoadError> {
        let backends = {
            let mut cached = self.discovered.lock().unwrap_or_else(|p| p.into_inner());
            match &*cached {
                Some((at, backends)) if at.elapsed() < DISCOVERY_TTL => backends.clone(),
                _ => {
                    let backends = crate::pipeline::discover_backends(
                        &self.config,
                        crate::pipeline::Detail::ForLoads,
                    );
                    *cached = Some((std::time::Instant::now(), backends.clone()));
                    backends
                }
            }
        };
        crate::pipeline::load(self, &backends, caller, req, cancel, progress)
    }
}
