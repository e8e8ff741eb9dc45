//! io_uring reads: one thread keeps several reads of a file in flight at once, where a
//! thread pool would need one thread per read. Android's SELinux policy denies io_uring to
//! most domains and kernels may disable it (`kernel.io_uring_disabled`): [`Ring::new`] then
//! fails and the caller reads with `pread`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};

/// One read: `len` bytes at file `offset` into `dst`.
#[derive(Clone, Copy, Debug)]
pub struct ReadOp {
    pub dst: *mut u8,
    pub len: u32,
    pub offset: u64,
}

/// A ring owned by one thread.
pub struct Ring {
    ring: IoUring,
    depth: usize,
}

impl Ring {
    /// A ring for up to `depth` reads in flight.
    pub fn new(depth: u32) -> io::Result<Ring> {
        let ring = IoUring::new(depth.max(1))?;
        let depth = ring.params().sq_entries() as usize;
        Ok(Ring { ring, depth })
    }

    /// Reads in flight at most per [`Ring::read_all`] call.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Submits every op at once and waits for all of them; result `i` is op `i`'s byte count
    /// or error. Returns `Err` (and nothing is in flight any more) only when the ring itself
    /// failed; the caller should then drop the ring and read another way.
    ///
    /// # Safety
    /// Every `dst` must be valid for writes of its `len` bytes and not be accessed by anyone
    /// else until this call returns. At most [`Ring::depth`] ops.
    pub unsafe fn read_all(
        &mut self,
        fd: BorrowedFd<'_>,
        ops: &[ReadOp],
    ) -> io::Result<Vec<io::Result<usize>>> {
        if ops.len() > self.depth {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        for (index, op) in ops.iter().enumerate() {
            let entry = opcode::Read::new(types::Fd(fd.as_raw_fd()), op.dst, op.len)
                .offset(op.offset)
                .build()
                .user_data(index as u64);
            // SAFETY: the buffer stays valid until its completion is reaped below (this
            // function's contract, and it reaps every submitted op before returning).
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
        }
        let mut results: Vec<Option<io::Result<usize>>> = ops.iter().map(|_| None).collect();
        let mut reaped = 0;
        let mut ring_error = None;
        while reaped < ops.len() {
            // io_uring_enter waits only once it has consumed every queued entry, and consumes
            // none when it fails: after a hard error only what it consumed before is in
            // flight, and that must complete before the buffers go back to the caller.
            match self.ring.submit_and_wait(ops.len() - reaped) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) => {}
                Err(e) => {
                    ring_error = Some(e);
                    std::thread::yield_now();
                }
            }
            for cqe in self.ring.completion() {
                let Some(slot) = results.get_mut(cqe.user_data() as usize) else {
                    continue;
                };
                let res = cqe.result();
                *slot = Some(if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                });
                reaped += 1;
            }
            if let Some(e) = ring_error.take() {
                // Entries never consumed die with the ring (the caller drops it).
                if ops.len() - reaped == self.ring.submission().len() {
                    return Err(e);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::EIO))))
            .collect())
    }
}
