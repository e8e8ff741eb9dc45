//! `/dev/udmabuf` (<linux/udmabuf.h>): wraps a sealed memfd into a dma-buf without copying.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::ioctl;

/// The device.
pub const DEVICE: &str = "/dev/udmabuf";
/// The module parameter holding the per-buffer size limit in MiB.
pub const SIZE_LIMIT_FILE: &str = "/sys/module/udmabuf/parameters/size_limit_mb";

/// `struct udmabuf_create`.
#[repr(C)]
pub(crate) struct CreateArgs {
    pub(crate) memfd: u32,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// `UDMABUF_FLAGS_CLOEXEC`.
pub(crate) const FLAGS_CLOEXEC: u32 = 0x01;
/// `_IOW('u', 0x42, struct udmabuf_create)`.
pub(crate) const UDMABUF_CREATE: ioctl::Request = ioctl::iow::<CreateArgs>(b'u', 0x42);

/// udmabuf's per-buffer size limit in bytes, read from `sysfs_file` (normally
/// [`SIZE_LIMIT_FILE`]); `None` if unknown.
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
    path: PathBuf,
}

impl Udmabuf {
    pub fn open(path: &Path) -> io::Result<Udmabuf> {
        // UDMABUF_CREATE needs only an open device; read-only access is enough.
        let device = OpenOptions::new().read(true).open(path)?;
        Ok(Udmabuf {
            device,
            path: path.to_path_buf(),
        })
    }

    /// Whether the device node at the path is still the one this descriptor opened (see
    /// [`crate::dma_heap::DmaHeap::is_current`]).
    pub fn is_current(&self) -> bool {
        crate::dma_heap::same_node(&self.device, &self.path)
    }

    /// Wraps `size` bytes of a memfd sealed with `F_SEAL_SHRINK` (and not `F_SEAL_WRITE`)
    /// into a close-on-exec dma-buf; an unsealed memfd is `EINVAL`.
    pub fn create(&self, memfd: BorrowedFd<'_>, size: u64) -> io::Result<OwnedFd> {
        let args = CreateArgs {
            memfd: u32::try_from(memfd.as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?,
            flags: FLAGS_CLOEXEC,
            offset: 0,
            size,
        };
        // SAFETY: the request number encodes `CreateArgs`, whose layout the tests pin
        // against the uapi header; the kernel only reads `args`, which lives across the call.
        let raw = crate::syscall::retry(|| unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                UDMABUF_CREATE,
                &args as *const CreateArgs,
            )
        })?;
        // SAFETY: on success the ioctl returns a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}
