//! Memory mappings of buffer fds and anonymous memory. Every pointer into mapped memory is
//! computed in this module; callers get slices:
//!
//! * of a whole [`Mapping`] they hold exclusively (`&mut Mapping`), or
//! * of a [`Region`]: a range of a shared `&Mapping` claimed by one writer. Claims are
//!   checked at run time not to overlap, and released when the region drops, so several
//!   threads fill disjoint parts of one buffer with plain slices;
//! * of a [`ReadOnlyMapping`], which nothing in this process writes through.
//!
//! Like any shared file mapping, the memory can also change through the fd in another process
//! (or another mapping); dmaload only maps buffers it owns or that were handed out finished.

use std::io;
use std::ops::{Deref, DerefMut, Range};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

/// A mapping made by `mmap`, unmapped on drop. Knows addresses, not who may use them.
#[derive(Debug)]
struct Raw {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Raw` owns plain memory with no thread affinity; who may touch which bytes is
// decided by the types wrapping it (exclusive `&mut`, claimed regions, read-only mappings).
unsafe impl Send for Raw {}
// SAFETY: as above: `&Raw` gives no access to the bytes by itself.
unsafe impl Sync for Raw {}

impl Raw {
    fn map(
        fd: Option<BorrowedFd<'_>>,
        len: usize,
        prot: libc::c_int,
        extra_flags: libc::c_int,
    ) -> io::Result<Raw> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (flags, raw_fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | extra_flags, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags, -1),
        };
        // SAFETY: a new mapping at an address of the kernel's choice: it replaces nothing
        // and no Rust object aliases it.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, raw_fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Raw { ptr, len })
    }

    /// Checks that `[offset, offset + len)` lies within the mapping.
    fn range(&self, offset: usize, len: usize) -> io::Result<Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(offset..end),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// Pointer to the first byte of `range` (which [`Raw::range`] checked).
    fn ptr(&self, range: &Range<usize>) -> *mut u8 {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: `range.start <= self.len`: the result is inside the mapping or one past.
        unsafe { self.ptr.as_ptr().add(range.start) }
    }

    /// The bytes of a checked range.
    ///
    /// # Safety
    /// Nothing may write them while the slice lives.
    unsafe fn slice(&self, range: Range<usize>) -> &[u8] {
        // SAFETY: the range lies within the mapping, which is readable and lives as long as
        // `self`; no writer per this function's contract.
        unsafe { std::slice::from_raw_parts(self.ptr(&range), range.len()) }
    }

    /// The bytes of a checked range, mutable.
    ///
    /// # Safety
    /// Nothing else may access them while the slice lives, and the mapping is writable.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, range: Range<usize>) -> &mut [u8] {
        // SAFETY: the range lies within the writable mapping, which lives as long as `self`;
        // exclusive per this function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(&range), range.len()) }
    }

    /// `madvise` over a checked range. Only advice that leaves the bytes as they are, or
    /// whose caller holds the range exclusively, may come here.
    fn madvise(&self, range: Range<usize>, advice: libc::c_int) -> io::Result<()> {
        let ptr = self.ptr(&range);
        // SAFETY: the range lies within our mapping; madvise neither unmaps it nor hands
        // its memory to anyone (what the advice does to the bytes is the caller's business,
        // see above).
        crate::syscall::retry(|| unsafe { libc::madvise(ptr.cast(), range.len(), advice) })?;
        Ok(())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; every slice borrowed from `self` is gone.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A read-write mapping: `MAP_SHARED` of a buffer fd, or private anonymous memory.
#[derive(Debug)]
pub struct Mapping {
    raw: Raw,
    /// Ranges held by live [`Region`]s.
    claims: Mutex<Vec<Range<usize>>>,
}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and writable.
    pub fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let raw = Raw::map(Some(fd), len, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        Ok(Mapping::new(raw))
    }

    /// Like [`Mapping::map_shared`], without reserving memory for the mapping
    /// (`MAP_NORESERVE`). For hugetlb files this is what lets pages come from surplus
    /// allocations at fault time, on the faulting thread, instead of all at once in `mmap`;
    /// a page the kernel cannot supply then fails the fault that needed it
    /// ([`Mapping::populate_write`] reports `EFAULT`; a plain access would get `SIGBUS`, so
    /// nothing may touch the memory before it was populated).
    pub fn map_shared_noreserve(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let raw = Raw::map(
            Some(fd),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_NORESERVE,
        )?;
        Ok(Mapping::new(raw))
    }

    /// `len` bytes of private anonymous memory (bounce buffers), page aligned and zeroed.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        let raw = Raw::map(None, len, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        Ok(Mapping::new(raw))
    }

    fn new(raw: Raw) -> Mapping {
        Mapping {
            raw,
            claims: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.raw.len
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// The whole mapping; `&mut self` proves that nobody else uses it.
    pub fn as_slice(&mut self) -> &[u8] {
        // SAFETY: the whole range is in bounds; `&mut self` excludes every other user
        // (regions borrow `self`).
        unsafe { self.raw.slice(0..self.raw.len) }
    }

    /// The whole mapping, mutable; `&mut self` proves that nobody else uses it.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the mapping is writable.
        unsafe { self.raw.slice_mut(0..self.raw.len) }
    }

    fn claims(&self) -> MutexGuard<'_, Vec<Range<usize>>> {
        // The list is consistent after any panic (pushes and removes are single steps).
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `[offset, offset + len)` for one writer until the region drops. Fails with
    /// `EINVAL` when the range leaves the mapping and `EBUSY` when it overlaps a live claim.
    pub fn claim(&self, offset: usize, len: usize) -> io::Result<Region<'_>> {
        let range = self.raw.range(offset, len)?;
        if !range.is_empty() {
            let mut claims = self.claims();
            if claims
                .iter()
                .any(|c| c.start < range.end && range.start < c.end)
            {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            claims.push(range.clone());
        }
        Ok(Region {
            mapping: self,
            range,
        })
    }

    /// Asks for huge folios (`MADV_HUGEPAGE`), honoured by shmem when THP is `advise`.
    pub fn advise_huge(&self) -> io::Result<()> {
        self.raw.madvise(0..self.raw.len, libc::MADV_HUGEPAGE)
    }

    /// Allocates (and zeroes, for memory not yet allocated) the pages of a range now
    /// (`MADV_POPULATE_WRITE`, Linux 5.14+; `EINVAL` before). The bytes stay as they are.
    pub fn populate_write(&self, offset: usize, len: usize) -> io::Result<()> {
        let range = self.raw.range(offset, len)?;
        self.raw.madvise(range, libc::MADV_POPULATE_WRITE)
    }

    /// Removes a range's pages from this mapping (`MADV_DONTNEED`). For a shared mapping the
    /// data stays in the file (the memfd) and only our page tables let go, so the process's
    /// RSS does not grow with the buffer; anonymous memory reads back as zeros. The range is
    /// claimed meanwhile, so it must not be held by a region.
    pub fn drop_pages(&self, offset: usize, len: usize) -> io::Result<()> {
        let region = self.claim(offset, len)?;
        self.raw.madvise(region.range.clone(), libc::MADV_DONTNEED)
    }

    /// Fallback for kernels without `MADV_POPULATE_WRITE`: writes one byte per `page` of the
    /// range with the value it holds. The range is claimed meanwhile.
    pub fn touch_pages(&self, offset: usize, len: usize, page: usize) -> io::Result<()> {
        let mut region = self.claim(offset, len)?;
        for byte in region.iter_mut().step_by(page.max(1)) {
            let p: *mut u8 = byte;
            // SAFETY: `p` comes from a live `&mut u8` of our region; volatile, so the
            // compiler keeps the write that faults the page in.
            let value = unsafe { p.read_volatile() };
            // SAFETY: as above.
            unsafe { p.write_volatile(value) };
        }
        Ok(())
    }
}

/// A claimed range of a [`Mapping`]: its bytes, exclusively, as a slice.
#[derive(Debug)]
pub struct Region<'m> {
    mapping: &'m Mapping,
    range: Range<usize>,
}

impl Region<'_> {
    /// Offset of the region's first byte in the mapping.
    pub fn offset(&self) -> usize {
        self.range.start
    }
}

impl Deref for Region<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the range was checked against the mapping and is claimed by this region
        // alone: nobody else reads or writes it while the region lives.
        unsafe { self.mapping.raw.slice(self.range.clone()) }
    }
}

impl DerefMut for Region<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the mapping is writable.
        unsafe { self.mapping.raw.slice_mut(self.range.clone()) }
    }
}

impl Drop for Region<'_> {
    fn drop(&mut self) {
        if self.range.is_empty() {
            return;
        }
        let mut claims = self.mapping.claims();
        if let Some(i) = claims.iter().position(|c| *c == self.range) {
            claims.swap_remove(i);
        }
    }
}

/// A read-only shared mapping of a buffer fd.
#[derive(Debug)]
pub struct ReadOnlyMapping {
    raw: Raw,
}

impl ReadOnlyMapping {
    /// Maps `len` bytes of `fd` from offset 0 for reading.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<ReadOnlyMapping> {
        Ok(ReadOnlyMapping {
            raw: Raw::map(Some(fd), len, libc::PROT_READ, 0)?,
        })
    }

    pub fn len(&self) -> usize {
        self.raw.len
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: in bounds; the mapping is readable and nothing in this process writes
        // through it (see the module documentation for writers elsewhere).
        unsafe { self.raw.slice(0..self.raw.len) }
    }

    /// One byte per page, bit 0 set where the page is resident (`mincore`).
    pub(crate) fn residency(&self) -> io::Result<Vec<u8>> {
        let page = crate::system::page_size() as usize;
        let mut pages = vec![0u8; self.raw.len.div_ceil(page)];
        let ptr = self.raw.ptr(&(0..self.raw.len));
        // SAFETY: the range is our mapping; `pages` has one byte per page of it.
        let ret = unsafe { libc::mincore(ptr.cast(), self.raw.len, pages.as_mut_ptr()) };
        crate::syscall::result(ret)?;
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_disjoint_and_released_on_drop() {
        let map = Mapping::anonymous(16 << 10).expect("mmap");
        let mut a = map.claim(0, 4096).expect("claim a");
        let mut b = map.claim(4096, 4096).expect("claim b");
        let busy = map.claim(4095, 2).expect_err("overlap");
        assert_eq!(busy.raw_os_error(), Some(libc::EBUSY));
        let outside = map.claim(16 << 10, 1).expect_err("outside");
        assert_eq!(outside.raw_os_error(), Some(libc::EINVAL));
        assert!(map.claim(usize::MAX, 2).is_err());
        assert!(map.claim(100, 0).is_ok(), "an empty range overlaps nothing");
        a.fill(1);
        b.fill(2);
        assert_eq!((a.offset(), a.len(), b[0]), (0, 4096, 2));
        assert_eq!(
            map.drop_pages(0, 8192).unwrap_err().raw_os_error(),
            Some(libc::EBUSY),
            "pages under a region stay"
        );
        drop(a);
        let again = map.claim(0, 4096).expect("released");
        assert_eq!(again[4095], 1);
        drop((again, b));
        let mut map = map;
        assert_eq!(map.as_slice()[4096], 2);
        map.drop_pages(0, 8192).expect("MADV_DONTNEED");
        assert_eq!(
            map.as_slice()[4096],
            0,
            "anonymous memory reads back as zeros"
        );
    }

    #[test]
    fn threads_fill_disjoint_regions() {
        let mut map = Mapping::anonymous(8 * 4096).expect("mmap");
        std::thread::scope(|s| {
            for i in 0..8 {
                let map = &map;
                s.spawn(move || {
                    let mut region = map.claim(i * 4096, 4096).expect("claim");
                    region.fill(i as u8);
                });
            }
        });
        for (i, page) in map.as_slice().chunks(4096).enumerate() {
            assert!(page.iter().all(|&b| b == i as u8));
        }
        map.touch_pages(0, 8 * 4096, 4096).expect("touch");
        map.populate_write(0, 4096).expect("populate");
        assert_eq!(map.as_mut_slice()[4096], 1, "touching keeps the bytes");
        assert!(Mapping::anonymous(0).is_err());
    }
}
