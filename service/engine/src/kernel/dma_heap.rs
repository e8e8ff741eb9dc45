//! dma-heaps (`/dev/dma_heap/<name>`): listing and `DMA_HEAP_IOCTL_ALLOC`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `struct dma_heap_allocation_data` (uapi/linux/dma-heap.h).
#[repr(C)]
struct AllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

const DMA_HEAP_IOCTL_ALLOC: u64 = super::ioc(
    super::IOC_READ_WRITE,
    b'H',
    0,
    std::mem::size_of::<AllocationData>(),
);

/// Names of the heaps in `dir`, sorted.
pub fn list_heaps(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// An opened dma-heap.
#[derive(Debug)]
pub struct DmaHeap {
    device: File,
    path: PathBuf,
}

impl DmaHeap {
    pub fn open(dir: &Path, name: &str) -> io::Result<DmaHeap> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let path = dir.join(name);
        let device = File::open(&path)?; // std opens with O_CLOEXEC
        Ok(DmaHeap { device, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Allocates a dma-buf of `len` bytes (read-write, close-on-exec). The kernel zeroes the
    /// memory; this is the slow part the pipeline overlaps with reads.
    pub fn allocate(&self, len: u64) -> io::Result<OwnedFd> {
        let mut data = AllocationData {
            len,
            fd: 0,
            fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
            heap_flags: 0,
        };
        // SAFETY: the request number matches the struct layout; `data` outlives the call.
        super::retry_eintr(|| unsafe {
            libc::ioctl(
                self.device.as_fd().as_raw_fd(),
                DMA_HEAP_IOCTL_ALLOC as _,
                &mut data,
            )
        })?;
        // SAFETY: on success the kernel installed a new fd that only we own.
        Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
    }
}
