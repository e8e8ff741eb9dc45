//! dmaloadd's library: the `vendor.dmaload.IDmaLoader` AIDL service over the dmaload engine.
//!
//! A request goes: binder thread → [`service`] (caller identity, access, request conversion)
//! → engine (validate → reserve → allocate ⇉ gather ⇉ read) → [`buffers`] (the charge stays
//! until `releaseBuffer` or the owner's death) → reply with the buffer fd.
//! Everything that differs between AOSP libbinder_rs and rsbinder is in [`binder_stack`].

pub mod binder_stack;
pub mod buffers;
pub mod config;
pub mod counters;
pub mod dump;
pub mod progress_relay;
pub mod service;

pub use config::Config;

/// The instance name (the AIDL crate Soong generates has no such constant).
pub const SERVICE_NAME: &str = "vendor.dmaload.IDmaLoader/default";
pub use service::DmaLoaderService;
