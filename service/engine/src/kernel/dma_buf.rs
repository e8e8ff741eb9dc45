//! dma-buf ioctls: CPU access brackets (`DMA_BUF_IOCTL_SYNC`) and `DMA_BUF_SET_NAME`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

#[repr(C)]
struct SyncArgs {
    flags: u64,
}

const SYNC_READ: u64 = 1;
const SYNC_WRITE: u64 = 2;
const SYNC_START: u64 = 0;
const SYNC_END: u64 = 4;
const DMA_BUF_IOCTL_SYNC: u64 = super::ioc(super::IOC_WRITE, b'b', 0, 8);
/// `DMA_BUF_SET_NAME_B` (the 64-bit pointer variant of `DMA_BUF_SET_NAME`).
const DMA_BUF_SET_NAME: u64 = super::ioc(super::IOC_WRITE, b'b', 1, 8);
/// `DMA_BUF_NAME_LEN` including the NUL.
pub const NAME_LEN: usize = 32;

fn sync(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    let args = SyncArgs { flags };
    // SAFETY: the request number matches `SyncArgs`; `args` outlives the call.
    super::retry_eintr(|| unsafe { libc::ioctl(fd.as_raw_fd(), DMA_BUF_IOCTL_SYNC as _, &args) })?;
    Ok(())
}

/// Starts CPU writes to a dma-buf mapping (`DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE`).
pub fn begin_cpu_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_START | SYNC_WRITE)
}

/// Ends CPU writes to a dma-buf mapping (`DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE`).
pub fn end_cpu_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_END | SYNC_WRITE)
}

/// Starts CPU reads and writes of a dma-buf mapping (`DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW`).
pub fn begin_cpu_read_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_START | SYNC_READ | SYNC_WRITE)
}

/// Ends CPU reads and writes of a dma-buf mapping (`DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW`).
pub fn end_cpu_read_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_END | SYNC_READ | SYNC_WRITE)
}

/// Brackets CPU writes to a dma-buf mapping: `begin` now, `end` when dropped (or `finish`).
#[derive(Debug)]
pub struct CpuWriteAccess<'fd> {
    fd: BorrowedFd<'fd>,
    open: bool,
}

impl<'fd> CpuWriteAccess<'fd> {
    pub fn begin(fd: BorrowedFd<'fd>) -> io::Result<CpuWriteAccess<'fd>> {
        sync(fd, SYNC_START | SYNC_WRITE)?;
        Ok(CpuWriteAccess { fd, open: true })
    }

    /// Ends the CPU access, reporting errors (drop ignores them).
    pub fn finish(mut self) -> io::Result<()> {
        self.open = false;
        sync(self.fd, SYNC_END | SYNC_WRITE)
    }
}

impl Drop for CpuWriteAccess<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = sync(self.fd, SYNC_END | SYNC_WRITE);
        }
    }
}

/// Names a dma-buf (shown in /sys/kernel/debug/dma_buf/bufinfo and dmabuf dumps); the
/// name is cut to the kernel's 31 bytes.
pub fn set_name(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut cut = name.replace('\0', "_");
    while cut.len() >= NAME_LEN {
        cut.pop();
    }
    let name = CString::new(cut).map_err(io::Error::other)?;
    // SAFETY: the kernel copies at most NAME_LEN bytes from a NUL-terminated string that
    // outlives the call.
    super::retry_eintr(|| unsafe {
        libc::ioctl(fd.as_raw_fd(), DMA_BUF_SET_NAME as _, name.as_ptr())
    })?;
    Ok(())
}

/// Starts CPU reads of a dma-buf mapping.
pub fn begin_cpu_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_START | SYNC_READ)
}

/// Ends CPU reads of a dma-buf mapping.
pub fn end_cpu_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync(fd, SYNC_END | SYNC_READ)
}

/// Copies `len` bytes of a buffer fd (dma-buf or memfd) out through a mapping, bracketing
/// the reads with `DMA_BUF_IOCTL_SYNC` when it is a dma-buf. For checks and tools.
pub fn copy_out(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mapping = super::mmap::Mapping::map_shared(fd, len)?;
    // memfds answer ENOTTY: no bracket needed.
    let bracketed = match begin_cpu_read(fd) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => false,
        Err(e) => return Err(e),
    };
    // SAFETY: nobody writes this fresh mapping while we copy from it.
    let bytes = unsafe { mapping.slice(0, len) }.to_vec();
    if bracketed {
        end_cpu_read(fd)?;
    }
    Ok(bytes)
}
