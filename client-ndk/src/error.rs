//! The client's one error type.
//!
//! Two kinds of failure reach a client: the service refused or failed a request (a stable
//! [`ErrorCode`], docs/DESIGN.md), or something on this side failed before or while talking
//! to the service (an OS error: opening a file, connecting, a broken transport). The C API
//! returns the first as the positive code and the second as a negative errno, so one `int`
//! carries both.

use std::fmt;

/// Stable service error codes (docs/DESIGN.md): the table the engine reports, the service
/// sends and the AIDL `ErrorCode` and the C API's `DMALOAD_E_*` repeat by number.
pub use dmaload_abi::ErrorCode;

/// A failed client call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// One of the stable codes: the service's answer, or the library's own check of the same
    /// rule before sending (`TOO_MANY_FILES`, `BAD_FD` for a path that is no regular file).
    #[error("{code}: {message}")]
    Service { code: ErrorCode, message: String },
    /// A failure on this side or in the transport, as a positive errno.
    #[error("{message}")]
    Os { errno: i32, message: String },
}

impl Error {
    pub fn service(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Service {
            code,
            message: message.into(),
        }
    }

    pub fn os(errno: i32, message: impl Into<String>) -> Error {
        Error::Os {
            errno,
            message: message.into(),
        }
    }

    /// An OS error with what was being done, e.g. `open /data/model.bin`.
    pub fn from_io(what: impl fmt::Display, err: &std::io::Error) -> Error {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        Error::os(errno, format!("{what}: {err}"))
    }

    /// The service code, if the service produced this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Service { code, .. } => Some(*code),
            Error::Os { .. } => None,
        }
    }

    /// The C API's value: the positive service code, or a negative errno.
    pub fn c_code(&self) -> i32 {
        match self {
            Error::Service { code, .. } => code.code(),
            Error::Os { errno, .. } => -errno.abs().max(1),
        }
    }

    /// The detailed message (without the code's name).
    pub fn message(&self) -> &str {
        match self {
            Error::Service { message, .. } | Error::Os { message, .. } => message,
        }
    }
}

/// A message for any C API return value: a service code, a negative errno, or 0.
pub fn describe_code(code: i32) -> String {
    if code == 0 {
        return "success".to_string();
    }
    if let Some(c) = ErrorCode::from_code(code) {
        return c.description().to_string();
    }
    if code < 0 {
        if let Some(errno) = code.checked_neg() {
            return std::io::Error::from_raw_os_error(errno).to_string();
        }
    }
    format!("unknown dmaload status {code}")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_aidl_enum() {
        use crate::binder_stack::idl::ErrorCode::ErrorCode as Aidl;
        let aidl = [
            (Aidl::INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            (Aidl::BAD_FD, "BAD_FD"),
            (Aidl::RANGE, "RANGE"),
            (Aidl::BAD_SEGMENTS, "BAD_SEGMENTS"),
            (Aidl::UNKNOWN_BACKEND, "UNKNOWN_BACKEND"),
            (Aidl::BACKEND_NOT_ALLOWED, "BACKEND_NOT_ALLOWED"),
            (Aidl::TOO_LARGE, "TOO_LARGE"),
            (Aidl::GLOBAL_CAP, "GLOBAL_CAP"),
            (Aidl::CALLER_CAP, "CALLER_CAP"),
            (Aidl::BUSY, "BUSY"),
            (Aidl::NO_MEMORY, "NO_MEMORY"),
            (Aidl::IO, "IO"),
            (Aidl::FILE_CHANGED, "FILE_CHANGED"),
            (Aidl::CANCELLED, "CANCELLED"),
            (Aidl::PERMISSION_DENIED, "PERMISSION_DENIED"),
            (Aidl::NOT_FOUND, "NOT_FOUND"),
            (Aidl::INTERNAL, "INTERNAL"),
            (Aidl::TOO_MANY_FILES, "TOO_MANY_FILES"),
            (Aidl::DIGEST_MISMATCH, "DIGEST_MISMATCH"),
        ];
        assert_eq!(aidl.len(), ErrorCode::ALL.len());
        for (wire, name) in aidl {
            let ours = ErrorCode::from_code(wire.0).expect("known code");
            assert_eq!(ours.name(), name);
        }
    }

    #[test]
    fn header_defines_every_code() {
        let header = include_str!("../include/dmaload.h");
        for code in ErrorCode::ALL {
            let line = format!("DMALOAD_E_{} = {},", code.name(), code.code());
            assert!(header.contains(&line), "dmaload.h lacks `{line}`");
        }
    }

    #[test]
    fn c_codes_keep_service_and_os_errors_apart() {
        assert_eq!(Error::service(ErrorCode::Range, "x").c_code(), 3);
        assert_eq!(Error::os(libc::ENOENT, "x").c_code(), -libc::ENOENT);
        assert!(describe_code(-libc::ENOENT).contains("No such file"));
        assert!(describe_code(9).starts_with("caller cap"));
        assert_eq!(describe_code(0), "success");
        assert!(describe_code(1000).contains("unknown"));
        assert!(describe_code(i32::MIN).contains("unknown"));
    }
}
