//! Opening the files a client loads.
//!
//! The service reads exactly the fd it is handed and never re-opens it (docs/DESIGN.md), so
//! direct I/O happens only when the client opened the file with `O_DIRECT`. Path-based calls
//! therefore open with `O_RDONLY | O_DIRECT | O_CLOEXEC` and fall back to a plain open where
//! the file system refuses `O_DIRECT` (`EINVAL`, e.g. some FUSE or procfs files), and say so.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A file opened for a load.
#[derive(Debug)]
pub struct OpenedFile {
    pub fd: OwnedFd,
    /// True when the fd was opened with `O_DIRECT`; false after the buffered fallback.
    pub direct: bool,
}

/// Opens `path` read-only, with `O_DIRECT` when the file system allows it.
pub fn open_for_load(path: &Path) -> Result<OpenedFile> {
    // std adds O_CLOEXEC to every open.
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(OpenedFile {
            fd: file.into(),
            direct: true,
        }),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            log::info!(
                "{}: file system refuses O_DIRECT; loading with buffered I/O",
                path.display()
            );
            let file = OpenOptions::new()
                .read(true)
                .open(path)
                .map_err(|e| Error::from_io(format_args!("open {}", path.display()), &e))?;
            Ok(OpenedFile {
                fd: file.into(),
                direct: false,
            })
        }
        Err(err) => Err(Error::from_io(
            format_args!("open {}", path.display()),
            &err,
        )),
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
    fn missing_files_are_os_errors() {
        let err = open_for_load(Path::new("/nonexistent/dmaload/weights.bin")).unwrap_err();
        assert_eq!(err.c_code(), -libc::ENOENT);
        assert!(err.message().contains("/nonexistent/dmaload/weights.bin"));
    }
}
