//! dmaload client: the safe Rust API of the dmaload service and, in [`ffi`], the C API of
//! `libdmaload` (`include/dmaload.h`, Soong module `libdmaload`).
//!
//! ```no_run
//! use dmaload::{LoadRequest, Loader};
//! # fn main() -> dmaload::Result<()> {
//! let loader = Loader::connect(None)?; // $DMALOAD_ENDPOINT, $DMALOAD_SOCKET, binder, socket
//! let mut request = LoadRequest::new();
//! // Opened with O_DIRECT (buffered fallback where the file system refuses it).
//! request.add_file("/data/local/tmp/model.bin".as_ref(), 0, 0, 0)?;
//! let mut buffer = loader.load(&request)?;
//! println!("{} bytes in {} ({} ns)", buffer.size(), buffer.backend(), buffer.stats().total_ns);
//! let dmabuf_fd = buffer.take_fd(); // ours to keep or close
//! loader.release_buffer(buffer.buffer_id())?; // end the service's charge when done
//! # drop(dmabuf_fd);
//! # Ok(())
//! # }
//! ```
//!
//! Asynchronous loads report progress and completion through [`LoadEvents`] and can be
//! cancelled through their [`PendingLoad`]. Errors are [`Error`]: the service's stable
//! [`ErrorCode`]s (docs/DESIGN.md) or an OS errno from this side.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod binder_stack;
pub mod buffer;
pub mod dmabuf;
pub mod endpoint;
pub mod error;
pub mod ffi;
pub mod file;
pub mod loader;
pub mod request;
pub mod task;

pub use buffer::{BackendInfo, LoadStats, LoadedBuffer, Reuse};
pub use dmaload_abi::digest::{Digest, DigestAlgorithm, DIGEST_BYTES};
pub use endpoint::Endpoint;
pub use error::{Error, ErrorCode, Result};
pub use loader::{Loader, Usage};
pub use request::{IoMode, LoadRequest};
pub use task::{LoadEvents, NoEvents, PendingLoad};
