//! Reading a returned buffer back the way an app would: map the fd, bracket CPU access
//! with `DMA_BUF_IOCTL_SYNC` (dma-bufs), and read the bytes.

use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// `struct dma_buf_sync` of <linux/dma-buf.h>.
#[repr(C)]
pub struct DmaBufSync {
    pub flags: u64,
}

const DMA_BUF_SYNC_READ: u64 = 1;
const DMA_BUF_SYNC_START: u64 = 0;
const DMA_BUF_SYNC_END: u64 = 4;

nix::ioctl_write_ptr!(dma_buf_ioctl_sync, b'b', 0, DmaBufSync);

fn sync(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    let arg = DmaBufSync { flags };
    // SAFETY: `arg` is a valid `struct dma_buf_sync` for the duration of the call; the
    // kernel only reads it. A non-dma-buf fd makes the ioctl fail with ENOTTY.
    unsafe { dma_buf_ioctl_sync(fd.as_raw_fd(), &arg) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// What /proc says about an fd of this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// True for a dma-buf (fdinfo has `exp_name:`).
    pub dma_buf: bool,
    /// The exporter (`system`, `udmabuf`, ...) of a dma-buf.
    pub exporter: String,
    /// The dma-buf's name (`DMA_BUF_SET_NAME`), or the memfd's name.
    pub name: String,
    /// Size from fdinfo (dma-bufs), 0 otherwise.
    pub size: u64,
}

impl FdInfo {
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<FdInfo> {
        let raw = fd.as_raw_fd();
        let text = fs::read_to_string(format!("/proc/self/fdinfo/{raw}"))?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let mut info = FdInfo::default();
        if let Some(exp) = field("exp_name:") {
            info.dma_buf = true;
            info.exporter = exp;
            info.name = field("name:").unwrap_or_default();
            info.size = field("size:").and_then(|s| s.parse().ok()).unwrap_or(0);
        } else {
            // memfd: the link reads "/memfd:<name> (deleted)".
            let link = fs::read_link(format!("/proc/self/fd/{raw}"))?;
            let link = link.to_string_lossy();
            if let Some(rest) = link.strip_prefix("/memfd:") {
                info.name = rest.trim_end_matches(" (deleted)").to_string();
            }
        }
        Ok(info)
    }
}

/// A read-only shared mapping of a buffer, inside a CPU read access window (dma-bufs).
pub struct ReadView<'fd> {
    fd: BorrowedFd<'fd>,
    ptr: NonNull<libc::c_void>,
    len: usize,
    synced: bool,
}

impl<'fd> ReadView<'fd> {
    /// Maps `len` bytes of `fd` and, for dma-bufs, starts a CPU read access.
    pub fn map(fd: BorrowedFd<'fd>, len: usize) -> io::Result<ReadView<'fd>> {
        let size = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: a fresh shared read-only mapping chosen by the kernel: it aliases no Rust
        // object, and it is unmapped exactly once in Drop.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(io::Error::from)?;
        let mut view = ReadView {
            fd,
            ptr,
            len,
            synced: false,
        };
        match sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ) {
            Ok(()) => view.synced = true,
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {} // memfd: nothing to sync
            Err(e) => return Err(e),
        }
        Ok(view)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, alive until Drop; nobody writes to
        // the buffer while it is being checked (the service handed it out complete).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }

    /// True when the read access was bracketed with `DMA_BUF_IOCTL_SYNC` (a dma-buf).
    pub fn synced(&self) -> bool {
        self.synced
    }
}

impl Drop for ReadView<'_> {
    fn drop(&mut self) {
        if self.synced {
            let _ = sync(self.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
        }
        // SAFETY: `ptr`/`len` are the mapping made in `map`, unmapped only here.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}
