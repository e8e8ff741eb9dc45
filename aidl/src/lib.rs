//! Rust bindings of the stable `vendor.dmaload` AIDL interface for the rsbinder stack.
//!
//! The generated module mirrors the AIDL package (`vendor::dmaload`); the re-exports below are
//! what clients and the service use. On Android, Soong's `vendor.dmaload-V<N>-rust` crate
//! provides the same names for libbinder_rs. [`v1`] holds the frozen version 1, so tests can
//! run a version 1 client against the current service and the current client against a
//! version 1 service.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]
#![allow(
    clippy::all,
    missing_docs,
    non_snake_case,
    non_camel_case_types,
    unused_imports
)]

rsbinder::include_aidl!("vendor_dmaload");

/// The generated `vendor.dmaload` package, module per AIDL type (`aidl::LoadResult::LoadResult`).
pub use vendor::dmaload as aidl;

pub use vendor::dmaload::{
    BackendInfo::BackendInfo, CallerUsage::CallerUsage, Digest::Digest,
    DigestAlgorithm::DigestAlgorithm, ErrorCode::ErrorCode, FileSegment::FileSegment, IDmaLoader,
    ILoadCallback, ILoadHandle, IoMode::IoMode, LoadRequest::LoadRequest, LoadResult::LoadResult,
    LoadStats::LoadStats, Reuse::Reuse, ServiceState::ServiceState, Tunables::Tunables,
};

/// The frozen version 1 of `vendor.dmaload` (`aidl_api/vendor.dmaload/1`).
pub mod v1 {
    rsbinder::include_aidl!("vendor_dmaload_v1");

    /// The generated version 1 package, module per AIDL type.
    pub use vendor::dmaload as aidl;
}
