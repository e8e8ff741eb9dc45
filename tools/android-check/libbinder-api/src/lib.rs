//! The public API of AOSP's `libbinder_rs` (crate `binder`, frameworks/native/libs/binder/rust,
//! Android 15) that dmaload's Android build uses, declared with AOSP's names and signatures so
//! that `cargo check` can type-check the code Soong compiles with `features: ["android"]`.
//!
//! This is a declaration, not an implementation: no body here does binder work, and nothing
//! built against it is ever run (the android-check only type-checks). Keep every signature
//! as AOSP has it; add an item only after reading it in AOSP's sources. What is absent here
//! on purpose is what libbinder_rs lacks (e.g. `Status::message()`, `get_calling_uid()` at
//! the crate root), so code that reaches for the rsbinder spelling fails the check.

#![allow(clippy::all, non_camel_case_types, dead_code)]

use std::ffi::CStr;
use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

/// Only type-checked, never run.
macro_rules! declared {
    () => {
        unreachable!("libbinder-api is a declaration of AOSP's API for type checks")
    };
}

/// `binder::Result`: a binder call's outcome.
pub type Result<T> = std::result::Result<T, Status>;

/// Low-level status codes (`android_c_interface_StatusCode`, values from utils/Errors.h).
#[repr(i32)]
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum StatusCode {
    OK = 0,
    UNKNOWN_ERROR = i32::MIN,
    NO_MEMORY = -12,
    INVALID_OPERATION = -38,
    BAD_VALUE = -22,
    BAD_TYPE = i32::MIN + 1,
    NAME_NOT_FOUND = -2,
    PERMISSION_DENIED = -1,
    NO_INIT = -19,
    ALREADY_EXISTS = -17,
    DEAD_OBJECT = -32,
    FAILED_TRANSACTION = i32::MIN + 2,
    BAD_INDEX = -75,
    NOT_ENOUGH_DATA = -61,
    WOULD_BLOCK = -11,
    TIMED_OUT = -110,
    UNKNOWN_TRANSACTION = -74,
    FDS_NOT_ALLOWED = i32::MIN + 7,
    UNEXPECTED_NULL = i32::MIN + 8,
}

/// Binder exception codes (`android_c_interface_ExceptionCode`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ExceptionCode {
    NONE = 0,
    SECURITY = -1,
    BAD_PARCELABLE = -2,
    ILLEGAL_ARGUMENT = -3,
    NULL_POINTER = -4,
    ILLEGAL_STATE = -5,
    NETWORK_MAIN_THREAD = -6,
    UNSUPPORTED_OPERATION = -7,
    SERVICE_SPECIFIC = -8,
    PARCELABLE = -9,
    TRANSACTION_FAILED = -129,
}

/// An `AStatus`: a transaction failure, an exception, or a service-specific error.
pub struct Status(());

// AOSP: Send + Sync (the AStatus is immutable once made).
impl Status {
    pub fn ok() -> Self {
        declared!()
    }
    pub fn new_service_specific_error(_err: i32, _message: Option<&CStr>) -> Status {
        declared!()
    }
    pub fn new_service_specific_error_str<T: AsRef<str>>(_err: i32, _message: Option<T>) -> Status {
        declared!()
    }
    pub fn new_exception(_exception: ExceptionCode, _message: Option<&CStr>) -> Status {
        declared!()
    }
    pub fn new_exception_str<T: AsRef<str>>(
        _exception: ExceptionCode,
        _message: Option<T>,
    ) -> Status {
        declared!()
    }
    pub fn is_ok(&self) -> bool {
        declared!()
    }
    pub fn get_description(&self) -> String {
        declared!()
    }
    pub fn exception_code(&self) -> ExceptionCode {
        declared!()
    }
    pub fn transaction_error(&self) -> StatusCode {
        declared!()
    }
    pub fn service_specific_error(&self) -> i32 {
        declared!()
    }
}

impl std::error::Error for Status {}
impl fmt::Display for Status {
    fn fmt(&self, _f: &mut fmt::Formatter) -> fmt::Result {
        declared!()
    }
}
impl fmt::Debug for Status {
    fn fmt(&self, _f: &mut fmt::Formatter) -> fmt::Result {
        declared!()
    }
}
impl PartialEq for Status {
    fn eq(&self, _other: &Status) -> bool {
        declared!()
    }
}
impl Eq for Status {}
impl From<StatusCode> for Status {
    fn from(_status: StatusCode) -> Status {
        declared!()
    }
}
impl From<ExceptionCode> for Status {
    fn from(_code: ExceptionCode) -> Status {
        declared!()
    }
}

/// A strong reference to a binder object (`AIBinder`).
#[derive(Clone)]
pub struct SpIBinder(());

/// A weak reference to a binder object.
#[derive(Clone)]
pub struct WpIBinder(());

/// The calls every binder object answers (`IBinder`); fallible ones return a
/// `Result<_, StatusCode>` (libbinder_rs's internal `error::Result`).
pub trait IBinder {
    fn link_to_death(
        &mut self,
        recipient: &mut DeathRecipient,
    ) -> std::result::Result<(), StatusCode>;
    fn unlink_to_death(
        &mut self,
        recipient: &mut DeathRecipient,
    ) -> std::result::Result<(), StatusCode>;
    fn ping_binder(&mut self) -> std::result::Result<(), StatusCode>;
    fn is_binder_alive(&self) -> bool;
}

impl IBinder for SpIBinder {
    fn link_to_death(
        &mut self,
        _recipient: &mut DeathRecipient,
    ) -> std::result::Result<(), StatusCode> {
        declared!()
    }
    fn unlink_to_death(
        &mut self,
        _recipient: &mut DeathRecipient,
    ) -> std::result::Result<(), StatusCode> {
        declared!()
    }
    fn ping_binder(&mut self) -> std::result::Result<(), StatusCode> {
        declared!()
    }
    fn is_binder_alive(&self) -> bool {
        declared!()
    }
}

/// A death notification callback; libbinder holds it weakly, so the owner keeps it alive.
pub struct DeathRecipient(Box<dyn Fn() + Send + Sync>);

impl DeathRecipient {
    pub fn new<F>(callback: F) -> DeathRecipient
    where
        F: Fn() + Send + Sync + 'static,
    {
        DeathRecipient(Box::new(callback))
    }
}

/// What every binder interface (local or proxy) is.
pub trait Interface: Send + Sync {
    fn as_binder(&self) -> SpIBinder {
        declared!()
    }
    fn dump(
        &self,
        _writer: &mut dyn std::io::Write,
        _args: &[&CStr],
    ) -> std::result::Result<(), StatusCode> {
        Ok(())
    }
}

/// Interfaces that can be made from a binder object (the generated `dyn IFoo`).
pub trait FromIBinder: Interface {
    fn try_from(ibinder: SpIBinder) -> std::result::Result<Strong<Self>, StatusCode>;
}

/// A strong reference to a binder interface.
pub struct Strong<I: FromIBinder + ?Sized>(Box<I>);

impl<I: FromIBinder + ?Sized> Strong<I> {
    pub fn new(binder: Box<I>) -> Self {
        Strong(binder)
    }
}

impl<I: FromIBinder + ?Sized> Clone for Strong<I> {
    fn clone(&self) -> Self {
        declared!()
    }
}

impl<I: FromIBinder + ?Sized> Deref for Strong<I> {
    type Target = I;
    fn deref(&self) -> &I {
        &self.0
    }
}

impl<I: FromIBinder + fmt::Debug + ?Sized> fmt::Debug for Strong<I> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Flags for a new local binder (`BnFoo::new_binder(inner, features)`).
#[derive(Default)]
pub struct BinderFeatures {
    pub set_requesting_sid: bool,
}

/// Rust version of android.os.ParcelFileDescriptor: an owned fd.
#[derive(Debug)]
pub struct ParcelFileDescriptor(OwnedFd);

impl ParcelFileDescriptor {
    pub fn new<F: Into<OwnedFd>>(fd: F) -> Self {
        Self(fd.into())
    }
    pub fn try_clone(&self) -> std::result::Result<Self, std::io::Error> {
        Ok(Self(self.0.try_clone()?))
    }
}
impl AsRef<OwnedFd> for ParcelFileDescriptor {
    fn as_ref(&self) -> &OwnedFd {
        &self.0
    }
}
impl From<ParcelFileDescriptor> for OwnedFd {
    fn from(fd: ParcelFileDescriptor) -> OwnedFd {
        fd.0
    }
}
impl AsRawFd for ParcelFileDescriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
impl IntoRawFd for ParcelFileDescriptor {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}
impl AsFd for ParcelFileDescriptor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl PartialEq for ParcelFileDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.as_raw_fd() == other.as_raw_fd()
    }
}
impl Eq for ParcelFileDescriptor {}

/// The process's binder thread pool.
pub struct ProcessState;

impl ProcessState {
    pub fn start_thread_pool() {
        declared!()
    }
    pub fn set_thread_pool_max_thread_count(_num_threads: u32) {
        declared!()
    }
    pub fn join_thread_pool() {
        declared!()
    }
}

/// The calling thread's transaction.
pub struct ThreadState;

impl ThreadState {
    pub fn get_calling_uid() -> libc::uid_t {
        declared!()
    }
    pub fn get_calling_pid() -> libc::pid_t {
        declared!()
    }
    pub fn is_handling_transaction() -> bool {
        declared!()
    }
}

// The service manager (service.rs in AOSP): lookups return `Result<_, StatusCode>`.
pub fn add_service(_identifier: &str, _binder: SpIBinder) -> std::result::Result<(), StatusCode> {
    declared!()
}
pub fn check_service(_name: &str) -> Option<SpIBinder> {
    declared!()
}
pub fn wait_for_service(_name: &str) -> Option<SpIBinder> {
    declared!()
}
pub fn check_interface<T: FromIBinder + ?Sized>(
    _name: &str,
) -> std::result::Result<Strong<T>, StatusCode> {
    declared!()
}
pub fn wait_for_interface<T: FromIBinder + ?Sized>(
    _name: &str,
) -> std::result::Result<Strong<T>, StatusCode> {
    declared!()
}
pub fn is_declared(_interface: &str) -> std::result::Result<bool, StatusCode> {
    declared!()
}
pub fn get_declared_instances(_interface: &str) -> std::result::Result<Vec<String>, StatusCode> {
    declared!()
}

/// Advanced APIs the generated code and a few callers use.
pub mod binder_impl {
    use super::StatusCode;

    /// A value that can be written to a parcel.
    pub trait Serialize {
        fn serialize(&self, parcel: &mut BorrowedParcel<'_>)
            -> std::result::Result<(), StatusCode>;
    }

    /// A value that can be read from a parcel.
    pub trait Deserialize: Sized {
        fn deserialize(parcel: &BorrowedParcel<'_>) -> std::result::Result<Self, StatusCode>;
    }

    macro_rules! primitives {
        ($($t:ty),*) => {$(
            impl Serialize for $t {
                fn serialize(&self, _parcel: &mut BorrowedParcel<'_>) -> std::result::Result<(), StatusCode> {
                    declared!()
                }
            }
            impl Deserialize for $t {
                fn deserialize(_parcel: &BorrowedParcel<'_>) -> std::result::Result<Self, StatusCode> {
                    declared!()
                }
            }
        )*};
    }
    primitives!(bool, i8, u8, i32, u32, i64, u64, f32, f64, String);

    impl Serialize for str {
        fn serialize(
            &self,
            _parcel: &mut BorrowedParcel<'_>,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }
    impl<T: Serialize> Serialize for [T] {
        fn serialize(
            &self,
            _parcel: &mut BorrowedParcel<'_>,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }
    impl<T: Serialize> Serialize for Vec<T> {
        fn serialize(
            &self,
            _parcel: &mut BorrowedParcel<'_>,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }
    impl<T: Deserialize> Deserialize for Vec<T> {
        fn deserialize(_parcel: &BorrowedParcel<'_>) -> std::result::Result<Self, StatusCode> {
            declared!()
        }
    }
    impl<T: Serialize> Serialize for Option<T> {
        fn serialize(
            &self,
            _parcel: &mut BorrowedParcel<'_>,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }
    impl<T: Deserialize> Deserialize for Option<T> {
        fn deserialize(_parcel: &BorrowedParcel<'_>) -> std::result::Result<Self, StatusCode> {
            declared!()
        }
    }
    impl Serialize for super::ParcelFileDescriptor {
        fn serialize(
            &self,
            _parcel: &mut BorrowedParcel<'_>,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }
    impl Deserialize for super::ParcelFileDescriptor {
        fn deserialize(_parcel: &BorrowedParcel<'_>) -> std::result::Result<Self, StatusCode> {
            declared!()
        }
    }

    /// A parcel owned by Rust code.
    pub struct Parcel(());

    /// A borrowed parcel.
    pub struct BorrowedParcel<'a>(std::marker::PhantomData<&'a mut Parcel>);

    impl Parcel {
        pub fn new() -> Parcel {
            declared!()
        }
        pub fn write<S: Serialize + ?Sized>(
            &mut self,
            _parcelable: &S,
        ) -> std::result::Result<(), StatusCode> {
            declared!()
        }
        pub fn read<D: Deserialize>(&self) -> std::result::Result<D, StatusCode> {
            declared!()
        }
        pub fn get_data_size(&self) -> i32 {
            declared!()
        }
        pub fn get_data_position(&self) -> i32 {
            declared!()
        }
        /// # Safety
        /// `pos` must be within the parcel's data.
        pub unsafe fn set_data_position(&self, _pos: i32) -> std::result::Result<(), StatusCode> {
            declared!()
        }
    }

    impl Default for Parcel {
        fn default() -> Self {
            Self::new()
        }
    }

    /// The NDK class of a generated binder type (`AIBinder_Class`).
    pub struct InterfaceClass(());

    impl From<InterfaceClass> for *const crate::unstable_api::AIBinder_Class {
        fn from(_class: InterfaceClass) -> Self {
            declared!()
        }
    }

    /// Implemented by the generated native types (`BnFoo`).
    pub trait Remotable: Send + Sync + 'static {
        fn get_descriptor() -> &'static str;
        fn get_class() -> InterfaceClass;
    }
}

/// Raw NDK types some callers name.
pub mod unstable_api {
    /// `AIBinder_Class` (opaque).
    #[repr(C)]
    pub struct AIBinder_Class {
        _private: [u8; 0],
    }
}
