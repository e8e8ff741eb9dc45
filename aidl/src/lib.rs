//! Rust bindings of the stable `vendor.dmaload` AIDL interface for the rsbinder stack.
//!
//! The generated module mirrors the AIDL package (`vendor::dmaload`); the re-exports below are
//! what clients and the service use. On Android, Soong's `vendor.dmaload-V1-rust` crate
//! provides the same names for libbinder_rs.

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
    BackendInfo::BackendInfo, CallerUsage::CallerUsage, ErrorCode::ErrorCode,
    FileSegment::FileSegment, IDmaLoader, ILoadCallback, ILoadHandle, IoMode::IoMode,
    LoadRequest::LoadRequest, LoadResult::LoadResult, LoadStats::LoadStats,
    ServiceState::ServiceState, Tunables::Tunables,
};
