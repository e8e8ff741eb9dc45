//! Reading a loaded buffer from the CPU: a read-only mapping bracketed by
//! `DMA_BUF_IOCTL_SYNC` so caches are coherent with what the device side wrote.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::error::{Error, Result};

const DMA_BUF_SYNC_READ: u64 = 1 << 0;
const DMA_BUF_SYNC_START: u64 = 0;
const DMA_BUF_SYNC_END: u64 = 1 << 2;

#[repr(C)]
struct DmaBufSync {
    flags: u64,
}

// DMA_BUF_IOCTL_SYNC = _IOW('b', 0, struct dma_buf_sync)
nix::ioctl_write_ptr!(dma_buf_ioctl_sync, b'b', 0, DmaBufSync);

/// Issues `DMA_BUF_IOCTL_SYNC`. Returns false if `fd` is not a dma-buf (a plain memfd from
/// the memfd backend answers `ENOTTY`), which needs no syncing.
fn sync(fd: BorrowedFd<'_>, flags: u64) -> Result<bool> {
    let arg = DmaBufSync { flags };
    loop {
        // SAFETY: `fd` is a valid open descriptor for the duration of the call and `arg` is a
        // properly initialized `struct dma_buf_sync` the kernel only reads.
        match unsafe { dma_buf_ioctl_sync(std::os::fd::AsRawFd::as_raw_fd(&fd), &arg) } {
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(nix::errno::Errno::ENOTTY) => return Ok(false),
            Err(e) => return Err(Error::os(e as i32, format!("DMA_BUF_IOCTL_SYNC: {e}"))),
        }
    }
}

/// A read-only CPU mapping of a loaded buffer, synced for reading while it lives.
pub struct MappedBuffer<'fd> {
    fd: BorrowedFd<'fd>,
    addr: NonNull<std::ffi::c_void>,
    len: usize,
    synced: bool,
}

impl<'fd> MappedBuffer<'fd> {
    /// Maps `len` bytes of `fd` (a dma-buf or memfd) for reading.
    pub fn map(fd: BorrowedFd<'fd>, len: u64) -> Result<MappedBuffer<'fd>> {
        let len_usize = usize::try_from(len).map_err(|_| {
            Error::os(
                libc::EOVERFLOW,
                format!("buffer of {len} bytes cannot be mapped"),
            )
        })?;
        let Some(nonzero) = NonZeroUsize::new(len_usize) else {
            return Err(Error::os(libc::EINVAL, "cannot map an empty buffer"));
        };
        // SAFETY: a fresh shared read-only mapping chosen by the kernel (no fixed address), so
        // it aliases no Rust object; it is unmapped exactly once in Drop.
        let addr = unsafe {
            mmap(
                None,
                nonzero,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| Error::os(e as i32, format!("mmap of the loaded buffer: {e}")))?;
        let mut mapped = MappedBuffer {
            fd,
            addr,
            len: len_usize,
            synced: false,
        };
        mapped.synced = sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)?;
        Ok(mapped)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`; the buffer
        // is not written through this process while mapped read-only.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for MappedBuffer<'_> {
    fn drop(&mut self) {
        if self.synced {
            if let Err(e) = sync(self.fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ) {
                log::warn!("ending CPU access to the buffer: {e}");
            }
        }
        // SAFETY: `addr`/`len` are exactly the mapping created in `map`, unmapped only here.
        if let Err(e) = unsafe { munmap(self.addr, self.len) } {
            log::warn!("munmap of the loaded buffer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_memfd_and_reads_its_bytes() {
        let fd =
            nix::sys::memfd::memfd_create(c"dmaload-test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .expect("memfd");
        let mut file = std::fs::File::from(fd);
        file.write_all(b"weights!").expect("write");
        let mapped = MappedBuffer::map(file.as_fd(), 8).expect("map");
        assert_eq!(mapped.as_bytes(), b"weights!");
        assert!(!mapped.synced, "a memfd is not a dma-buf");
        assert_eq!(
            MappedBuffer::map(file.as_fd(), 0).err().map(|e| e.c_code()),
            Some(-libc::EINVAL)
        );
    }
}
