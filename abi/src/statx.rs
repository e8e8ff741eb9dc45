//! `statx(STATX_DIOALIGN)`: the direct-I/O alignment a file's file system needs, and the
//! file's identity (device and inode).

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
    /// The file system's device (`major << 32 | minor`) and the file's inode: equal for two
    /// fds exactly when they open the same file.
    pub dev: u64,
    pub ino: u64,
    /// fs-verity is on (`STATX_ATTR_VERITY`): the file is read-only and the kernel checks
    /// every page read against its Merkle tree.
    pub verity: bool,
}

/// `STATX_ATTR_VERITY` (<linux/stat.h>, Linux 5.5+); the `libc` versions AOSP carries may
/// lack it.
pub const STATX_ATTR_VERITY: u64 = 0x0010_0000;

impl FileFacts {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// statx of an open fd (`AT_EMPTY_PATH`).
pub fn file_facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    let mask = libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_INO | libc::STATX_DIOALIGN;
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
        dev: u64::from(stx.stx_dev_major) << 32 | u64::from(stx.stx_dev_minor),
        ino: stx.stx_ino,
        verity: stx.stx_attributes_mask & stx.stx_attributes & STATX_ATTR_VERITY != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn two_opens_of_one_file_have_one_identity() {
        let dir = std::env::temp_dir().join(format!("dmaload-abi-statx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"12345").expect("write");
        std::fs::write(&b, b"x").expect("write");
        let a1 = std::fs::File::open(&a).expect("open");
        let a2 = std::fs::File::open(&a).expect("open");
        let b1 = std::fs::File::open(&b).expect("open");
        let (fa1, fa2, fb1) = (
            file_facts(a1.as_fd()).expect("statx"),
            file_facts(a2.as_fd()).expect("statx"),
            file_facts(b1.as_fd()).expect("statx"),
        );
        assert_eq!((fa1.dev, fa1.ino), (fa2.dev, fa2.ino));
        assert_ne!((fa1.dev, fa1.ino), (fb1.dev, fb1.ino));
        assert_eq!(fa1.ino, a1.metadata().expect("fstat").ino());
        assert_eq!(fa1.size, 5);
        assert!(fa1.is_regular());
        assert!(!fa1.verity);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
