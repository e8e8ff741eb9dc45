//! The load pipeline: validate → choose backend → admit (caps) → allocate ⇉ gather ⇉ read
//! → hand out. A buffer fd leaves only after its last byte is in; on any failure or cancel
//! everything allocated is dropped (freed) before returning.

mod blocks;
mod control;
mod heap_fill;
mod measured;
mod memfd_fill;
mod plan;
mod read;
#[cfg(feature = "io-uring")]
mod uring_read;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::engine::{BackendInfo, Engine, LoadedBuffer};
use crate::error::{load_err, LoadError};
use crate::limits::EngineConfig;
use crate::request::{BufferKind, CancelToken, IoEngine, LoadRequest, Owner, Progress};
use crate::stats::{Backend, Fallback, FallbackKind, LoadStats};
use dmaload_abi::dma_buf;
use dmaload_abi::dma_heap::{list_heaps, DmaHeap};
use dmaload_abi::file::drop_cached;
use dmaload_abi::memfd::{hugetlb_pages_free, shmem_thp, ShmemThp};
use dmaload_abi::meminfo::MemInfo;
use dmaload_abi::statx::file_facts;
use dmaload_abi::udmabuf::{self, Udmabuf};
use dmaload_abi::Untrusted;

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

fn allowed(config: &EngineConfig, backend: &Backend) -> bool {
    config.allowed_backends.is_empty()
        || config.allowed_backends.iter().any(|b| *b == backend.name())
}

pub(crate) use measured::Measurements;

pub(crate) fn discover_backends(config: &EngineConfig) -> Vec<BackendInfo> {
    let mut out = Vec::new();
    for heap in list_heaps(&config.dma_heap_dir) {
        let backend = Backend::Heap(heap.clone());
        out.push(BackendInfo {
            allowed: allowed(config, &backend),
            backend,
            max_buffer_bytes: config.max_buffer_bytes,
            dma_buf: true,
            detail: config.dma_heap_dir.join(&heap).display().to_string(),
        });
    }
    if config.udmabuf_device.exists() {
        let limit = udmabuf::size_limit(&config.udmabuf_size_limit_file);
        let thp = match shmem_thp() {
            ShmemThp::Available(mode) => format!("huge folios ({mode})"),
            ShmemThp::Unavailable(_) => "4 KiB pages (shmem THP off)".to_string(),
        };
        let pool = hugetlb_pages_free();
        let thp = if config.hugetlb && pool > 0 {
            format!("hugetlb pool: {pool} free 2 MiB pages, else {thp}")
        } else {
            thp
        };
        out.push(BackendInfo {
            allowed: allowed(config, &Backend::Udmabuf),
            backend: Backend::Udmabuf,
            max_buffer_bytes: limit.unwrap_or(64 << 20).min(config.max_buffer_bytes),
            dma_buf: true,
            detail: format!(
                "{}, size limit {} MiB{}, {thp}",
                config.udmabuf_device.display(),
                limit.unwrap_or(64 << 20) >> 20,
                if limit.is_none() {
                    " (assumed: sysfs unreadable)"
                } else {
                    ""
                }
            ),
        });
    }
    out.push(BackendInfo {
        allowed: allowed(config, &Backend::Memfd),
        backend: Backend::Memfd,
        max_buffer_bytes: config.max_buffer_bytes,
        dma_buf: false,
        detail: "sealed memfd; NOT a dma-buf".to_string(),
    });
    out
}

/// Resolves the requested kind to a backend present, allowed and large enough.
fn choose_backend(
    kind: &BufferKind,
    backends: &[BackendInfo],
    size: u64,
    measured: &Measurements,
    stats: &mut LoadStats,
) -> Result<Backend, LoadError> {
    let find = |b: &Backend| backends.iter().find(|i| i.backend == *b);
    let usable = |b: &Backend| find(b).is_some_and(|i| i.allowed && size <= i.max_buffer_bytes);
    // Preferred dma-buf heap when udmabuf cannot take the buffer.
    let heap_fallback = || {
        let system = Backend::Heap("system".to_string());
        if usable(&system) {
            return Some(system);
        }
        backends
            .iter()
            .find(|i| {
                matches!(i.backend, Backend::Heap(_)) && i.allowed && size <= i.max_buffer_bytes
            })
            .map(|i| i.backend.clone())
    };
    match kind {
        BufferKind::Heap(name) => {
            let backend = Backend::Heap(name.clone());
            // The caller's text: escaped and bounded wherever it is shown.
            let shown = Untrusted::str(name).limit(64);
            match find(&backend) {
                None => Err(load_err!(
                    UnknownBackend,
                    "no dma-heap '{shown}' on this device; available: {}",
                    names(backends)
                )),
                Some(i) if !i.allowed => Err(load_err!(
                    BackendNotAllowed,
                    "dma-heap '{shown}' is disabled by the service configuration"
                )),
                Some(_) => Ok(backend),
            }
        }
        BufferKind::Memfd => match find(&Backend::Memfd) {
            Some(i) if i.allowed => Ok(Backend::Memfd),
            _ => Err(load_err!(
                BackendNotAllowed,
                "memfd buffers are disabled by the service configuration"
            )),
        },
        BufferKind::Udmabuf => match find(&Backend::Udmabuf) {
            None => Err(load_err!(
                UnknownBackend,
                "no /dev/udmabuf on this device; use a dma-heap or auto (available: {})",
                names(backends)
            )),
            Some(i) if !i.allowed => Err(load_err!(
                BackendNotAllowed,
                "udmabuf is disabled by the service configuration"
            )),
            Some(i) if size > i.max_buffer_bytes => match heap_fallback() {
                Some(heap) => {
                    stats.add_fallback(
                        FallbackKind::Backend,
                        format!(
                            "udmabuf limit is {} bytes (udmabuf.size_limit_mb), the buffer needs \
                             {size}: used {heap}",
                            i.max_buffer_bytes
                        ),
                    );
                    Ok(heap)
                }
                None => Err(load_err!(
                    TooLarge,
                    "{size} bytes exceed the udmabuf size limit of {} bytes and no dma-heap can \
                     take it; raise udmabuf.size_limit_mb",
                    i.max_buffer_bytes
                )),
            },
            Some(_) => Ok(Backend::Udmabuf),
        },
        BufferKind::Auto => {
            // Measured in the virtual device: udmabuf over a huge-folio memfd populated by
            // several threads beats the dma-heap + bounce path; with 4 KiB pages it does not
            // (population and UDMABUF_CREATE are ~10x slower), so then a heap goes first.
            let huge = matches!(shmem_thp(), ShmemThp::Available(_));
            let udmabuf = usable(&Backend::Udmabuf).then_some(Backend::Udmabuf);
            let heap = heap_fallback();
            let order: Vec<Backend> = if huge {
                udmabuf.into_iter().chain(heap).collect()
            } else {
                heap.into_iter().chain(udmabuf).collect()
            };
            let choice = measured.order(order, size);
            if let Some(note) = choice.note {
                stats.add_fallback(FallbackKind::Backend, note);
            }
            if let Some(first) = choice.order.into_iter().next() {
                return Ok(first);
            }
            if usable(&Backend::Memfd) {
                stats.add_fallback(
                    FallbackKind::Backend,
                    "no usable dma-buf backend (dma-heap/udmabuf) on this device: the buffer is \
                     a memfd, NOT a dma-buf",
                );
                return Ok(Backend::Memfd);
            }
            // Backends exist but none can hold this size: the request is too large, not
            // aimed at a missing backend.
            let largest = backends
                .iter()
                .filter(|i| i.allowed)
                .map(|i| i.max_buffer_bytes)
                .max();
            match largest {
                Some(largest) => Err(load_err!(
                    TooLarge,
                    "{size} bytes exceed what any backend can hold here (largest: {largest} bytes); \
                     load less or raise the service's limits"
                )),
                None => Err(load_err!(
                    UnknownBackend,
                    "no backend is usable here (available: {})",
                    names(backends)
                )),
            }
        }
    }
}

fn names(backends: &[BackendInfo]) -> String {
    backends
        .iter()
        .map(|b| b.backend.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn load(
    engine: &Engine,
    backends: &[BackendInfo],
    owner: Owner,
    req: LoadRequest,
    cancel: &CancelToken,
    progress: &dyn Progress,
) -> Result<LoadedBuffer, LoadError> {
    let (config, accounting, measured) = (&engine.config, &engine.accounting, &engine.measured);
    let started = Instant::now();
    let mut stats = LoadStats::default();
    let name = if req.name.is_empty() {
        "dmaload".to_string()
    } else {
        req.name.clone()
    };
    let kind = req.buffer.clone();
    let limits = plan::RequestLimits {
        max_segments: config.max_segments,
        max_files: config.max_files,
    };
    let mut plan = plan::plan(req, &config.default_tunables, limits, &mut stats)?;
    let backend = choose_backend(&kind, backends, plan.buffer_size, measured, &mut stats)?;
    plan.knobs.io_uring = config.io_engine == IoEngine::IoUring;
    // A hugetlb memfd is 2 MiB-rounded: fine behind a udmabuf of the exact size, not as a
    // plain memfd handed out.
    plan.knobs.hugetlb = config.hugetlb && backend == Backend::Udmabuf;
    // Every byte is reserved before anything is allocated.
    let mem_available = MemInfo::read().map(|m| m.available);
    let (slot, charge) = accounting.admit(config, owner, plan.buffer_size, mem_available)?;
    if cancel.is_cancelled() {
        return Err(load_err!(
            Cancelled,
            "the load was cancelled before it started"
        ));
    }
    let (fd, filled): (OwnedFd, Filled) = match &backend {
        Backend::Heap(heap_name) => {
            let heap = DmaHeap::open(&config.dma_heap_dir, heap_name).map_err(|e| {
                load_err!(UnknownBackend, "cannot open dma-heap '{heap_name}': {e}")
            })?;
            heap_fill::fill(&plan, &heap, &name, cancel, progress, started)?
        }
        Backend::Udmabuf => {
            let device = Udmabuf::open(&config.udmabuf_device)
                .map_err(|e| load_err!(UnknownBackend, "cannot open udmabuf: {e}"))?;
            let (memfd, mut filled) = memfd_fill::fill(&plan, &name, cancel, progress, started)?;
            let wrap_start = Instant::now();
            let fd = device
                .create(memfd.as_fd(), plan.buffer_size)
                .map_err(|e| {
                    load_err!(
                        NoMemory,
                        "UDMABUF_CREATE of {} bytes failed: {e}",
                        plan.buffer_size
                    )
                })?;
            if let Err(e) = dma_buf::set_name(fd.as_fd(), &name) {
                log::warn!("DMA_BUF_SET_NAME failed: {e}");
            }
            filled.alloc += wrap_start.elapsed();
            (fd, filled)
        }
        Backend::Memfd => {
            let (memfd, filled) = memfd_fill::fill(&plan, &name, cancel, progress, started)?;
            (memfd.into_fd(), filled)
        }
    };
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
    drop(slot);
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
    stats.total = started.elapsed();
    measured.record(&backend, plan.buffer_size, stats.total);
    Ok(LoadedBuffer {
        fd,
        size: plan.buffer_size,
        backend,
        stats,
        charge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn info(backend: Backend, allowed: bool, max: u64) -> BackendInfo {
        let dma_buf = backend.is_dma_buf();
        BackendInfo {
            backend,
            allowed,
            max_buffer_bytes: max,
            dma_buf,
            detail: String::new(),
        }
    }

    fn device() -> Vec<BackendInfo> {
        vec![
            info(Backend::Heap("cma".into()), true, 1 << 40),
            info(Backend::Heap("system".into()), true, 1 << 40),
            info(Backend::Udmabuf, true, 64 << 20),
            info(Backend::Memfd, true, 1 << 40),
        ]
    }

    #[test]
    fn auto_over_every_backends_limit_is_too_large_and_none_usable_is_unknown() {
        let mut stats = LoadStats::default();
        let err = choose_backend(
            &BufferKind::Auto,
            &device(),
            (1 << 40) + 1,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge, "{}", err.message);
        let mut disabled = device();
        disabled.iter_mut().for_each(|i| i.allowed = false);
        let err = choose_backend(
            &BufferKind::Auto,
            &disabled,
            1,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownBackend, "{}", err.message);
    }

    #[test]
    fn explicit_kinds_resolve_or_fail_with_their_codes() {
        let mut stats = LoadStats::default();
        let heap = BufferKind::Heap("system".into());
        assert_eq!(
            choose_backend(&heap, &device(), 1, &Measurements::default(), &mut stats),
            Ok(Backend::Heap("system".into()))
        );
        let missing = BufferKind::Heap("nope".into());
        let err = choose_backend(&missing, &device(), 1, &Measurements::default(), &mut stats)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownBackend);
        let mut denied = device();
        denied[1].allowed = false;
        let err =
            choose_backend(&heap, &denied, 1, &Measurements::default(), &mut stats).unwrap_err();
        assert_eq!(err.code, ErrorCode::BackendNotAllowed);
        assert!(stats.fallbacks.is_empty());
    }

    #[test]
    fn udmabuf_over_its_limit_falls_back_to_the_system_heap_or_is_too_large() {
        let mut stats = LoadStats::default();
        let got = choose_backend(
            &BufferKind::Udmabuf,
            &device(),
            65 << 20,
            &Measurements::default(),
            &mut stats,
        );
        assert_eq!(got, Ok(Backend::Heap("system".into())));
        assert_eq!(stats.fallbacks[0].kind, FallbackKind::Backend);
        let no_heaps: Vec<BackendInfo> = device()
            .into_iter()
            .filter(|b| !matches!(b.backend, Backend::Heap(_)))
            .collect();
        let err = choose_backend(
            &BufferKind::Udmabuf,
            &no_heaps,
            65 << 20,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
    }

    #[test]
    fn auto_prefers_dma_bufs_and_says_when_it_cannot() {
        let mut stats = LoadStats::default();
        let got = choose_backend(
            &BufferKind::Auto,
            &device(),
            1 << 20,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap();
        assert!(got.is_dma_buf());
        // Too big for udmabuf: a heap, never memfd, while a heap can take it.
        let got = choose_backend(
            &BufferKind::Auto,
            &device(),
            1 << 30,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap();
        assert_eq!(got, Backend::Heap("system".into()));
        let memfd_only = vec![info(Backend::Memfd, true, 1 << 40)];
        let mut stats = LoadStats::default();
        let got = choose_backend(
            &BufferKind::Auto,
            &memfd_only,
            1 << 20,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap();
        assert_eq!(got, Backend::Memfd);
        assert!(stats.fallbacks[0].reason.contains("NOT a dma-buf"));
        let nothing = vec![info(Backend::Memfd, false, 1 << 40)];
        let err = choose_backend(
            &BufferKind::Auto,
            &nothing,
            1,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownBackend);
    }
}
