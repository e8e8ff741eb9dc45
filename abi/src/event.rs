//! Waiting on descriptors: `eventfd(2)`, a counter other threads can make readable, and one
//! blocking `poll(2)` over several descriptors (pidfds become readable when their process
//! exits). A thread that waits here sleeps until something happens: no timer wakes it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An eventfd: [`signal`](EventFd::signal) makes it readable until [`drain`](EventFd::drain).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A close-on-exec, non-blocking eventfd at 0.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes a counter and flags and returns a new fd or -1.
        let raw = crate::syscall::result(unsafe {
            libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)
        })?;
        // SAFETY: `raw` was just returned by the kernel and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Adds 1 to the counter: the eventfd polls readable.
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which lives across the call.
        let n = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        match n {
            8 => Ok(()),
            // The counter is at its maximum: it is readable already.
            _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Resets the counter to 0; returns how many signals it held.
    pub fn drain(&self) -> u64 {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into `count`, which lives across the call; the fd is
        // non-blocking, so an empty counter returns EAGAIN at once.
        let n = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n == 8 {
            count
        } else {
            0
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Blocks until at least one of `fds` is readable (or hung up), with no timeout; returns, for
/// each descriptor in order, whether it is. Retried on `EINTR`.
pub fn wait_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let count =
        libc::nfds_t::try_from(polled.len()).map_err(|_| io::Error::other("too many fds"))?;
    // SAFETY: poll reads and writes the `count` entries of `polled`, which lives across the
    // call; the descriptors are borrowed, so they stay open meanwhile. -1: no timeout.
    crate::syscall::retry(|| unsafe { libc::poll(polled.as_mut_ptr(), count, -1) })?;
    Ok(polled
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wakes_the_waiter_and_drain_resets_it() {
        let event = EventFd::new().expect("eventfd");
        assert_eq!(event.drain(), 0);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| wait_readable(&[event.as_fd()]));
            std::thread::sleep(std::time::Duration::from_millis(20));
            event.signal().expect("signal");
            assert_eq!(waiter.join().expect("join").expect("poll"), vec![true]);
        });
        event.signal().expect("signal");
        assert_eq!(event.drain(), 2);
        assert_eq!(event.drain(), 0);
    }

    #[test]
    fn an_exited_child_wakes_a_wait_over_its_pidfd() {
        let event = EventFd::new().expect("eventfd");
        let mut child = std::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .expect("spawn sleep");
        let pidfd = crate::pidfd::Pidfd::open(child.id() as i32).expect("pidfd_open");
        let ready = wait_readable(&[event.as_fd(), pidfd.as_fd()]).expect("poll");
        assert_eq!(ready, vec![false, true]);
        child.wait().expect("wait");
    }
}
