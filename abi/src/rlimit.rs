//! The open-file limit (`RLIMIT_NOFILE`): every segment of a request arrives as an fd.

use std::io;

/// Soft and hard limit of open files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: libc::rlim_t,
    pub hard: libc::rlim_t,
}

/// This process's open-file limits.
pub fn open_files() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit` into `limit`, which outlives the call.
    crate::syscall::result(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    Ok(OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raises the soft limit to the hard limit (an unprivileged process may). Returns the limits
/// now in force.
pub fn raise_open_files() -> io::Result<OpenFiles> {
    let now = open_files()?;
    if now.soft >= now.hard {
        return Ok(now);
    }
    let limit = libc::rlimit {
        rlim_cur: now.hard,
        rlim_max: now.hard,
    };
    // SAFETY: setrlimit reads one `struct rlimit` from `limit`, which outlives the call.
    crate::syscall::result(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    Ok(OpenFiles {
        soft: now.hard,
        hard: now.hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit() {
        let before = open_files().expect("getrlimit");
        assert!(before.soft <= before.hard);
        let after = raise_open_files().expect("setrlimit");
        assert_eq!(after.soft, before.hard);
        assert_eq!(open_files().expect("getrlimit"), after);
    }
}
