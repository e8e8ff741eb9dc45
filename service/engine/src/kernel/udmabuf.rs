//! `/dev/udmabuf`: wraps a sealed memfd into a dma-buf without copying.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

#[repr(C)]
struct CreateArgs {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

const UDMABUF_FLAGS_CLOEXEC: u32 = 0x01;
const UDMABUF_CREATE: u64 = super::ioc(
    super::IOC_WRITE,
    b'u',
    0x42,
    std::mem::size_of::<CreateArgs>(),
);

/// udmabuf's per-buffer size limit in bytes, from its module parameter (`None` if unknown).
pub fn size_limit(sysfs_file: &Path) -> Option<u64> {
    let mib: u64 = std::fs::read_to_string(sysfs_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    mib.checked_mul(1 << 20)
}

/// The opened udmabuf device.
#[derive(Debug)]
pub struct Udmabuf {
    device: File,
}

impl Udmabuf {
    pub fn open(path: &Path) -> io::Result<Udmabuf> {
        // UDMABUF_CREATE needs only an open device; read-only access is enough.
        let device = OpenOptions::new().read(true).open(path)?;
        Ok(Udmabuf { device })
    }

    /// Wraps `size` bytes of a memfd (sealed with `F_SEAL_SHRINK`, not `F_SEAL_WRITE`) into a
    /// close-on-exec dma-buf.
    pub fn create(&self, memfd: BorrowedFd<'_>, size: u64) -> io::Result<OwnedFd> {
        let args = CreateArgs {
            memfd: memfd.as_raw_fd() as u32,
            flags: UDMABUF_FLAGS_CLOEXEC,
            offset: 0,
            size,
        };
        // SAFETY: the request number matches `CreateArgs`; `args` outlives the call.
        let raw = super::retry_eintr(|| unsafe {
            libc::ioctl(self.device.as_raw_fd(), UDMABUF_CREATE as _, &args)
        })?;
        // SAFETY: on success the ioctl returns a new fd that only we own.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}
