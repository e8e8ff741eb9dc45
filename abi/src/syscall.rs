//! Turning libc's `-1` + `errno` convention into `io::Result`.

use std::io;

/// `Err(errno)` for a negative return, the value otherwise.
pub(crate) fn result(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Calls `f` again while it fails with `EINTR`.
pub(crate) fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match result(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
