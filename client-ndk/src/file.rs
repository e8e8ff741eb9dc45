//! Opening the files a client loads.
//!
//! The service reads exactly the fd it is handed and never re-opens it (docs/DESIGN.md), so
//! direct I/O happens only when the client opened the file with `O_DIRECT`. Path-based calls
//! therefore open with `O_RDONLY | O_DIRECT | O_CLOEXEC` and fall back to a plain open where
//! the file system refuses `O_DIRECT` (`EINVAL`, e.g. some FUSE or procfs files), and say so.
//!
//! The open never blocks: it adds `O_NONBLOCK | O_NOCTTY` (an open of a FIFO would wait for a
//! writer, a device's might wait or take a terminal), refuses anything that is not a regular
//! file before any read, with the service's error for such an fd (`BAD_FD`), and clears
//! `O_NONBLOCK` again on the regular file it got.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use dmaload_abi::file::clear_nonblocking;
use dmaload_abi::statx::file_facts;
use dmaload_abi::Untrusted;

use crate::error::{Error, ErrorCode, Result};

/// A file opened for a load.
#[derive(Debug)]
pub struct OpenedFile {
    pub fd: OwnedFd,
    /// True when the fd was opened with `O_DIRECT`; false after the buffered fallback.
    pub direct: bool,
}

/// Opens `path` read-only, with `O_DIRECT` when the file system allows it; a regular file
/// only, without blocking.
pub fn open_for_load(path: &Path) -> Result<OpenedFile> {
    let open = |flags: libc::c_int| {
        // std adds O_CLOEXEC to every open.
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
    };
    let shown = Untrusted::path(path);
    let (file, direct) = match open(libc::O_DIRECT) {
        Ok(file) => (file, true),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            log::info!("{shown}: file system refuses O_DIRECT; loading with buffered I/O");
            let file = open(0).map_err(|e| Error::from_io(format_args!("open {shown}"), &e))?;
            (file, false)
        }
        Err(err) => return Err(Error::from_io(format_args!("open {shown}"), &err)),
    };
    let facts =
        file_facts(file.as_fd()).map_err(|e| Error::from_io(format_args!("stat {shown}"), &e))?;
    if !facts.is_regular() {
        return Err(Error::service(
            ErrorCode::BadFd,
            format!(
                "{shown}: not a regular file ({}); pass a regular file",
                file_type(facts.mode)
            ),
        ));
    }
    clear_nonblocking(file.as_fd())
        .map_err(|e| Error::from_io(format_args!("fcntl {shown}"), &e))?;
    Ok(OpenedFile {
        fd: file.into(),
        direct,
    })
}

fn file_type(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaload_abi::file::{is_close_on_exec, OpenFlags};
    use std::os::fd::{AsFd, AsRawFd};

    fn opened_direct(fd: &OwnedFd) -> bool {
        OpenFlags::of(fd.as_fd()).expect("F_GETFL").direct()
    }

    #[test]
    fn opens_regular_files_with_o_direct() {
        let dir = std::env::temp_dir().join(format!("dmaload-client-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("weights.bin");
        std::fs::write(&path, vec![7u8; 8192]).expect("write");
        let opened = open_for_load(&path).expect("open");
        // tmpfs and ext4 both accept O_DIRECT on current kernels.
        assert!(opened.direct);
        assert!(opened_direct(&opened.fd));
        assert!(
            is_close_on_exec(opened.fd.as_fd()).expect("F_GETFD"),
            "fd {} must be close-on-exec",
            opened.fd.as_raw_fd()
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn falls_back_where_the_file_system_refuses_o_direct() {
        // procfs has no direct I/O: the open succeeds without O_DIRECT and reports it.
        let opened = open_for_load(Path::new("/proc/self/status")).expect("open");
        assert!(!opened.direct);
        assert!(!opened_direct(&opened.fd));
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("dmaload-client-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        // In a thread: a regression blocks in open() and fails here instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_for_load(&path).map(|o| o.direct));
        });
        let outcome = rx.recv_timeout(std::time::Duration::from_secs(10));
        if outcome.is_err() {
            // Release the blocked open before failing.
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
        }
        let err = outcome
            .expect("open_for_load of a FIFO blocked")
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadFd), "{err}");
        assert!(err.message().contains("FIFO"), "{err}");
        let err = open_for_load(Path::new("/dev/null")).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadFd), "{err}");
        let err = open_for_load(&dir).unwrap_err();
        assert!(
            err.code() == Some(ErrorCode::BadFd) || err.c_code() == -libc::EISDIR,
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn opened_files_block_again() {
        let opened = open_for_load(Path::new("/proc/self/status")).expect("open");
        let flags = OpenFlags::of(opened.fd.as_fd()).expect("F_GETFL");
        assert_eq!(flags.0 & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn missing_files_are_os_errors() {
        let err = open_for_load(Path::new("/nonexistent/dmaload/weights.bin")).unwrap_err();
        assert_eq!(err.c_code(), -libc::ENOENT);
        assert!(err.message().contains("/nonexistent/dmaload/weights.bin"));
        // A path is shown escaped and bounded.
        let long = format!("/nonexistent/\x1b[31m{}", "d".repeat(8 << 20));
        let err = open_for_load(Path::new(&long)).unwrap_err();
        assert!(
            !err.message().contains('\x1b'),
            "{:?}",
            &err.message()[..40]
        );
        assert!(err.message().len() < 1024, "{} bytes", err.message().len());
    }
}
