//! `pidfd_open(2)`: a descriptor of a process that polls readable once the process exits,
//! without the races of pid reuse.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A process descriptor (Linux 5.3+).
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a descriptor of process `pid`.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory of
        // ours is involved.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(ret).map_err(|_| io::Error::other("pidfd_open returned no fd"))?;
        // SAFETY: `raw` was just returned by the kernel and is owned by nobody else.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Whether the process has exited (the pidfd polls readable); never blocks.
    pub fn has_exited(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: poll reads and writes the one `pollfd` of `fds`, which lives across the
        // call; a zero timeout returns at once.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        ready > 0 && fds[0].revents & libc::POLLIN != 0
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_alive_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let pidfd = Pidfd::open(child.id() as i32).expect("pidfd_open");
        assert!(!pidfd.has_exited());
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(pidfd.has_exited());
        assert!(Pidfd::open(-5).is_err());
    }
}
