//! dma-heaps (`/dev/dma_heap/<name>`, <linux/dma-heap.h>): listing and
//! `DMA_HEAP_IOCTL_ALLOC`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::ioctl;

/// Where the kernel puts the heap devices.
pub const DEVICE_DIR: &str = "/dev/dma_heap";

/// `struct dma_heap_allocation_data`.
#[repr(C)]
pub(crate) struct AllocationData {
    pub(crate) len: u64,
    pub(crate) fd: u32,
    pub(crate) fd_flags: u32,
    pub(crate) heap_flags: u64,
}

/// `_IOWR('H', 0x0, struct dma_heap_allocation_data)`.
pub(crate) const DMA_HEAP_IOCTL_ALLOC: ioctl::Request = ioctl::iowr::<AllocationData>(b'H', 0);

/// Names of the heaps in `dir` (normally [`DEVICE_DIR`]), sorted; none if it is unreadable.
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
    /// Opens heap `name` in `dir`. A name that is not a plain file name is `ENOENT`.
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

    /// Whether the device node at the heap's path is still the one this descriptor opened: a
    /// heap that went away (driver unloaded, node removed or replaced) is opened afresh by a
    /// user that keeps heaps open.
    pub fn is_current(&self) -> bool {
        same_node(&self.device, &self.path)
    }

    /// Allocates a dma-buf of `len` bytes (read-write, close-on-exec). The kernel zeroes the
    /// memory, which is the slow part of a load the pipeline overlaps with reads.
    pub fn allocate(&self, len: u64) -> io::Result<OwnedFd> {
        let mut data = AllocationData {
            len,
            fd: 0,
            fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
            heap_flags: 0,
        };
        // SAFETY: the request number encodes `AllocationData`, whose layout the tests pin
        // against the uapi header; `data` lives across the call.
        crate::syscall::retry(|| unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                DMA_HEAP_IOCTL_ALLOC,
                &mut data as *mut AllocationData,
            )
        })?;
        let raw =
            i32::try_from(data.fd).map_err(|_| io::Error::other("the heap returned no fd"))?;
        // SAFETY: on success the kernel installed `raw`, a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

/// Whether `path` names the inode `file` has open.
pub(crate) fn same_node(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(now)) => {
            (open.dev(), open.ino(), open.rdev()) == (now.dev(), now.ino(), now.rdev())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_file_names_are_not_found() {
        for bad in ["", "../system", "a/b", ".hidden"] {
            let err = DmaHeap::open(Path::new(DEVICE_DIR), bad).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{bad:?}");
        }
        assert!(list_heaps(Path::new("/nonexistent/dma_heap")).is_empty());
    }

    #[test]
    fn a_node_replaced_at_its_path_is_not_current() {
        let dir = std::env::temp_dir().join(format!("dmaload-heap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("fake"), b"").expect("node");
        let heap = DmaHeap::open(&dir, "fake").expect("open");
        assert!(heap.is_current());
        std::fs::remove_file(dir.join("fake")).expect("remove");
        assert!(!heap.is_current());
        std::fs::write(dir.join("fake"), b"").expect("replace");
        assert!(!heap.is_current());
        std::fs::remove_dir_all(&dir).ok();
    }
}
