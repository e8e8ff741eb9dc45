//! What a caller asks for: files, segments of them, a buffer kind, an I/O mode, tunables.

use std::os::fd::OwnedFd;

use dmaload_abi::digest::{Digest, DigestAlgorithm};

/// Who a load is charged to (the service passes the binder caller's uid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub uid: u32,
}

impl Caller {
    pub fn new(uid: u32) -> Caller {
        Caller { uid }
    }
}

/// One range of one of the request's files ([`LoadRequest::files`]), placed at an offset of
/// the buffer.
pub use dmaload_abi::segment::Segment;

/// A segment that brings its own file, for callers with one fd per segment
/// ([`LoadRequest::from_fd_segments`]).
#[derive(Debug)]
pub struct FdSegment {
    pub fd: OwnedFd,
    pub file_offset: u64,
    /// Bytes to load; 0 means "to the end of the file".
    pub length: u64,
    pub buffer_offset: u64,
}

impl FdSegment {
    /// The whole file at the start of the buffer.
    pub fn whole_file(fd: OwnedFd) -> FdSegment {
        FdSegment {
            fd,
            file_offset: 0,
            length: 0,
            buffer_offset: 0,
        }
    }
}

/// Which allocator holds the buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// The fastest backend this device offers (see [`crate::Engine::backends`]).
    Auto,
    /// A named dma-heap under /dev/dma_heap (`system`, `system-uncached`, `cma`, ...).
    Heap(String),
    /// A sealed memfd wrapped by /dev/udmabuf (zero-copy direct I/O).
    Udmabuf,
    /// A plain sealed memfd: not a dma-buf (for hosts without dma-buf support).
    Memfd,
}

impl BackendChoice {
    /// Parses `auto`, `udmabuf`, `memfd`, or a heap name (`system`, `heap:system`).
    pub fn parse(name: &str) -> BackendChoice {
        match name {
            "auto" | "" => BackendChoice::Auto,
            "udmabuf" => BackendChoice::Udmabuf,
            "memfd" => BackendChoice::Memfd,
            other => BackendChoice::Heap(other.strip_prefix("heap:").unwrap_or(other).to_string()),
        }
    }
}

/// How the file is read.
pub use dmaload_abi::io_mode::IoMode;

/// How readers issue their reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// One `pread` per reader thread in flight (works everywhere).
    #[default]
    Pread,
    /// io_uring: every reader thread keeps several reads in flight. Where the kernel or the
    /// SELinux policy denies io_uring (or the build leaves it out) the load reads with
    /// `pread` and reports the fallback.
    IoUring,
}

impl IoEngine {
    /// Parses `pread` or `io_uring`.
    pub fn parse(name: &str) -> Option<IoEngine> {
        match name {
            "pread" => Some(IoEngine::Pread),
            "io_uring" | "io-uring" | "uring" => Some(IoEngine::IoUring),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            IoEngine::Pread => "pread",
            IoEngine::IoUring => "io_uring",
        }
    }
}

/// ResolvedTunables with sensible defaults; 0 in a field means "use the default".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunables {
    /// Bytes of buffer allocated/populated before readers are let into them (default 128 MiB).
    pub gather_size: u64,
    /// Bytes per read request (default 8 MiB).
    pub chunk_size: u64,
    /// Reader threads, i.e. reads in flight (default 2 × CPUs, at most 8).
    pub reader_threads: u32,
    /// Threads populating memfd memory for udmabuf/memfd (default: number of CPUs, at most 4).
    pub populate_threads: u32,
    /// Bounce buffers in the dma-heap ring (default 4).
    pub bounce_buffers: u32,
}

impl Tunables {
    pub const DEFAULT_GATHER_SIZE: u64 = 128 << 20;
    pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;
    pub const MAX_THREADS: u32 = 64;
}

/// A load request: the files, each once, and the segments that read them.
#[derive(Debug)]
pub struct LoadRequest {
    /// The caller's files, read as they are: never re-opened, flags never changed. Direct
    /// I/O is used for a file opened with `O_DIRECT`. Each is checked once, however many
    /// segments read it.
    pub files: Vec<OwnedFd>,
    pub segments: Vec<Segment>,
    pub backend: BackendChoice,
    pub io_mode: IoMode,
    /// Debug name given to the dma-buf (`DMA_BUF_SET_NAME`) / memfd.
    pub name: String,
    pub tunables: Tunables,
    /// Digests to compute for every segment while loading ([`crate::LoadedBuffer::digests`]).
    pub digests: Vec<DigestAlgorithm>,
    /// Digests segments must have: the load computes each (or takes the kernel's fs-verity
    /// measurement) and fails with `DIGEST_MISMATCH` when one differs, handing nothing out.
    /// `from_kernel` is ignored. At most one per segment and algorithm.
    pub expected: Vec<Digest>,
}

impl LoadRequest {
    /// Longest buffer name, in bytes (names are labels: memfd names and debug listings).
    pub const MAX_NAME_BYTES: usize = 255;

    /// A request for one whole file with defaults (auto backend, auto I/O mode).
    pub fn whole_file(fd: OwnedFd, name: impl Into<String>) -> LoadRequest {
        LoadRequest::from_fd_segments(vec![FdSegment::whole_file(fd)], name)
    }

    /// A request in which every segment has a file of its own, with defaults.
    pub fn from_fd_segments(segments: Vec<FdSegment>, name: impl Into<String>) -> LoadRequest {
        let mut files = Vec::with_capacity(segments.len());
        let mut ranges = Vec::with_capacity(segments.len());
        for (file, seg) in segments.into_iter().enumerate() {
            files.push(seg.fd);
            ranges.push(Segment {
                file,
                file_offset: seg.file_offset,
                length: seg.length,
                buffer_offset: seg.buffer_offset,
            });
        }
        LoadRequest {
            files,
            segments: ranges,
            backend: BackendChoice::Auto,
            io_mode: IoMode::Auto,
            name: name.into(),
            tunables: Tunables::default(),
            digests: Vec::new(),
            expected: Vec::new(),
        }
    }

    /// The same request with duplicates of its fds, for one more attempt: the engine takes
    /// the request it loads, and a load refused for room can be retried once room was made.
    pub fn try_clone(&self) -> std::io::Result<LoadRequest> {
        let files = self
            .files
            .iter()
            .map(OwnedFd::try_clone)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(LoadRequest {
            files,
            segments: self.segments.clone(),
            backend: self.backend.clone(),
            io_mode: self.io_mode,
            name: self.name.clone(),
            tunables: self.tunables,
            digests: self.digests.clone(),
            expected: self.expected.clone(),
        })
    }

    pub fn with_backend(mut self, backend: BackendChoice) -> LoadRequest {
        self.backend = backend;
        self
    }

    pub fn with_io_mode(mut self, io_mode: IoMode) -> LoadRequest {
        self.io_mode = io_mode;
        self
    }

    pub fn with_tunables(mut self, tunables: Tunables) -> LoadRequest {
        self.tunables = tunables;
        self
    }

    /// Computes `algorithm` for every segment.
    pub fn with_digest(mut self, algorithm: DigestAlgorithm) -> LoadRequest {
        if !self.digests.contains(&algorithm) {
            self.digests.push(algorithm);
        }
        self
    }

    /// Requires segment `segment` to have `value` as its `algorithm` digest.
    pub fn expecting(
        mut self,
        segment: usize,
        algorithm: DigestAlgorithm,
        value: [u8; dmaload_abi::digest::DIGEST_BYTES],
    ) -> LoadRequest {
        self.expected.push(Digest {
            segment,
            algorithm,
            value,
            from_kernel: false,
        });
        self
    }
}

/// Receives progress; called from the engine's threads, so it must be `Sync`.
pub trait Progress: Sync {
    /// `bytes_done` of `bytes_total` file bytes are in the buffer.
    fn progress(&self, bytes_done: u64, bytes_total: u64);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn progress(&self, _bytes_done: u64, _bytes_total: u64) {}
}
