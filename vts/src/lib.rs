//! dmaload's vendor test suite: what a device maker runs to decide whether to trust the
//! service. The library holds what the test groups share: the case runner that prints one
//! summary line per group, deterministic file content, fixtures (files of every size class,
//! bad fds of every kind), read-back of buffers through `mmap` + `DMA_BUF_IOCTL_SYNC`, the
//! reference model of request validation, and fd/memory probes.
//!
//! The groups themselves are in `tests/vts.rs`. Groups that need binder, dma-heaps or
//! udmabuf run only in the virtual device (`vts/vm/`), and report "not run" elsewhere.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod buffer;
pub mod fixtures;
pub mod harness;
pub mod model;
pub mod parcel;
pub mod pattern;
pub mod probe;
pub mod validation;

/// True inside the virtual device (`vts/vm/run` sets `DMALOAD_GUEST=1`).
pub fn in_virtual_device() -> bool {
    std::env::var_os("DMALOAD_GUEST").is_some_and(|v| v == "1")
}

/// True where the device groups can run: the virtual device, or an Android device (the
/// Soong build, run by Tradefed).
pub fn on_device() -> bool {
    cfg!(target_os = "android") || in_virtual_device()
}
