//! io_uring reads: one thread keeps several reads of a file in flight at once, where a
//! thread pool would need one thread per read. Android's SELinux policy denies io_uring to
//! most domains and kernels may disable it (`kernel.io_uring_disabled`): [`Ring::new`] then
//! fails and the caller reads with `pread`. The Android build leaves this module out.
//!
//! The only place buffer addresses go to the kernel for later use: a read's buffer is
//! borrowed mutably for the whole [`Ring::read_all`] call, which returns only after the
//! kernel finished with every read it accepted.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};

/// One read: `buf.len()` bytes at file `offset` into `buf`.
#[derive(Debug)]
pub struct ReadOp<'a> {
    pub buf: &'a mut [u8],
    pub offset: u64,
}

/// A ring owned by one thread.
pub struct Ring {
    ring: IoUring,
    depth: usize,
    /// Entries may be left in the submission queue after a failure: never submit again.
    broken: bool,
}

impl Ring {
    /// A ring for up to `depth` reads in flight.
    pub fn new(depth: u32) -> io::Result<Ring> {
        let ring = IoUring::new(depth.max(1))?;
        let depth = ring.params().sq_entries() as usize;
        Ok(Ring {
            ring,
            depth,
            broken: false,
        })
    }

    /// Reads in flight at most per [`Ring::read_all`] call.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Submits every op at once and waits for all of them; result `i` is op `i`'s byte count
    /// or error. Returns `Err` when the ring itself failed (nothing of ours is in flight
    /// then, and the ring refuses further calls): the caller should read another way.
    pub fn read_all(
        &mut self,
        fd: BorrowedFd<'_>,
        ops: &mut [ReadOp<'_>],
    ) -> io::Result<Vec<io::Result<usize>>> {
        if self.broken {
            return Err(io::Error::other("the ring failed before"));
        }
        if ops.len() > self.depth || ops.iter().any(|op| u32::try_from(op.buf.len()).is_err()) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        for (index, op) in ops.iter_mut().enumerate() {
            let entry = opcode::Read::new(
                types::Fd(fd.as_raw_fd()),
                op.buf.as_mut_ptr(),
                op.buf.len() as u32,
            )
            .offset(op.offset)
            .build()
            .user_data(index as u64);
            // SAFETY: the entry's buffer is `op.buf`, borrowed mutably until this function
            // returns, and the function reaps every entry the kernel consumed before
            // returning; entries it never consumed are never submitted (`broken`).
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                self.broken = true;
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
                // Every entry not reaped is still unconsumed in the submission queue: none is
                // in flight, and `broken` keeps them from ever being submitted.
                if ops.len() - reaped == self.ring.submission().len() {
                    self.broken = true;
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
