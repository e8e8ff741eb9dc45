//! The backends a device offers (dma-heaps, udmabuf, memfd) and the one a request gets:
//! present, allowed by the configuration, large enough, and for `auto` the fastest measured.

use crate::engine::BackendInfo;
use crate::error::{load_err, LoadError};
use crate::limits::EngineConfig;
use crate::request::BackendChoice;
use crate::stats::{Backend, FallbackKind, LoadStats};
use dmaload_abi::dma_heap::list_heaps;
use dmaload_abi::memfd::{shmem_thp, HugetlbPages, ShmemThp};
use dmaload_abi::udmabuf;
use dmaload_abi::Untrusted;

use super::Measurements;

pub(crate) fn allowed(config: &EngineConfig, backend: &Backend) -> bool {
    config.allowed_backends.is_empty()
        || config.allowed_backends.iter().any(|b| *b == backend.name())
}

/// What discovery reads beside the backends a device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    /// The listings' text: the memory udmabuf gets (shmem THP mode, hugetlb pages).
    Described,
    /// What choosing a backend needs and nothing more (presence, the udmabuf size limit):
    /// a load pays for every file read here.
    ForLoads,
}

pub(crate) fn discover_backends(config: &EngineConfig, detail: Detail) -> Vec<BackendInfo> {
    let described = detail == Detail::Described;
    let mut out = Vec::new();
    for heap in list_heaps(&config.dma_heap_dir) {
        let backend = Backend::Heap(heap.clone());
        out.push(BackendInfo {
            allowed: allowed(config, &backend),
            backend,
            max_buffer_bytes: config.max_buffer_bytes,
            dma_buf: true,
            detail: if described {
                config.dma_heap_dir.join(&heap).display().to_string()
            } else {
                String::new()
            },
        });
    }
    if config.udmabuf_device.exists() {
        let limit = udmabuf::size_limit(&config.udmabuf_size_limit_file);
        out.push(BackendInfo {
            allowed: allowed(config, &Backend::Udmabuf),
            backend: Backend::Udmabuf,
            max_buffer_bytes: limit.unwrap_or(64 << 20).min(config.max_buffer_bytes),
            dma_buf: true,
            detail: if described {
                udmabuf_detail(config, limit)
            } else {
                String::new()
            },
        });
    }
    out.push(BackendInfo {
        allowed: allowed(config, &Backend::Memfd),
        backend: Backend::Memfd,
        max_buffer_bytes: config.max_buffer_bytes,
        dma_buf: false,
        detail: if described {
            "sealed memfd; NOT a dma-buf".to_string()
        } else {
            String::new()
        },
    });
    out
}

/// The device, its size limit and the memory behind its buffers.
fn udmabuf_detail(config: &EngineConfig, limit: Option<u64>) -> String {
    let thp = match shmem_thp() {
        ShmemThp::Available(mode) => format!("huge folios ({mode})"),
        ShmemThp::Unavailable(_) => "4 KiB pages (shmem THP off)".to_string(),
    };
    let pages = HugetlbPages::read();
    let thp = if config.hugetlb && (pages.pool_free() > 0 || pages.surplus_room() > 0) {
        format!(
            "hugetlb: {} free 2 MiB pages in the pool, {} more on demand; else {thp}",
            pages.pool_free(),
            pages.surplus_room()
        )
    } else {
        thp
    };
    format!(
        "{}, size limit {} MiB{}, {thp}",
        config.udmabuf_device.display(),
        limit.unwrap_or(64 << 20) >> 20,
        if limit.is_none() {
            " (assumed: sysfs unreadable)"
        } else {
            ""
        }
    )
}

/// The backends of this device, as seen by a buffer of `size` bytes.
struct Offer<'a> {
    backends: &'a [BackendInfo],
    size: u64,
}

impl Offer<'_> {
    fn find(&self, b: &Backend) -> Option<&BackendInfo> {
        self.backends.iter().find(|i| i.backend == *b)
    }

    fn usable(&self, b: &Backend) -> bool {
        self.find(b)
            .is_some_and(|i| i.allowed && self.size <= i.max_buffer_bytes)
    }

    /// Preferred dma-buf heap when udmabuf cannot take the buffer.
    fn heap_fallback(&self) -> Option<Backend> {
        let system = Backend::Heap("system".to_string());
        if self.usable(&system) {
            return Some(system);
        }
        self.backends
            .iter()
            .find(|i| {
                matches!(i.backend, Backend::Heap(_))
                    && i.allowed
                    && self.size <= i.max_buffer_bytes
            })
            .map(|i| i.backend.clone())
    }
}

/// Resolves the requested kind to a backend present, allowed and large enough.
pub(crate) fn choose_backend(
    kind: &BackendChoice,
    backends: &[BackendInfo],
    size: u64,
    measured: &Measurements,
    stats: &mut LoadStats,
) -> Result<Backend, LoadError> {
    let offer = Offer { backends, size };
    match kind {
        BackendChoice::Heap(name) => {
            let backend = Backend::Heap(name.clone());
            // The caller's text: escaped and bounded wherever it is shown.
            let shown = Untrusted::str(name).limit(64);
            match offer.find(&backend) {
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
        BackendChoice::Memfd => match offer.find(&Backend::Memfd) {
            Some(i) if i.allowed => Ok(Backend::Memfd),
            _ => Err(load_err!(
                BackendNotAllowed,
                "memfd buffers are disabled by the service configuration"
            )),
        },
        BackendChoice::Udmabuf => choose_udmabuf(&offer, stats),
        BackendChoice::Auto => choose_auto(&offer, measured, stats),
    }
}

/// udmabuf, or a heap where the buffer is over udmabuf's size limit.
fn choose_udmabuf(offer: &Offer<'_>, stats: &mut LoadStats) -> Result<Backend, LoadError> {
    let size = offer.size;
    match offer.find(&Backend::Udmabuf) {
        None => Err(load_err!(
            UnknownBackend,
            "no /dev/udmabuf on this device; use a dma-heap or auto (available: {})",
            names(offer.backends)
        )),
        Some(i) if !i.allowed => Err(load_err!(
            BackendNotAllowed,
            "udmabuf is disabled by the service configuration"
        )),
        Some(i) if size > i.max_buffer_bytes => match offer.heap_fallback() {
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
    }
}

/// The fastest dma-buf backend that can take the buffer, else memfd.
fn choose_auto(
    offer: &Offer<'_>,
    measured: &Measurements,
    stats: &mut LoadStats,
) -> Result<Backend, LoadError> {
    let size = offer.size;
    // Measured in the virtual device: udmabuf over a huge-folio memfd populated by several
    // threads beats the dma-heap + bounce path; with 4 KiB pages it does not (population
    // and UDMABUF_CREATE are ~10x slower), so then a heap goes first.
    let huge = matches!(shmem_thp(), ShmemThp::Available(_));
    let udmabuf = offer.usable(&Backend::Udmabuf).then_some(Backend::Udmabuf);
    let heap = offer.heap_fallback();
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
    if offer.usable(&Backend::Memfd) {
        stats.add_fallback(
            FallbackKind::Backend,
            "no usable dma-buf backend (dma-heap/udmabuf) on this device: the buffer is a \
             memfd, NOT a dma-buf",
        );
        return Ok(Backend::Memfd);
    }
    // Backends exist but none can hold this size: the request is too large, not aimed at a
    // missing backend.
    let largest = offer
        .backends
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
            names(offer.backends)
        )),
    }
}

fn names(backends: &[BackendInfo]) -> String {
    backends
        .iter()
        .map(|b| b.backend.name())
        .collect::<Vec<_>>()
        .join(", ")
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
            &BackendChoice::Auto,
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
            &BackendChoice::Auto,
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
        let heap = BackendChoice::Heap("system".into());
        assert_eq!(
            choose_backend(&heap, &device(), 1, &Measurements::default(), &mut stats),
            Ok(Backend::Heap("system".into()))
        );
        let missing = BackendChoice::Heap("nope".into());
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
            &BackendChoice::Udmabuf,
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
            &BackendChoice::Udmabuf,
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
            &BackendChoice::Auto,
            &device(),
            1 << 20,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap();
        assert!(got.is_dma_buf());
        // Too big for udmabuf: a heap, never memfd, while a heap can take it.
        let got = choose_backend(
            &BackendChoice::Auto,
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
            &BackendChoice::Auto,
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
            &BackendChoice::Auto,
            &nothing,
            1,
            &Measurements::default(),
            &mut stats,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownBackend);
    }
}
