//! dma-buf ioctls (<linux/dma-buf.h>): CPU access brackets (`DMA_BUF_IOCTL_SYNC`) and
//! `DMA_BUF_SET_NAME`, and [`ReadView`], a buffer's bytes read the way an app reads them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::ioctl;
use crate::mmap::ReadOnlyMapping;

/// `struct dma_buf_sync`.
#[repr(C)]
pub(crate) struct SyncArgs {
    pub(crate) flags: u64,
}

/// `DMA_BUF_SYNC_READ`.
pub const SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_RW`.
pub const SYNC_RW: u64 = SYNC_READ | SYNC_WRITE;
/// `DMA_BUF_SYNC_START`.
pub const SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`.
pub const SYNC_END: u64 = 4;

/// `_IOW('b', 0, struct dma_buf_sync)`.
pub(crate) const DMA_BUF_IOCTL_SYNC: ioctl::Request = ioctl::iow::<SyncArgs>(b'b', 0);
/// `DMA_BUF_SET_NAME_B`, `_IOW('b', 1, __u64)`: the name is passed by pointer.
pub(crate) const DMA_BUF_SET_NAME_B: ioctl::Request = ioctl::iow::<u64>(b'b', 1);
/// `DMA_BUF_NAME_LEN`: longest name the kernel keeps, including the NUL.
pub const NAME_LEN: usize = 32;

/// Issues `DMA_BUF_IOCTL_SYNC` with `flags` (`SYNC_START`/`SYNC_END` | an access). Retried
/// on `EINTR` and `EAGAIN`; a fd that is not a dma-buf answers `ENOTTY`.
pub fn sync(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    let args = SyncArgs { flags };
    loop {
        // SAFETY: the request number encodes `SyncArgs`, whose layout the tests pin against
        // the uapi header; the kernel only reads `args`, which lives across the call.
        let ret =
            unsafe { libc::ioctl(fd.as_raw_fd(), DMA_BUF_IOCTL_SYNC, &args as *const SyncArgs) };
        match crate::syscall::result(ret) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What the CPU does with a dma-buf mapping between the brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn flags(self) -> u64 {
        match self {
            Access::Read => SYNC_READ,
            Access::Write => SYNC_WRITE,
            Access::ReadWrite => SYNC_RW,
        }
    }
}

/// Starts CPU access to a dma-buf's mapping (`DMA_BUF_SYNC_START`).
pub fn begin_cpu_access(fd: BorrowedFd<'_>, access: Access) -> io::Result<()> {
    sync(fd, SYNC_START | access.flags())
}

/// Ends CPU access to a dma-buf's mapping (`DMA_BUF_SYNC_END`).
pub fn end_cpu_access(fd: BorrowedFd<'_>, access: Access) -> io::Result<()> {
    sync(fd, SYNC_END | access.flags())
}

/// A CPU access bracket: begun when made, ended when dropped (or by [`CpuAccess::finish`],
/// which reports the error that drop ignores: a failed end only costs cache maintenance).
#[derive(Debug)]
pub struct CpuAccess<'fd> {
    fd: BorrowedFd<'fd>,
    access: Access,
    open: bool,
}

impl<'fd> CpuAccess<'fd> {
    pub fn begin(fd: BorrowedFd<'fd>, access: Access) -> io::Result<CpuAccess<'fd>> {
        begin_cpu_access(fd, access)?;
        Ok(CpuAccess {
            fd,
            access,
            open: true,
        })
    }

    /// Like [`CpuAccess::begin`], but `None` for a buffer fd that is not a dma-buf (a memfd
    /// answers `ENOTTY`): plain memory needs no bracket.
    pub fn begin_if_dma_buf(fd: BorrowedFd<'fd>, access: Access) -> io::Result<Option<Self>> {
        match CpuAccess::begin(fd, access) {
            Ok(bracket) => Ok(Some(bracket)),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the access, reporting an error.
    pub fn finish(mut self) -> io::Result<()> {
        self.open = false;
        end_cpu_access(self.fd, self.access)
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = end_cpu_access(self.fd, self.access);
        }
    }
}

/// Names a dma-buf (shown in /sys/kernel/debug/dma_buf/bufinfo and in dma-buf dumps). NUL
/// bytes become `_`; the name is cut to the kernel's 31 bytes, at a character boundary.
pub fn set_name(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut cut = name.replace('\0', "_");
    let mut end = cut.len().min(NAME_LEN - 1);
    while !cut.is_char_boundary(end) {
        end -= 1;
    }
    cut.truncate(end);
    let name = CString::new(cut).map_err(io::Error::other)?;
    // SAFETY: the kernel copies at most NAME_LEN bytes from the NUL-terminated string, which
    // lives across the call.
    crate::syscall::retry(|| unsafe {
        libc::ioctl(fd.as_raw_fd(), DMA_BUF_SET_NAME_B, name.as_ptr())
    })?;
    Ok(())
}

/// A buffer fd's bytes as the CPU reads them: a read-only shared mapping and, for a dma-buf,
/// a read access bracket around its life. For apps, tools and tests reading a finished
/// buffer.
pub struct ReadView<'fd> {
    // Field order: the bracket ends before the mapping goes.
    bracket: Option<CpuAccess<'fd>>,
    mapping: ReadOnlyMapping,
}

impl<'fd> ReadView<'fd> {
    /// Maps the first `len` bytes of `fd` (a dma-buf or a memfd) and begins a read access.
    pub fn map(fd: BorrowedFd<'fd>, len: usize) -> io::Result<ReadView<'fd>> {
        let mapping = ReadOnlyMapping::map(fd, len)?;
        let bracket = CpuAccess::begin_if_dma_buf(fd, Access::Read)?;
        Ok(ReadView { bracket, mapping })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.mapping.as_slice()
    }

    /// True when the reads are bracketed with `DMA_BUF_IOCTL_SYNC` (a dma-buf).
    pub fn synced(&self) -> bool {
        self.bracket.is_some()
    }

    /// Ends the read access, reporting an error (dropping the view ignores it).
    pub fn finish(mut self) -> io::Result<()> {
        match self.bracket.take() {
            Some(bracket) => bracket.finish(),
            None => Ok(()),
        }
    }
}

/// Copies the first `len` bytes of a buffer fd out through a [`ReadView`].
pub fn copy_out(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let view = ReadView::map(fd, len)?;
    let bytes = view.as_bytes().to_vec();
    view.finish()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfd::Memfd;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_memfd_reads_back_without_a_bracket() {
        let memfd = Memfd::create("dmaload-abi-test", 4096).expect("memfd");
        let file = std::fs::File::from(memfd.as_fd().try_clone_to_owned().expect("dup"));
        file.write_all_at(b"weights!", 0).expect("write");
        let view = ReadView::map(memfd.as_fd(), 8).expect("map");
        assert_eq!(view.as_bytes(), b"weights!");
        assert!(!view.synced(), "a memfd is not a dma-buf");
        assert_eq!(
            sync(memfd.as_fd(), SYNC_START | SYNC_READ)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTTY)
        );
        view.finish().expect("finish");
        assert_eq!(copy_out(memfd.as_fd(), 8).expect("copy"), b"weights!");
        assert_eq!(
            ReadView::map(memfd.as_fd(), 0)
                .err()
                .and_then(|e| e.raw_os_error()),
            Some(libc::EINVAL)
        );
    }
}
