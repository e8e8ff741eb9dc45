//! Kernel interfaces, one small module each, with typed fds and commented `unsafe`.
//! Nothing outside this module calls `libc` with raw pointers or raw fds.

pub mod dma_buf;
pub mod dma_heap;
pub mod file;
pub mod memfd;
pub mod mmap;
pub mod statx;
pub mod udmabuf;
#[cfg(feature = "io-uring")]
pub mod uring;

use std::io;

/// Page size of this system.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Number of CPUs this process may run on (read once: the standard library reads cgroup
/// files for it, which would cost every load a dozen syscalls).
pub fn cpu_count() -> u32 {
    static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    })
}

/// Turns a `-1`-on-error libc return into `io::Result`.
pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries an ioctl-like call while it fails with EINTR.
pub(crate) fn retry_eintr(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// `_IOC` encoding of ioctl request numbers (asm-generic layout used by x86 and arm).
pub(crate) const fn ioc(dir: u64, kind: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64
}
pub(crate) const IOC_WRITE: u64 = 1;
pub(crate) const IOC_READ_WRITE: u64 = 3;
