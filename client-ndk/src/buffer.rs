//! What a load returns, and what the service reports about itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::dmabuf::MappedBuffer;
use crate::error::{Error, Result};
use crate::request::IoMode;
use dmaload_abi::digest::{Digest, DigestAlgorithm};

/// Timings (nanoseconds) and byte counts of one load, as the service measured them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub total_ns: u64,
    pub alloc_ns: u64,
    pub first_gather_ns: u64,
    pub io_ns: u64,
    pub copy_ns: u64,
    pub direct_bytes: u64,
    pub buffered_bytes: u64,
    pub bounced_bytes: u64,
    /// Time the service spent computing digests, summed over its threads (overlapping the
    /// reads); 0 without digests.
    pub digest_ns: u64,
    /// Working memory (bounce blocks, digest state) the load reserved beside the buffer and
    /// held while it ran, charged to the caller then.
    pub working_bytes: u64,
    /// Every fallback as `"<kind>: <reason>"`.
    pub fallbacks: Vec<String>,
}

/// Where a buffer came from (a shareable request may get one it shares; values as the AIDL
/// `Reuse` and the C API's `ADmaLoadReuse`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reuse {
    /// Loaded for this request.
    #[default]
    None,
    /// An identical load was in flight; this request waited for it.
    Coalesced,
    /// A live buffer another request of this uid holds: no I/O, no new memory.
    Shared,
    /// A buffer the service kept warm after its release: no I/O, no new memory.
    Cached,
}

impl Reuse {
    pub fn from_c(value: i32) -> Option<Reuse> {
        match value {
            0 => Some(Reuse::None),
            1 => Some(Reuse::Coalesced),
            2 => Some(Reuse::Shared),
            3 => Some(Reuse::Cached),
            _ => None,
        }
    }

    pub fn to_c(self) -> i32 {
        match self {
            Reuse::None => 0,
            Reuse::Coalesced => 1,
            Reuse::Shared => 2,
            Reuse::Cached => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reuse::None => "none",
            Reuse::Coalesced => "coalesced",
            Reuse::Shared => "shared",
            Reuse::Cached => "cached",
        }
    }
}

/// A filled buffer. Owns the buffer fd until [`LoadedBuffer::take_fd`].
#[derive(Debug)]
pub struct LoadedBuffer {
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) size: u64,
    pub(crate) buffer_id: i64,
    pub(crate) backend: String,
    pub(crate) name: String,
    pub(crate) io_mode: IoMode,
    pub(crate) stats: LoadStats,
    pub(crate) opened_direct: bool,
    pub(crate) reuse: Reuse,
    pub(crate) digests: Vec<Digest>,
}

impl LoadedBuffer {
    /// The buffer fd while this object still owns it.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Takes ownership of the buffer fd (once).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The service's id of the buffer, for [`crate::Loader::release_buffer`].
    pub fn buffer_id(&self) -> i64 {
        self.buffer_id
    }

    /// `heap:<name>`, `udmabuf` or `memfd`.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the file was read: `Direct`, `Buffered`, or `Auto` when both were used.
    pub fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Whether the buffer was loaded for this request or reused (shareable requests).
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// The digests the request asked for (and expected: those matched), by segment and
    /// algorithm.
    pub fn digests(&self) -> &[Digest] {
        &self.digests
    }

    /// Segment `segment`'s `algorithm` digest, if the request asked for it.
    pub fn digest(&self, segment: usize, algorithm: DigestAlgorithm) -> Option<&Digest> {
        self.digests
            .iter()
            .find(|d| d.segment == segment && d.algorithm == algorithm)
    }

    /// False when a path-based segment had to be opened without O_DIRECT.
    pub fn opened_direct(&self) -> bool {
        self.opened_direct
    }

    /// Maps the first `len` bytes for reading (synced with `DMA_BUF_IOCTL_SYNC`).
    pub fn map(&self, len: u64) -> Result<MappedBuffer<'_>> {
        let fd = self
            .fd()
            .ok_or_else(|| Error::os(libc::EBADF, "the buffer fd was taken"))?;
        MappedBuffer::map(fd, len.min(self.size))
    }
}

/// One buffer backend the service offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The name a request uses: `heap:<name>`, `udmabuf` or `memfd`.
    pub name: String,
    pub allowed: bool,
    pub max_buffer_bytes: u64,
    pub dma_buf: bool,
    pub detail: String,
}
