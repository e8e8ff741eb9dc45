//! The caller's file: checks on its fd and positioned reads. The fd is used as it is: never
//! re-opened and its flags never changed (that would change the client's open file).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Open-file status flags of an fd (`F_GETFL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFlags(pub libc::c_int);

impl OpenFlags {
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<OpenFlags> {
        // SAFETY: F_GETFL only reads the descriptor's flags.
        super::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }).map(OpenFlags)
    }

    pub fn is_path_only(self) -> bool {
        self.0 & libc::O_PATH != 0
    }

    pub fn readable(self) -> bool {
        matches!(self.0 & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
    }

    pub fn direct(self) -> bool {
        self.0 & libc::O_DIRECT != 0
    }
}

/// One `pread` (or `preadv2` with `flags`), retried on EINTR. Returns the bytes read: fewer
/// than asked only at end of file or on a short read the caller continues.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes for the duration of the call and not be
/// accessed by anyone else meanwhile.
pub unsafe fn pread_raw(
    fd: BorrowedFd<'_>,
    dst: *mut u8,
    len: usize,
    offset: u64,
    rwf_flags: libc::c_int,
) -> io::Result<usize> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    loop {
        let ret = if rwf_flags == 0 {
            // SAFETY: guaranteed by this function's contract.
            unsafe { libc::pread(fd.as_raw_fd(), dst.cast(), len, offset) }
        } else {
            let iov = libc::iovec {
                iov_base: dst.cast(),
                iov_len: len,
            };
            // SAFETY: one iovec over memory valid per this function's contract.
            unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, offset, rwf_flags) }
        };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Drops the page cache of a file range that was read buffered (advisory; errors ignored by
/// callers because the data is already in the buffer).
pub fn drop_cached(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    };
    // SAFETY: posix_fadvise only takes integers.
    let ret = unsafe { libc::posix_fadvise(fd.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// `RWF_DONTCACHE` (Linux 6.14+): buffered reads that leave no page cache behind.
pub const RWF_DONTCACHE: libc::c_int = libc::RWF_DONTCACHE;

/// Bytes of `[0, len)` of a file resident in the page cache (`mincore` over a read-only
/// mapping). Used to measure page-cache growth.
pub fn resident_bytes(fd: BorrowedFd<'_>, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let page = super::page_size();
    let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a new read-only shared mapping at an address of the kernel's choice.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut vec = vec![0u8; len.div_ceil(page as usize)];
    // SAFETY: `addr..addr+len` is our mapping; `vec` has one byte per page.
    let ret = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: unmapping exactly the mapping made above; nothing refers to it.
    unsafe { libc::munmap(addr, len) };
    if ret != 0 {
        return Err(err);
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page)
}
