//! The engine's one error type: a stable [`ErrorCode`] (the table of `dmaload_abi`, which
//! the AIDL `ErrorCode` and the C API's `DMALOAD_E_*` repeat) and a message that says what to
//! do.

pub use dmaload_abi::ErrorCode;

/// An engine error: a stable code and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LoadError {
    pub code: ErrorCode,
    pub message: String,
}

impl LoadError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> LoadError {
        LoadError {
            code,
            message: message.into(),
        }
    }
}

/// Shorthand constructors, so call sites read as the condition they report.
macro_rules! load_err {
    ($code:ident, $($arg:tt)*) => {
        $crate::error::LoadError::new($crate::error::ErrorCode::$code, format!($($arg)*))
    };
}
pub(crate) use load_err;
