//! dmaload client: the safe Rust API of the dmaload service and, in `ffi`, the C API of
//! `libdmaload` (`include/dmaload.h`).

pub mod buffer;
pub mod dmabuf;
pub mod endpoint;
pub mod error;
pub mod file;
pub mod request;
pub mod task;

pub use buffer::{HeapInfo, LoadStats, LoadedBuffer};
pub use endpoint::Endpoint;
pub use error::{Error, ErrorCode, Result};
pub use request::{IoMode, LoadRequest};
pub use task::{LoadEvents, NoEvents, PendingLoad};
