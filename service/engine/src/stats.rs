//! What a load did: the backend used, where the time went, and every fallback with its reason.

use std::fmt;
use std::time::Duration;

/// The allocator actually holding a buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A dma-heap buffer (heap name, e.g. `system`).
    Heap(String),
    /// A udmabuf over a sealed memfd.
    Udmabuf,
    /// A sealed memfd: NOT a dma-buf.
    Memfd,
}

impl Backend {
    /// True when the fd is a dma-buf (heap or udmabuf).
    pub fn is_dma_buf(&self) -> bool {
        !matches!(self, Backend::Memfd)
    }

    /// `heap:<name>`, `udmabuf` or `memfd`.
    pub fn name(&self) -> String {
        match self {
            Backend::Heap(heap) => format!("heap:{heap}"),
            Backend::Udmabuf => "udmabuf".to_string(),
            Backend::Memfd => "memfd".to_string(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What fell back from what was asked or preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FallbackKind {
    /// `auto` or an unavailable preference chose another backend.
    Backend,
    /// Direct I/O was not possible for (part of) a segment; it was read buffered.
    BufferedIo,
    /// Unaligned head/tail/offset bytes went through an aligned bounce block.
    BounceBlock,
    /// Huge folios were not available; memory was populated with small pages.
    SmallPages,
    /// The configured I/O engine (io_uring) was not available; reads used `pread`.
    IoEngine,
    /// The working memory the tunables asked for did not fit the load's limits (per load,
    /// the caller's cap, the global cap, available memory): fewer readers and bounce blocks.
    WorkingMemory,
    /// The file has fs-verity on, but its measurement could not stand for the segment's
    /// fs-verity digest (other tree parameters, an older kernel): the digest was computed.
    Digest,
}

/// One fallback and why it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub kind: FallbackKind,
    pub reason: String,
}

/// Timings and byte counts of one load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Allocating/populating the buffer memory: from the start of the allocation until all
    /// of it is allocated (dma-heap: ioctl + mmap; memfd: the last gather populated; udmabuf
    /// adds `UDMABUF_CREATE`).
    pub alloc: Duration,
    /// From the start to the first gather filled with file data.
    pub first_gather: Duration,
    /// Wall time from the start of the first read to the end of the last one.
    pub io: Duration,
    /// Summed time copier threads spent copying bounce buffers into the buffer.
    pub copy: Duration,
    /// Wall time of the whole load.
    pub total: Duration,
    /// File bytes read with O_DIRECT.
    pub bytes_direct: u64,
    /// File bytes read through the page cache.
    pub bytes_buffered: u64,
    /// File bytes that went through a bounce buffer (copied once more).
    pub bytes_bounced: u64,
    /// Working memory (bounce blocks, digest state) reserved and charged to the caller while
    /// the load ran, besides the buffer.
    pub working_bytes: u64,
    /// Time spent computing digests, summed over the threads (it overlaps the reads).
    pub digest: Duration,
    /// Every fallback, in the order they happened (deduplicated by kind and reason).
    pub fallbacks: Vec<Fallback>,
    /// What memory backs a memfd/udmabuf buffer: `hugetlb`, `shmem-thp` (huge folios) or
    /// `shmem` (small pages); empty for dma-heaps.
    pub memory: &'static str,
}

impl LoadStats {
    pub(crate) fn add_fallback(&mut self, kind: FallbackKind, reason: impl Into<String>) {
        let reason = reason.into();
        if !self
            .fallbacks
            .iter()
            .any(|f| f.kind == kind && f.reason == reason)
        {
            self.fallbacks.push(Fallback { kind, reason });
        }
    }
}
