//! The interfaces every dmaload crate shares, each defined once: the kernel's (dma-heap,
//! dma-buf, udmabuf, memfd, memory mappings, file reads, statx, fs-verity, pidfd, eventfd and
//! poll) as small typed wrappers, and dmaload's own stable ones (the error-code table, the
//! digest algorithms, the I/O modes, a request's segment, the service instance name, the size grammar of flags and config files,
//! the escaping of caller text).
//!
//! It holds no binder and no server code: the client library that apps load links it, and so
//! do the engine, the service, the CLI, the benchmark and the tests. It depends on `libc`
//! only, and uses no `libc` item that the `libc` versions of AOSP lack (see [`file::pread`]).
//!
//! All `unsafe` of the project's kernel calls lives in this crate's modules, one commented
//! block per operation; every pointer into mapped memory is computed in [`mmap`].

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod digest;
pub mod dma_buf;
pub mod dma_heap;
pub mod error;
pub mod event;
pub mod file;
pub mod io_mode;
mod ioctl;
pub mod memfd;
pub mod meminfo;
pub mod mmap;
pub mod pidfd;
pub mod rlimit;
pub mod segment;
pub mod size;
pub mod statx;
mod syscall;
pub mod system;
pub mod text;
pub mod udmabuf;
pub mod verity;

#[cfg(all(test, not(target_os = "android")))]
mod uapi_tests;

pub use digest::{Digest, DigestAlgorithm};
pub use error::ErrorCode;
pub use size::{parse_size, SizeError};
pub use text::Untrusted;

/// The name the service registers under, on Android's service manager and on Linux service
/// managers alike: the AIDL interface and the instance, `<interface>/default`.
pub const SERVICE_INSTANCE: &str = "vendor.dmaload.IDmaLoader/default";
