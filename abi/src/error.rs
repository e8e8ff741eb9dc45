//! The stable error codes. Numbers never change meaning; new codes are appended. The engine
//! reports them, the service sends them (the AIDL `ErrorCode` repeats them by number), the
//! client returns them (the C API's `DMALOAD_E_*`): this table is the one they all use
//! (docs/DESIGN.md).

use std::fmt;

/// Stable error codes. Numbers never change meaning; new codes are appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    /// A request field is malformed (negative/zero where not allowed, bad tunable).
    InvalidArgument = 1,
    /// A segment fd is closed, not a regular file, `O_PATH`, or not open for reading.
    BadFd = 2,
    /// File range past EOF or `offset + length` overflows.
    Range = 3,
    /// No segments, too many, overlapping in the buffer, or beyond the buffer.
    BadSegments = 4,
    /// Heap/backend name not known or not present on this device.
    UnknownBackend = 5,
    /// Backend present but disabled by the service configuration.
    BackendNotAllowed = 6,
    /// Buffer larger than the maximum buffer size.
    TooLarge = 7,
    /// Would exceed the service's global byte cap.
    GlobalCap = 8,
    /// Would exceed this caller's byte cap.
    CallerCap = 9,
    /// Too many concurrent loads (service-wide or for this caller).
    Busy = 10,
    /// The kernel refused the allocation.
    NoMemory = 11,
    /// A read failed.
    Io = 12,
    /// The file shrank/was truncated during the load.
    FileChanged = 13,
    /// The load was cancelled.
    Cancelled = 14,
    /// The caller is not allowed to use the service.
    PermissionDenied = 15,
    /// Unknown load handle / buffer id.
    NotFound = 16,
    /// A bug; the message has details.
    Internal = 17,
    /// More distinct files in one request than the interface carries (`IDmaLoader.MAX_FILES`),
    /// or, one fd per segment, more segment fds than the service takes.
    TooManyFiles = 18,
    /// A digest the request expected differs from the one the load computed (or the kernel's
    /// fs-verity measurement): nothing was handed out.
    DigestMismatch = 19,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidArgument,
        ErrorCode::BadFd,
        ErrorCode::Range,
        ErrorCode::BadSegments,
        ErrorCode::UnknownBackend,
        ErrorCode::BackendNotAllowed,
        ErrorCode::TooLarge,
        ErrorCode::GlobalCap,
        ErrorCode::CallerCap,
        ErrorCode::Busy,
        ErrorCode::NoMemory,
        ErrorCode::Io,
        ErrorCode::FileChanged,
        ErrorCode::Cancelled,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Internal,
        ErrorCode::TooManyFiles,
        ErrorCode::DigestMismatch,
    ];

    /// The stable number (AIDL / C API value).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code with this stable number, if any.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The stable name, as in the DESIGN.md table (`INVALID_ARGUMENT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::BadFd => "BAD_FD",
            ErrorCode::Range => "RANGE",
            ErrorCode::BadSegments => "BAD_SEGMENTS",
            ErrorCode::UnknownBackend => "UNKNOWN_BACKEND",
            ErrorCode::BackendNotAllowed => "BACKEND_NOT_ALLOWED",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::GlobalCap => "GLOBAL_CAP",
            ErrorCode::CallerCap => "CALLER_CAP",
            ErrorCode::Busy => "BUSY",
            ErrorCode::NoMemory => "NO_MEMORY",
            ErrorCode::Io => "IO",
            ErrorCode::FileChanged => "FILE_CHANGED",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::TooManyFiles => "TOO_MANY_FILES",
            ErrorCode::DigestMismatch => "DIGEST_MISMATCH",
        }
    }

    /// What the code means and what the caller should do (docs/DESIGN.md). Static, so the C
    /// API can hand it out without ownership questions.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => {
                "invalid argument: a request field is malformed (negative or zero where not allowed, bad tunable)"
            }
            ErrorCode::BadFd => {
                "bad file descriptor: a segment fd is closed, not a regular file, O_PATH, or not open for reading"
            }
            ErrorCode::Range => "range: the file range is past end of file or offset + length overflows",
            ErrorCode::BadSegments => {
                "bad segments: no segments, too many, overlapping in the buffer, or beyond the buffer"
            }
            ErrorCode::UnknownBackend => {
                "unknown backend: the heap/backend name is not known or not present on this device; list heaps first"
            }
            ErrorCode::BackendNotAllowed => {
                "backend not allowed: the backend is present but disabled by the service configuration"
            }
            ErrorCode::TooLarge => "too large: the buffer is larger than the service's maximum buffer size",
            ErrorCode::GlobalCap => {
                "global cap: the load would exceed the service's global byte cap; retry later or release buffers"
            }
            ErrorCode::CallerCap => {
                "caller cap: the load would exceed this caller's byte cap; release buffers first"
            }
            ErrorCode::Busy => "busy: too many concurrent loads (service-wide or for this caller); retry later",
            ErrorCode::NoMemory => "no memory: the kernel refused the buffer allocation",
            ErrorCode::Io => "I/O error: a read of the file failed (the message names the errno)",
            ErrorCode::FileChanged => "file changed: the file shrank or was truncated during the load",
            ErrorCode::Cancelled => "cancelled: the load was cancelled (by the caller or its death)",
            ErrorCode::PermissionDenied => "permission denied: the caller is not allowed to use the service",
            ErrorCode::NotFound => "not found: unknown load handle or buffer id",
            ErrorCode::Internal => "internal error in the service: a bug; please report it with the message",
            ErrorCode::TooManyFiles => {
                "too many files: the request names more distinct files than one request carries (64); put several segments of one file behind one file, or split the load"
            }
            ErrorCode::DigestMismatch => {
                "digest mismatch: the loaded bytes do not have the digest the request expected; nothing was handed out: check that the file is the one expected"
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.code(), i as i32 + 1);
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(18), Some(ErrorCode::TooManyFiles));
        assert_eq!(ErrorCode::from_code(19), Some(ErrorCode::DigestMismatch));
        assert_eq!(ErrorCode::from_code(20), None);
        assert_eq!(ErrorCode::FileChanged.code(), 13);
        assert_eq!(ErrorCode::Internal.name(), "INTERNAL");
    }
}
