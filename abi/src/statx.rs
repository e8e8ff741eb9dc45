//! `statx(STATX_DIOALIGN)`: the direct-I/O alignment a file's file system needs.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

/// File facts needed to plan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub size: u64,
    pub mode: u32,
    /// Direct-I/O memory alignment; `None` when the file system offers no direct I/O.
    pub dio_mem_align: Option<u32>,
    /// Direct-I/O file offset (and length) alignment.
    pub dio_offset_align: Option<u32>,
}

impl FileFacts {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// statx of an open fd (`AT_EMPTY_PATH`).
pub fn file_facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    let mask = libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_DIOALIGN;
    // SAFETY: the path is a NUL-terminated empty string, `buf` is a valid statx to write to,
    // and `fd` is an open descriptor borrowed for the call.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            mask,
            buf.as_mut_ptr(),
        )
    };
    crate::syscall::result(ret)?;
    // SAFETY: statx succeeded and filled the structure (it was zeroed before, too).
    let stx = unsafe { buf.assume_init() };
    let dio = stx.stx_mask & libc::STATX_DIOALIGN != 0 && stx.stx_dio_offset_align != 0;
    Ok(FileFacts {
        size: stx.stx_size,
        mode: u32::from(stx.stx_mode),
        dio_mem_align: dio.then_some(stx.stx_dio_mem_align.max(1)),
        dio_offset_align: dio.then_some(stx.stx_dio_offset_align),
    })
}
