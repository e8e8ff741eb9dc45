//! The one libbinder_ndk function dmaloadd calls that libbinder_rs does not wrap:
//! `AIBinder_Class_setHandleShellCommand` (`<android/binder_ibinder.h>`, API 30, LL-NDK), which
//! routes `adb shell cmd <service> ...` to a class's handler. libbinder_rs keeps its bindgen
//! crate private to frameworks/native, so the declaration is written here, over the opaque
//! NDK types of `super::ndk_types`. tools/android-check/check-ndk-decls compiles this file
//! with those types taken from the bindings AOSP generates from the NDK headers: a
//! declaration that differs from the header fails there.

use std::ffi::{c_char, c_int};

use super::ndk_types::{binder_status_t, AIBinder, AIBinder_Class};

/// `AIBinder_handleShellCommand`: the handler gets the binder, the caller's stdin, stdout and
/// stderr (owned by the NDK for the call) and `argc` NUL-terminated arguments.
#[allow(non_camel_case_types)]
pub type AIBinder_handleShellCommand = Option<
    unsafe extern "C" fn(
        binder: *mut AIBinder,
        in_: c_int,
        out: c_int,
        err: c_int,
        argv: *mut *const c_char,
        argc: u32,
    ) -> binder_status_t,
>;

extern "C" {
    /// Sets the shell-command handler of a class (libbinder_rs defines it as none).
    pub fn AIBinder_Class_setHandleShellCommand(
        clazz: *mut AIBinder_Class,
        handle_shell_command: AIBinder_handleShellCommand,
    );
}
