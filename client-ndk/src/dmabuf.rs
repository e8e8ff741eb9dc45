//! Reading a loaded buffer from the CPU: a read-only mapping bracketed by
//! `DMA_BUF_IOCTL_SYNC` so caches are coherent with what the device side wrote
//! (`dmaload_abi::dma_buf::ReadView`), with this crate's errors.

use std::os::fd::BorrowedFd;

use dmaload_abi::dma_buf::ReadView;

use crate::error::{Error, Result};

/// A read-only CPU mapping of a loaded buffer, synced for reading while it lives.
pub struct MappedBuffer<'fd> {
    view: Option<ReadView<'fd>>,
}

impl<'fd> MappedBuffer<'fd> {
    /// Maps `len` bytes of `fd` (a dma-buf or memfd) for reading.
    pub fn map(fd: BorrowedFd<'fd>, len: u64) -> Result<MappedBuffer<'fd>> {
        let len = usize::try_from(len).map_err(|_| {
            Error::os(
                libc::EOVERFLOW,
                format!("buffer of {len} bytes cannot be mapped"),
            )
        })?;
        if len == 0 {
            return Err(Error::os(libc::EINVAL, "cannot map an empty buffer"));
        }
        let view = ReadView::map(fd, len)
            .map_err(|e| Error::from_io("mapping the loaded buffer for reading", &e))?;
        Ok(MappedBuffer { view: Some(view) })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.view.as_ref().map_or(&[], |v| v.as_bytes())
    }

    /// True when the reads are bracketed with `DMA_BUF_IOCTL_SYNC` (a dma-buf, not a memfd).
    pub fn synced(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.synced())
    }
}

impl Drop for MappedBuffer<'_> {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.view.take().map(ReadView::finish) {
            log::warn!("ending CPU access to the buffer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaload_abi::memfd::Memfd;
    use std::os::fd::AsFd;

    #[test]
    fn maps_a_memfd_unsynced_and_refuses_empty_buffers() {
        let memfd = Memfd::create("dmaload-test", 4096).expect("memfd");
        let mapped = MappedBuffer::map(memfd.as_fd(), 4096).expect("map");
        assert!(mapped.as_bytes().len() == 4096 && mapped.as_bytes().iter().all(|&b| b == 0));
        assert!(!mapped.synced(), "a memfd is not a dma-buf");
        let empty = MappedBuffer::map(memfd.as_fd(), 0).err();
        assert_eq!(empty.map(|e| e.c_code()), Some(-libc::EINVAL));
    }
}
