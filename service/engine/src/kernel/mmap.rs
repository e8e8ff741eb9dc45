//! Shared mappings of buffer fds, writable from several threads at disjoint ranges.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A `MAP_SHARED` read-write mapping; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; the pipeline hands each thread disjoint ranges, and
// the raw pointer is only dereferenced through the `unsafe` range accessors below.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0.
    pub fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new mapping at an address of the kernel's choice; nothing is overwritten.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Anonymous private memory (bounce buffers), page aligned.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a new anonymous mapping; nothing is overwritten.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping {
            ptr,
            len: len.max(1),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer to byte `offset`. Writing through it is the caller's business (see `Send`).
    pub fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(
            offset <= self.len,
            "offset {offset} beyond mapping of {}",
            self.len
        );
        // SAFETY: within (or one past) the mapping, checked above.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    fn madvise(&self, offset: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: the range lies within our mapping; these advices do not unmap or change
        // contents visible to safe code.
        super::retry_eintr(|| unsafe { libc::madvise(self.ptr_at(offset).cast(), len, advice) })?;
        Ok(())
    }

    /// Asks for huge folios (`MADV_HUGEPAGE`), honoured by shmem when THP is `advise`.
    pub fn advise_huge(&self) -> io::Result<()> {
        self.madvise(0, self.len, libc::MADV_HUGEPAGE)
    }

    /// Allocates (and zeroes) the pages of a range now (`MADV_POPULATE_WRITE`, Linux 5.14+).
    pub fn populate_write(&self, offset: usize, len: usize) -> io::Result<()> {
        self.madvise(offset, len, libc::MADV_POPULATE_WRITE)
    }

    /// Removes a range's pages from this mapping (`MADV_DONTNEED`). For a shared file
    /// mapping the data stays in the file (the memfd); only our page tables let go, so the
    /// process's RSS does not grow with the buffer.
    pub fn drop_pages(&self, offset: usize, len: usize) -> io::Result<()> {
        self.madvise(offset, len, libc::MADV_DONTNEED)
    }

    /// Fallback for kernels without `MADV_POPULATE_WRITE`: touch one byte per page.
    pub fn touch_pages(&self, offset: usize, len: usize, page: usize) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut at = offset;
        while at < offset + len {
            // SAFETY: within the mapping (checked above); a volatile read-modify-write of a
            // byte nobody reads yet (population happens before readers are let in).
            unsafe {
                let p = self.ptr_at(at);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p));
            }
            at += page;
        }
        Ok(())
    }

    /// Copies `src` into the mapping at `offset`.
    ///
    /// # Safety
    /// No other thread may access `[offset, offset + src.len())` meanwhile.
    pub unsafe fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(offset
            .checked_add(src.len())
            .is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (asserted); exclusivity per this function's contract; `src` is a
        // separate allocation so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr_at(offset), src.len()) };
    }

    /// The bytes of a range.
    ///
    /// # Safety
    /// No thread may write `[offset, offset + len)` while the slice lives.
    pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (asserted); no writers per this function's contract.
        unsafe { std::slice::from_raw_parts(self.ptr_at(offset), len) }
    }

    /// The bytes of a range, mutable.
    ///
    /// # Safety
    /// No other thread may access `[offset, offset + len)` while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (asserted); exclusive per this function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr_at(offset), len) }
    }
}

/// Safe access for single-owner uses (tools, benchmarks): `&mut self` proves exclusivity.
impl Mapping {
    /// Reads file bytes into `[offset, offset + len)` of the mapping with one `pread`
    /// (EINTR retried). Returns the bytes read.
    pub fn pread_into(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
        file_offset: u64,
    ) -> io::Result<usize> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: in bounds (checked); `&mut self` means nobody else accesses the mapping.
        unsafe { super::file::pread_raw(fd, self.ptr_at(offset), len, file_offset, 0) }
    }

    /// Copies `src` into the mapping at `offset`.
    pub fn copy_from(&mut self, offset: usize, src: &[u8]) {
        // SAFETY: `&mut self` means nobody else accesses the mapping; bounds are asserted.
        unsafe { self.write_at(offset, src) }
    }

    /// The whole mapping as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `&mut self` means nobody else accesses the mapping.
        unsafe { self.slice_mut(0, self.len) }
    }

    /// The whole mapping as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: every writer either holds `&mut self` or promised exclusivity through the
        // `unsafe` accessors, which excludes readers.
        unsafe { self.slice(0, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what we mapped; no references outlive `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
