//! The schemes measured: the floors, the seed's ways of loading a file into a dma-buf, and
//! dmaload. Each run opens its own fds; the clock covers allocation to the last byte in.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use dmaload_abi::dma_buf::{self, Access, CpuAccess};
use dmaload_abi::dma_heap::DmaHeap;
use dmaload_abi::file::pread;
use dmaload_abi::memfd::{shmem_thp, Memfd, ShmemThp};
use dmaload_abi::mmap::Mapping;
use dmaload_abi::udmabuf::Udmabuf;
use dmaload_engine::{BackendChoice, Caller, CancelToken, Engine, IoMode, LoadRequest, NoProgress};

use crate::report;
use crate::service::Service;

const CHUNK: usize = 8 << 20;

/// Engine configurations compared side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The service's defaults: pread readers, hugetlb memory where a pool has room.
    Default,
    /// Readers on io_uring.
    IoUring,
    /// hugetlb off: shmem memory (huge folios where shmem THP allows).
    NoHugetlb,
}

/// The engines of every [`Variant`].
pub struct Engines {
    pub default: Engine,
    pub io_uring: Engine,
    pub no_hugetlb: Engine,
}

impl Engines {
    pub fn get(&self, variant: Variant) -> &Engine {
        match variant {
            Variant::Default => &self.default,
            Variant::IoUring => &self.io_uring,
            Variant::NoHugetlb => &self.no_hugetlb,
        }
    }
}

/// Memory an allocation floor is measured on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloorMemory {
    /// A memfd populated with `MADV_POPULATE_WRITE` (huge folios where shmem THP allows).
    Shmem,
    /// A hugetlb memfd on pages of the pool reserved at boot (the reservation is not timed).
    HugetlbPool,
    /// A hugetlb memfd on surplus pages allocated as they are faulted in
    /// (`nr_overcommit_hugepages`, no pool), mapped `MAP_NORESERVE`.
    HugetlbSurplus,
    /// One `DMA_HEAP_IOCTL_ALLOC` on this heap.
    Heap(String),
}

/// One scheme as measured: a name from the JSON schema, a backend, an I/O mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Allocation alone, by as many threads as dmaload populates with (one ioctl for a
    /// heap, which no thread count changes).
    AllocFloor { memory: FloorMemory, threads: usize },
    /// The dma-heap backend's own floor: the allocation ioctl, then the copy of every byte
    /// from a bounce block already filled into the mapping, by as many threads as dmaload
    /// copies with (what dmaload's heap fill cannot avoid: O_DIRECT cannot target a heap
    /// mapping, and nothing can be copied before the ioctl returns).
    HeapFloor { heap: String, threads: usize },
    /// Raw O_DIRECT read of the file at dmaload's parallelism into reused buffers.
    DirectFloor { threads: usize },
    /// alloc + mmap + buffered read (a heap; a memfd where there is none).
    Normal { heap: Option<String> },
    /// memfd + UDMABUF_CREATE + buffered read into the memfd mapping.
    UdmabufBuffered,
    /// memfd + UDMABUF_CREATE + one serial O_DIRECT read into the memfd mapping.
    UdmabufDirect,
    /// heap alloc + mmap, then serial O_DIRECT reads into an 8 MiB bounce buffer + memcpy.
    HeapBounce { heap: String },
    /// The engine with a buffer kind, O_DIRECT fd, in one of its configurations.
    Dmaload {
        kind: BackendChoice,
        variant: Variant,
    },
    /// dmaloadd started by the bench, loading through binder (the client library's
    /// `Loader::load`): what an app sees end to end.
    DmaloadService { kind: BackendChoice },
    /// Through dmaloadd, the reload of a shareable file version whose buffer it kept warm
    /// (warm reuse: a new fd to the same buffer, no I/O).
    DmaloadWarm,
}

fn kind_label(kind: &BackendChoice) -> String {
    match kind {
        BackendChoice::Auto => "auto".to_string(),
        BackendChoice::Heap(h) => format!("heap:{h}"),
        BackendChoice::Udmabuf => "udmabuf".to_string(),
        BackendChoice::Memfd => "memfd".to_string(),
    }
}

impl Scheme {
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::AllocFloor { .. } => "alloc_floor",
            Scheme::HeapFloor { .. } => "heap_floor",
            Scheme::DirectFloor { .. } => "direct_floor",
            Scheme::Normal { .. } => "normal",
            Scheme::UdmabufBuffered => "udmabuf_buffered",
            Scheme::UdmabufDirect => "udmabuf_direct",
            Scheme::HeapBounce { .. } => "heap_bounce",
            Scheme::Dmaload { .. } => "dmaload",
            Scheme::DmaloadService { .. } => "dmaload_service",
            Scheme::DmaloadWarm => "dmaload_warm",
        }
    }

    pub fn backend(&self) -> String {
        let heap_or_memfd = |h: &Option<String>| match h {
            Some(h) => format!("heap:{h}"),
            None => "memfd".to_string(),
        };
        match self {
            Scheme::AllocFloor { memory, .. } => match memory {
                FloorMemory::Shmem => "memfd".to_string(),
                FloorMemory::HugetlbPool => "memfd-hugetlb".to_string(),
                FloorMemory::HugetlbSurplus => "memfd-hugetlb-surplus".to_string(),
                FloorMemory::Heap(h) => format!("heap:{h}"),
            },
            Scheme::HeapFloor { heap, .. } => format!("heap:{heap}"),
            Scheme::Normal { heap } => heap_or_memfd(heap),
            Scheme::DirectFloor { threads } => format!("{threads} threads"),
            Scheme::UdmabufBuffered | Scheme::UdmabufDirect => "udmabuf".to_string(),
            Scheme::HeapBounce { heap } => format!("heap:{heap}"),
            Scheme::DmaloadWarm => "auto".to_string(),
            Scheme::Dmaload { kind, variant } => {
                let kind = kind_label(kind);
                match variant {
                    Variant::Default => kind,
                    Variant::IoUring => format!("{kind}+io_uring"),
                    Variant::NoHugetlb => format!("{kind}+shmem"),
                }
            }
            Scheme::DmaloadService { kind } => kind_label(kind),
        }
    }

    pub fn io_mode(&self) -> &'static str {
        match self {
            Scheme::AllocFloor { .. } | Scheme::HeapFloor { .. } => "none",
            Scheme::Normal { .. } | Scheme::UdmabufBuffered => "buffered",
            _ => "direct",
        }
    }

    /// Threads the scheme works with, where the bench fixes them (floors, serial
    /// baselines); 0 where the engine or the service decides.
    pub fn threads(&self) -> usize {
        match self {
            Scheme::AllocFloor {
                memory: FloorMemory::Heap(_),
                ..
            } => 1,
            Scheme::AllocFloor { threads, .. }
            | Scheme::HeapFloor { threads, .. }
            | Scheme::DirectFloor { threads } => *threads,
            Scheme::Normal { .. }
            | Scheme::UdmabufBuffered
            | Scheme::UdmabufDirect
            | Scheme::HeapBounce { .. } => 1,
            Scheme::Dmaload { .. } | Scheme::DmaloadService { .. } | Scheme::DmaloadWarm => 0,
        }
    }

    /// Whether the scheme loads through dmaloadd.
    pub fn needs_service(&self) -> bool {
        matches!(self, Scheme::DmaloadService { .. } | Scheme::DmaloadWarm)
    }
}

/// Where a run happens.
pub struct Bench<'a> {
    pub engines: &'a Engines,
    pub heap_dir: PathBuf,
    pub udmabuf: PathBuf,
    /// dmaloadd as the bench started it, for the schemes that load through it.
    pub service: Option<&'a Service>,
}

/// What one run produced besides its time.
#[derive(Default)]
pub struct RunOutput {
    pub elapsed: Duration,
    /// The buffer fd and size, kept until the caller measured and (maybe) verified it.
    pub buffer: Option<(OwnedFd, usize)>,
    /// What the load reported about itself (a line for the human table).
    pub note: Option<String>,
    /// The memory behind the buffer, as the engine reported it (`LoadStats::memory`).
    pub memory: Option<String>,
}

pub(crate) fn open_direct(path: &Path) -> Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))?
        .into())
}

fn open_buffered(path: &Path) -> Result<OwnedFd> {
    Ok(File::open(path)
        .with_context(|| format!("open {}", path.display()))?
        .into())
}

fn page_round(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

/// Reads `len` file bytes into `map` from offset 0 in calls of at most `step` bytes.
fn read_into(map: &mut Mapping, fd: &OwnedFd, len: usize, step: usize) -> Result<()> {
    let mut at = 0;
    while at < len {
        let want = step.min(len - at);
        let want = if want % 4096 != 0 {
            want.div_ceil(4096) * 4096
        } else {
            want
        };
        let want = want.min(map.len() - at);
        let n = pread(
            fd.as_fd(),
            &mut map.as_mut_slice()[at..at + want],
            at as u64,
            0,
        )
        .context("pread")?;
        ensure!(n > 0, "unexpected end of file at {at}");
        at += n;
    }
    Ok(())
}

/// Populates `map` with `threads` threads at once, each a contiguous share in whole 2 MiB
/// pages (as dmaload's populating threads split a gather).
fn populate_by(map: &Mapping, threads: usize) -> Result<()> {
    const HUGE: usize = 2 << 20;
    let len = map.len();
    let share = (len / threads.max(1)).div_ceil(HUGE).max(1) * HUGE;
    if share >= len {
        // One share: this thread, as dmaload fills small buffers on the load's own thread.
        return map.populate_write(0, len).context("MADV_POPULATE_WRITE");
    }
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..len.div_ceil(share))
            .map(|i| {
                let (at, end) = (i * share, ((i + 1) * share).min(len));
                s.spawn(move || map.populate_write(at, end - at))
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("populating thread panicked"))?
                .context("MADV_POPULATE_WRITE")?;
        }
        Ok(())
    })
}

/// An allocation floor's memory, populated by `threads` threads.
fn floor_memory(memory: &FloorMemory, size: u64, threads: usize) -> Result<(Memfd, Mapping)> {
    let (memfd, map) = match memory {
        FloorMemory::HugetlbPool => {
            let memfd = Memfd::create_hugetlb("bench-alloc", size)?;
            let map = Mapping::map_shared(memfd.as_fd(), memfd.size() as usize)?;
            (memfd, map)
        }
        FloorMemory::HugetlbSurplus => {
            let memfd = Memfd::create_hugetlb("bench-alloc", size)?;
            let map = Mapping::map_shared_noreserve(memfd.as_fd(), memfd.size() as usize)?;
            (memfd, map)
        }
        FloorMemory::Shmem => {
            let memfd = Memfd::create("bench-alloc", size)?;
            let map = Mapping::map_shared(memfd.as_fd(), size as usize)?;
            if matches!(shmem_thp(), ShmemThp::Available(_)) {
                map.advise_huge()?;
            }
            (memfd, map)
        }
        FloorMemory::Heap(_) => bail!("a heap floor is one ioctl, not populated memory"),
    };
    populate_by(&map, threads)?;
    Ok((memfd, map))
}

/// Reads the first `size` bytes of `fd` (O_DIRECT) with `threads` threads in 8 MiB requests
/// into reused buffers: the storage's limit at dmaload's parallelism.
pub(crate) fn read_direct(fd: &OwnedFd, size: u64, threads: usize) -> Result<()> {
    let next = AtomicU64::new(0);
    // No more readers than requests, no bigger buffers than a request: a small file is one
    // read on this thread, as dmaload reads it.
    let requests = size.div_ceil(CHUNK as u64).max(1) as usize;
    let block_len = page_round(size.min(CHUNK as u64)).max(4096) as usize;
    let read = || -> Result<()> {
        let mut block = Mapping::anonymous(block_len)?;
        loop {
            let off = next.fetch_add(CHUNK as u64, Ordering::Relaxed);
            if off >= size {
                return Ok(());
            }
            let len = page_round((size - off).min(CHUNK as u64)) as usize;
            pread(fd.as_fd(), &mut block.as_mut_slice()[..len], off, 0)?;
        }
    };
    let threads = threads.clamp(1, requests);
    if threads == 1 {
        return read();
    }
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(read)).collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        }
        Ok(())
    })
}

/// Copies `src` over the whole of `map` with `threads` threads, chunk by chunk.
fn copy_by(map: &Mapping, src: &[u8], threads: usize) -> Result<()> {
    let len = map.len();
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let at = next.fetch_add(src.len() as u64, Ordering::Relaxed) as usize;
                        if at >= len {
                            return Ok(());
                        }
                        let n = src.len().min(len - at);
                        let mut region = map.claim(at, n)?;
                        region.copy_from_slice(&src[..n]);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("copying thread panicked"))??;
        }
        Ok(())
    })
}

impl Bench<'_> {
    /// Runs `scheme` once on `path` (`size` bytes).
    pub fn run(&self, scheme: &Scheme, path: &Path, size: u64) -> Result<RunOutput> {
        let buf_size = page_round(size);
        let mut out = RunOutput::default();
        match scheme {
            Scheme::AllocFloor {
                memory: FloorMemory::Heap(heap),
                ..
            } => {
                let heap = DmaHeap::open(&self.heap_dir, heap)?;
                let start = Instant::now();
                let fd = heap.allocate(buf_size)?;
                out.elapsed = start.elapsed();
                drop(fd);
            }
            Scheme::AllocFloor { memory, threads } => {
                let start = Instant::now();
                let (memfd, map) = floor_memory(memory, buf_size, *threads)?;
                out.elapsed = start.elapsed();
                drop((map, memfd));
            }
            Scheme::HeapFloor { heap, threads } => {
                let heap = DmaHeap::open(&self.heap_dir, heap)?;
                // The bounce block is written before the clock starts: its pages exist, as
                // the kept blocks of dmaload's ring do.
                let mut block = Mapping::anonymous(CHUNK)?;
                block.as_mut_slice().fill(0x5a);
                let start = Instant::now();
                let fd = heap.allocate(buf_size)?;
                let map = Mapping::map_shared(fd.as_fd(), buf_size as usize)?;
                let bracket = CpuAccess::begin(fd.as_fd(), Access::Write)?;
                copy_by(&map, block.as_slice(), *threads)?;
                bracket.finish()?;
                out.elapsed = start.elapsed();
                drop((map, fd));
            }
            Scheme::DirectFloor { threads } => {
                let fd = open_direct(path)?;
                let start = Instant::now();
                read_direct(&fd, size, *threads)?;
                out.elapsed = start.elapsed();
            }
            Scheme::Normal { heap } => {
                let fd = open_buffered(path)?;
                let start = Instant::now();
                let (buf_fd, mut map): (OwnedFd, Mapping) = match heap {
                    Some(heap) => {
                        let buf = DmaHeap::open(&self.heap_dir, heap)?.allocate(buf_size)?;
                        let map = Mapping::map_shared(buf.as_fd(), buf_size as usize)?;
                        (buf, map)
                    }
                    None => {
                        let memfd = Memfd::create("bench-normal", buf_size)?;
                        let map = Mapping::map_shared(memfd.as_fd(), buf_size as usize)?;
                        (memfd.into_fd(), map)
                    }
                };
                read_into(&mut map, &fd, size as usize, 1 << 30)?;
                out.elapsed = start.elapsed();
                drop(map);
                out.buffer = Some((buf_fd, size as usize));
            }
            Scheme::UdmabufBuffered | Scheme::UdmabufDirect => {
                let direct = *scheme == Scheme::UdmabufDirect;
                let fd = if direct {
                    open_direct(path)?
                } else {
                    open_buffered(path)?
                };
                let device = Udmabuf::open(&self.udmabuf)?;
                let start = Instant::now();
                let memfd = Memfd::create("bench-udmabuf", buf_size)?;
                memfd.seal_size()?;
                let dmabuf = device.create(memfd.as_fd(), buf_size)?;
                let mut map = Mapping::map_shared(memfd.as_fd(), buf_size as usize)?;
                read_into(&mut map, &fd, size as usize, 1 << 30)?;
                out.elapsed = start.elapsed();
                drop(map);
                out.buffer = Some((dmabuf, size as usize));
            }
            Scheme::HeapBounce { heap } => {
                let fd = open_direct(path)?;
                let mut bounce = Mapping::anonymous(CHUNK)?;
                let start = Instant::now();
                let buf = DmaHeap::open(&self.heap_dir, heap)?.allocate(buf_size)?;
                let mut map = Mapping::map_shared(buf.as_fd(), buf_size as usize)?;
                let bracket = CpuAccess::begin(buf.as_fd(), Access::Write)?;
                let mut at = 0usize;
                while at < size as usize {
                    let len = (size as usize - at).min(CHUNK);
                    let window = &mut bounce.as_mut_slice()[..page_round(len as u64) as usize];
                    let n = pread(fd.as_fd(), window, at as u64, 0)?;
                    ensure!(n >= len, "short read at {at}");
                    map.as_mut_slice()[at..at + len].copy_from_slice(&window[..len]);
                    at += len;
                }
                bracket.finish()?;
                out.elapsed = start.elapsed();
                drop(map);
                out.buffer = Some((buf, size as usize));
            }
            Scheme::Dmaload { kind, variant } => {
                let fd = open_direct(path)?;
                let req = LoadRequest::whole_file(fd, "dmaload-bench")
                    .with_backend(kind.clone())
                    .with_io_mode(IoMode::Direct);
                let start = Instant::now();
                let loaded = self
                    .engines
                    .get(*variant)
                    .load(Caller::new(0), req, &CancelToken::new(), &NoProgress)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                out.elapsed = start.elapsed();
                out.note = Some(report::describe_stats(
                    &loaded.backend.name(),
                    &loaded.stats,
                ));
                out.memory = Some(loaded.stats.memory.to_string());
                out.buffer = Some((loaded.fd, size as usize));
            }
            Scheme::DmaloadService { kind } => {
                let service = self
                    .service
                    .context("dmaloadd is not running (the bench starts it for these rows)")?;
                let fd = open_direct(path)?;
                let loaded = service.load_timed(&fd, kind)?;
                out.elapsed = loaded.elapsed;
                out.note = Some(loaded.note);
                out.buffer = Some((loaded.fd, size as usize));
            }
            Scheme::DmaloadWarm => {
                let service = self
                    .service
                    .context("dmaloadd is not running (the bench starts it for these rows)")?;
                let loaded = service.warm(path)?;
                out.elapsed = loaded.elapsed;
                out.note = Some(loaded.note);
                out.buffer = Some((loaded.fd, size as usize));
            }
        }
        Ok(out)
    }
}

/// Compares a buffer with the file, 8 MiB at a time through O_DIRECT (no page cache).
pub fn verify(buffer: &OwnedFd, len: usize, path: &Path) -> Result<()> {
    let view = dma_buf::ReadView::map(buffer.as_fd(), page_round(len as u64) as usize)?;
    let fd = open_direct(path)?;
    let mut block = Mapping::anonymous(CHUNK)?;
    let mut at = 0usize;
    while at < len {
        let want = (len - at).min(CHUNK);
        let window = &mut block.as_mut_slice()[..page_round(want as u64) as usize];
        let n = pread(fd.as_fd(), window, at as u64, 0)?;
        ensure!(n >= want, "file shorter than expected at {at}");
        if window[..want] != view.as_bytes()[at..at + want] {
            bail!("buffer differs from the file in bytes {at}..{}", at + want);
        }
        at += want;
    }
    view.finish()?;
    Ok(())
}
