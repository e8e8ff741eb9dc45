//! The names that differ between AOSP libbinder_rs (feature `android`, built by Soong) and
//! rsbinder (every other build). Nothing else in the crate names a binder stack.

use dmaload_engine::LoadError;

#[cfg(not(feature = "android"))]
mod imp {
    pub use dmaload_aidl::aidl as idl;
    pub use rsbinder::{BinderResult, Interface, ParcelFileDescriptor, Status, Strong};

    pub fn service_specific(code: i32, message: &str) -> Status {
        Status::new_service_specific_error(code, Some(message.to_string()))
    }
    pub fn calling_uid() -> u32 {
        rsbinder::get_calling_uid()
    }
    pub fn calling_pid() -> i32 {
        rsbinder::get_calling_pid()
    }
    pub fn new_handle_binder<T: idl::ILoadHandle::ILoadHandle + 'static>(
        handle: T,
    ) -> Strong<dyn idl::ILoadHandle::ILoadHandle> {
        idl::ILoadHandle::BnLoadHandle::new_binder(handle)
    }
    pub fn new_loader_binder<T: idl::IDmaLoader::IDmaLoader + 'static>(
        loader: T,
    ) -> Strong<dyn idl::IDmaLoader::IDmaLoader> {
        idl::IDmaLoader::BnDmaLoader::new_binder(loader)
    }

    impl Interface for crate::service::DmaLoaderService {
        /// `dumpsys vendor.dmaload.IDmaLoader/default [args]`.
        fn dump(&self, writer: &mut dyn std::io::Write, args: &[String]) -> rsbinder::Result<()> {
            writer
                .write_all(self.debug_text(args).as_bytes())
                .map_err(|_| rsbinder::StatusCode::FailedTransaction)
        }
    }
}

#[cfg(feature = "android")]
mod imp {
    pub use binder::{Interface, ParcelFileDescriptor, Status, Strong};
    pub use dmaload_aidl::aidl::vendor::dmaload as idl;
    pub type BinderResult<T> = binder::Result<T>;

    pub fn service_specific(code: i32, message: &str) -> Status {
        Status::new_service_specific_error_str(code, Some(message))
    }
    pub fn calling_uid() -> u32 {
        binder::ThreadState::get_calling_uid()
    }
    pub fn calling_pid() -> i32 {
        binder::ThreadState::get_calling_pid()
    }
    pub fn new_handle_binder<T: idl::ILoadHandle::ILoadHandle + 'static>(
        handle: T,
    ) -> Strong<dyn idl::ILoadHandle::ILoadHandle> {
        idl::ILoadHandle::BnLoadHandle::new_binder(handle, binder::BinderFeatures::default())
    }
    pub fn new_loader_binder<T: idl::IDmaLoader::IDmaLoader + 'static>(
        loader: T,
    ) -> Strong<dyn idl::IDmaLoader::IDmaLoader> {
        idl::IDmaLoader::BnDmaLoader::new_binder(loader, binder::BinderFeatures::default())
    }

    impl Interface for crate::service::DmaLoaderService {
        /// `dumpsys vendor.dmaload.IDmaLoader/default [args]`.
        fn dump(
            &self,
            writer: &mut dyn std::io::Write,
            args: &[&std::ffi::CStr],
        ) -> Result<(), binder::StatusCode> {
            let args: Vec<String> = args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            writer
                .write_all(self.debug_text(&args).as_bytes())
                .map_err(|_| binder::StatusCode::FAILED_TRANSACTION)
        }
    }
}

pub use imp::*;

/// The one place an engine/service error becomes a binder status: a ServiceSpecificException
/// with the stable code and the message.
pub fn status_from(err: &LoadError) -> Status {
    service_specific(err.code.code(), &err.message)
}
