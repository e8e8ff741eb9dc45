//! The names that differ between AOSP libbinder_rs (feature `android`, built by Soong) and
//! rsbinder (every other build). Nothing else in the crate names a binder stack.

use dmaload_engine::LoadError;

// `adb shell cmd`: the NDK declaration and the opaque NDK types it is written over.
#[cfg(feature = "android")]
#[path = "ndk_shell_command.rs"]
mod ndk;
#[cfg(feature = "android")]
#[allow(non_camel_case_types)]
mod ndk_types {
    /// `AIBinder` of `<android/binder_ibinder.h>`, only ever behind a pointer.
    pub enum AIBinder {}
    /// `AIBinder_Class`, only ever behind a pointer.
    pub enum AIBinder_Class {}
    /// `binder_status_t` (`<android/binder_status.h>`).
    pub type binder_status_t = i32;
}

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

    /// Keeps a death link alive; dropping it ends the watch.
    pub struct DeathWatch(#[allow(dead_code)] std::sync::Arc<CancelOnDeath>);

    pub struct CancelOnDeath(dmaload_engine::CancelToken);

    impl rsbinder::DeathRecipient for CancelOnDeath {
        fn binder_died(&self, _who: &rsbinder::WIBinder) {
            self.0.cancel();
        }
    }

    /// Cancels `cancel` when the process behind `callback` dies (where the stack notices).
    pub fn cancel_on_death(
        callback: &Strong<dyn idl::ILoadCallback::ILoadCallback>,
        cancel: &dmaload_engine::CancelToken,
    ) -> Option<DeathWatch> {
        let recipient = std::sync::Arc::new(CancelOnDeath(cancel.clone()));
        callback.as_binder().link_to_death_arc(&recipient).ok()?;
        Some(DeathWatch(recipient))
    }

    /// `cmd` (SHELL_COMMAND_TRANSACTION) needs the plain in/out/err fds of the parcel, which
    /// rsbinder 0.12.0 does not let a service read; `dumpsys` and `debugDump` serve the views.
    pub fn install_shell_command(_service: &crate::service::DmaLoaderService) -> bool {
        false
    }

    impl Interface for crate::service::DmaLoaderService {
        /// `dumpsys vendor.dmaload.IDmaLoader/default [args]`.
        fn dump(&self, writer: &mut dyn std::io::Write, args: &[String]) -> rsbinder::Result<()> {
            writer
                .write_all(self.dump_text(calling_uid(), args).as_bytes())
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

    pub use shell::install_shell_command;

    /// Keeps a death link alive; dropping it ends the watch.
    pub struct DeathWatch(#[allow(dead_code)] binder::DeathRecipient);

    /// Cancels `cancel` when the process behind `callback` dies.
    pub fn cancel_on_death(
        callback: &Strong<dyn idl::ILoadCallback::ILoadCallback>,
        cancel: &dmaload_engine::CancelToken,
    ) -> Option<DeathWatch> {
        use binder::IBinder as _;
        let token = cancel.clone();
        let mut recipient = binder::DeathRecipient::new(move || token.cancel());
        callback.as_binder().link_to_death(&mut recipient).ok()?;
        Some(DeathWatch(recipient))
    }

    /// `adb shell cmd vendor.dmaload.IDmaLoader/default <view...>`: libbinder_rs leaves the
    /// class's shell-command handler unset, so set one through the NDK (LL-NDK
    /// `AIBinder_Class_setHandleShellCommand`); the NDK parses the parcel, admits only root
    /// and shell, and answers the result receiver with our return value.
    mod shell {
        use std::ffi::{c_char, c_int, CStr};
        use std::io::Write;
        use std::os::fd::BorrowedFd;
        use std::sync::OnceLock;

        use binder::binder_impl::Remotable;

        use crate::binder_stack::ndk;
        use crate::binder_stack::ndk_types::{binder_status_t, AIBinder, AIBinder_Class};
        use crate::service::DmaLoaderService;

        /// One service per process; the handler finds it here.
        static SERVICE: OnceLock<DmaLoaderService> = OnceLock::new();

        pub fn install_shell_command(service: &DmaLoaderService) -> bool {
            let _ = SERVICE.set(service.clone());
            let class: *const _ = super::idl::IDmaLoader::BnDmaLoader::get_class().into();
            // The handler's type is the NDK's (checked against the header: ndk_shell_command.rs).
            let handler: ndk::AIBinder_handleShellCommand = Some(handle);
            // SAFETY: `class` is the live, process-lifetime AIBinder_Class of BnDmaLoader;
            // the handler is a plain function valid for the whole process.
            unsafe {
                ndk::AIBinder_Class_setHandleShellCommand(class as *mut AIBinder_Class, handler)
            };
            true
        }

        unsafe extern "C" fn handle(
            _binder: *mut AIBinder,
            _in_fd: c_int,
            out_fd: c_int,
            _err_fd: c_int,
            argv: *mut *const c_char,
            argc: u32,
        ) -> binder_status_t {
            let argv: &[*const c_char] = if argv.is_null() || argc == 0 {
                &[]
            } else {
                // SAFETY: the NDK passes `argc` string pointers in `argv`, alive for the
                // duration of this call.
                unsafe { std::slice::from_raw_parts(argv, argc as usize) }
            };
            let mut args = Vec::with_capacity(argv.len());
            for &arg in argv {
                // SAFETY: each is a NUL-terminated string alive for the duration of this call
                // (the NDK's contract for shell commands).
                let arg = unsafe { CStr::from_ptr(arg) };
                args.push(arg.to_string_lossy().into_owned());
            }
            let Some(service) = SERVICE.get() else {
                return -libc::ENODEV;
            };
            // SAFETY: the NDK keeps `out_fd` open for the duration of this call.
            let out = unsafe { BorrowedFd::borrow_raw(out_fd) };
            let Ok(out) = out.try_clone_to_owned() else {
                return -libc::EBADF;
            };
            let mut out = std::fs::File::from(out);
            // The NDK admits only root and shell here; the uid decides what they see anyway.
            let uid = super::calling_uid();
            match out.write_all(service.dump_text(uid, &args).as_bytes()) {
                Ok(()) => 0,
                Err(_) => -libc::EIO,
            }
        }
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
                .write_all(self.dump_text(calling_uid(), &args).as_bytes())
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
