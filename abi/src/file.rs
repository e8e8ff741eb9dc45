//! A caller's file: its open flags, positioned reads, and its page cache. The fd is used as
//! it is: never re-opened and its flags never changed (that would change the caller's open
//! file). Only [`clear_nonblocking`] changes flags, of a file the client library opened itself.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::mmap::ReadOnlyMapping;

/// Open-file status flags of an fd (`F_GETFL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFlags(pub libc::c_int);

impl OpenFlags {
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<OpenFlags> {
        // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
        crate::syscall::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }).map(OpenFlags)
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

/// Clears `O_NONBLOCK` on a file this process opened itself with it (an open that must not
/// block on a FIFO or a device): reads of the regular file it turned out to be then wait as
/// usual. Every other status flag (`O_DIRECT`) stays.
pub fn clear_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OpenFlags::of(fd)?.0 & !libc::O_NONBLOCK;
    // SAFETY: F_SETFL takes an int of status flags and changes only this open file's flags.
    crate::syscall::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Whether the descriptor is closed on `exec` (`FD_CLOEXEC` of `F_GETFD`).
pub fn is_close_on_exec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFD takes no argument and only reads the descriptor's flags.
    let flags = crate::syscall::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// `RWF_DONTCACHE` (include/uapi/linux/fs.h, Linux 6.14+): a buffered read that leaves no
/// page cache behind. Defined here because the `libc` versions AOSP carries lack it for
/// Android; older kernels refuse it with `EOPNOTSUPP` (or `EINVAL`).
pub const RWF_DONTCACHE: libc::c_int = 0x80;

#[cfg(target_os = "android")]
extern "C" {
    /// bionic's `preadv2` (API level 33; absent from the `libc` crate versions AOSP carries).
    fn preadv2(
        fd: libc::c_int,
        iov: *const libc::iovec,
        iovcnt: libc::c_int,
        offset: libc::off_t,
        flags: libc::c_int,
    ) -> libc::ssize_t;
}
#[cfg(not(target_os = "android"))]
use libc::preadv2;

/// One positioned read into `buf`: `pread`, or `preadv2` when `rwf_flags` (`RWF_*`) are
/// given. Retried on `EINTR`. Returns the bytes read: fewer than `buf.len()` only at end of
/// file or on a short read the caller continues.
pub fn pread(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    offset: u64,
    rwf_flags: libc::c_int,
) -> io::Result<usize> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    loop {
        let ret = if rwf_flags == 0 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes and exclusively ours
            // (a `&mut`) for the duration of the call.
            unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) }
        } else {
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: one iovec over `buf`, valid for writes and exclusively ours for the
            // duration of the call; `iov` outlives it too.
            unsafe { preadv2(fd.as_raw_fd(), &iov, 1, offset, rwf_flags) }
        };
        if let Ok(n) = usize::try_from(ret) {
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Drops the page cache of a file range (`POSIX_FADV_DONTNEED`; `len` 0 = to the end of the
/// file). Advisory: callers that already hold the bytes may ignore a failure.
pub fn drop_cached(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    };
    // SAFETY: posix_fadvise takes only integers.
    let ret =
        unsafe { libc::posix_fadvise(fd.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Bytes of `[0, len)` of a file resident in the page cache (`mincore` over a read-only
/// mapping). Used to measure page-cache growth.
pub fn resident_bytes(fd: BorrowedFd<'_>, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let mapping = ReadOnlyMapping::map(fd, len)?;
    let page = crate::system::page_size();
    let pages = mapping.residency()?;
    Ok(pages.iter().filter(|&&b| b & 1 != 0).count() as u64 * page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn file_with(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "dmaload-abi-file-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        let f = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        f
    }

    #[test]
    fn pread_reads_at_an_offset_and_stops_at_eof() {
        let f = file_with(b"0123456789");
        let mut buf = [0u8; 4];
        assert_eq!(pread(f.as_fd(), &mut buf, 3, 0).expect("pread"), 4);
        assert_eq!(&buf, b"3456");
        assert_eq!(pread(f.as_fd(), &mut buf, 8, 0).expect("pread"), 2);
        assert_eq!(pread(f.as_fd(), &mut buf, 10, 0).expect("pread"), 0);
        // preadv2 with a flag every kernel knows (RWF_HIPRI is ignored for buffered reads).
        assert_eq!(pread(f.as_fd(), &mut buf, 0, 1).expect("preadv2"), 4);
        assert_eq!(&buf, b"0123");
        let flags = OpenFlags::of(f.as_fd()).expect("F_GETFL");
        assert!(flags.readable() && !flags.direct() && !flags.is_path_only());
        assert!(
            is_close_on_exec(f.as_fd()).expect("F_GETFD"),
            "std opens O_CLOEXEC"
        );
        clear_nonblocking(f.as_fd()).expect("F_SETFL");
        assert_eq!(OpenFlags::of(f.as_fd()).expect("F_GETFL"), flags);
        drop_cached(f.as_fd(), 0, 0).expect("fadvise");
        assert!(resident_bytes(f.as_fd(), 10).expect("mincore") <= crate::system::page_size());
    }

    #[test]
    fn clear_nonblocking_keeps_the_other_flags() {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("dmaload-abi-nb-{}", std::process::id()));
        std::fs::write(&path, b"x").expect("write");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_DIRECT)
            .open(&path)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
            })
            .expect("open");
        std::fs::remove_file(&path).expect("unlink");
        let before = OpenFlags::of(f.as_fd()).expect("F_GETFL");
        assert_ne!(before.0 & libc::O_NONBLOCK, 0);
        clear_nonblocking(f.as_fd()).expect("F_SETFL");
        let after = OpenFlags::of(f.as_fd()).expect("F_GETFL");
        assert_eq!(after.0, before.0 & !libc::O_NONBLOCK);
    }

    #[test]
    fn rwf_dontcache_is_the_kernel_value() {
        // include/uapi/linux/fs.h of Linux 6.14; the host's libc crate carries it too.
        assert_eq!(RWF_DONTCACHE, 0x0000_0080);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert_eq!(RWF_DONTCACHE, libc::RWF_DONTCACHE);
    }
}
