//! dmaload's load engine: given file descriptors and ranges, it produces a buffer fd (a
//! dma-buf where the kernel has them) holding exactly those bytes, as fast as the storage
//! allows. No binder in here: the service, the CLI and the benchmark all call [`Engine`].
//!
//! Pipeline: plan → admit (caps, working memory) → allocate ⇉ read ⇉ copy → hand out, as
//! steps that the load's own thread and the engine's worker threads run.
//! * udmabuf / memfd: a sealed memfd is populated gather by gather (huge folios where the
//!   kernel allows) while each populated gather is read straight into it.
//! * dma-heap: direct reads fill a ring of aligned bounce blocks while the allocation runs;
//!   the blocks are copied into the mapping between `DMA_BUF_IOCTL_SYNC` start/end.
//!
//! The kernel interfaces themselves (dma-heap, dma-buf, udmabuf, memfd, mappings, reads) are
//! `dmaload_abi`'s; only the io_uring ring, a host-only feature, is wrapped here.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod cancel;
mod engine;
mod error;
mod limits;
mod pipeline;
mod request;
mod stats;
#[cfg(feature = "io-uring")]
pub mod uring;

pub use cancel::{CancelToken, Wake};
pub use dmaload_abi::meminfo::MemInfo;
pub use engine::{BackendInfo, Engine, LoadedBuffer};
pub use error::{ErrorCode, LoadError};
pub use limits::{Charge, EngineConfig, Usage};
pub use request::{
    BackendChoice, Caller, FdSegment, IoEngine, IoMode, LoadRequest, NoProgress, Progress, Segment,
    Tunables,
};
pub use stats::{Backend, Fallback, FallbackKind, LoadStats};

// The service shares one engine between binder threads.
const _: () = {
    const fn assert_sync_send<T: Sync + Send>() {}
    assert_sync_send::<Engine>();
};
