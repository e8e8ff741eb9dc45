//! dmaloadd's library: the `vendor.dmaload.IDmaLoader` AIDL service over the dmaload engine.
//!
//! A request goes: binder thread → [`service`] (caller identity, access, request conversion)
//! → engine (plan → admit → allocate ⇉ read ⇉ copy) → [`buffers`] (the charge stays
//! until `releaseBuffer` or the holder's death) → reply with the buffer fd.
//! Everything that differs between AOSP libbinder_rs and rsbinder is in [`binder_stack`].

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod binder_stack;
pub mod buffers;
pub mod config;
pub mod counters;
pub mod dump;
pub mod panic_log;
pub mod progress_relay;
pub mod reuse;
pub mod service;

pub use config::Config;
pub use service::DmaLoaderService;
