//! `statx(STATX_DIOALIGN)`: the direct-I/O alignment a file's file system needs, and the
//! file's identity (device and inode); `statx` of what tells one version of a file from
//! another (size, modification and change times), for content identity.

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

/// `statx` of an open fd (`AT_EMPTY_PATH`) asking for `mask`; `stx_mask` says what the file
/// system filled in.
fn statx_fd(fd: BorrowedFd<'_>, mask: u32) -> io::Result<libc::statx> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
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
    Ok(stx)
}

/// statx of an open fd (`AT_EMPTY_PATH`).
pub fn file_facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    let mask = libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_INO | libc::STATX_DIOALIGN;
    let stx = statx_fd(fd, mask)?;
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

/// What `statx` says about a file's content without reading it: which file (device, inode)
/// and which version of it (size, and the modification and change times to the nanosecond the
/// file system keeps). Two fds with equal identities open the same file, unchanged in between
/// as far as the kernel tells (a write that changes neither size nor any timestamp within the
/// file system's timestamp granularity is not seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// The file system's device (`major << 32 | minor`).
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// `st_mtime`: the content was last written (or set by `utimensat`).
    pub mtime: Timestamp,
    /// `st_ctime`: the inode last changed (writes, truncation, renames, `utimensat` too;
    /// never settable from user space).
    pub ctime: Timestamp,
    pub mode: u32,
}

/// A statx timestamp: seconds and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

impl FileIdentity {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// The same file (device and inode), whatever its version.
    pub fn same_file(&self, other: &FileIdentity) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// statx of an open fd (`AT_EMPTY_PATH`) for its content identity.
pub fn file_identity(fd: BorrowedFd<'_>) -> io::Result<FileIdentity> {
    let mask = libc::STATX_TYPE
        | libc::STATX_SIZE
        | libc::STATX_INO
        | libc::STATX_MTIME
        | libc::STATX_CTIME;
    let stx = statx_fd(fd, mask)?;
    let wanted = libc::STATX_SIZE | libc::STATX_INO | libc::STATX_MTIME | libc::STATX_CTIME;
    if stx.stx_mask & wanted != wanted {
        // A file system that cannot tell these apart cannot tell versions of a file apart.
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let time = |t: libc::statx_timestamp| Timestamp {
        sec: t.tv_sec,
        nsec: t.tv_nsec,
    };
    Ok(FileIdentity {
        dev: u64::from(stx.stx_dev_major) << 32 | u64::from(stx.stx_dev_minor),
        ino: stx.stx_ino,
        size: stx.stx_size,
        mtime: time(stx.stx_mtime),
        ctime: time(stx.stx_ctime),
        mode: u32::from(stx.stx_mode),
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

    #[test]
    fn an_identity_is_fstat_to_the_nanosecond_and_changes_with_the_file() {
        let dir = std::env::temp_dir().join(format!("dmaload-abi-ident-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("f");
        std::fs::write(&path, b"12345").expect("write");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let before = file_identity(file.as_fd()).expect("statx");
        let meta = file.metadata().expect("fstat");
        assert_eq!((before.dev, before.ino), {
            let facts = file_facts(file.as_fd()).expect("statx");
            (facts.dev, facts.ino)
        });
        assert_eq!(before.size, 5);
        assert_eq!(before.mtime.sec, meta.mtime());
        assert_eq!(i64::from(before.mtime.nsec), meta.mtime_nsec());
        assert_eq!(before.ctime.sec, meta.ctime());
        assert_eq!(i64::from(before.ctime.nsec), meta.ctime_nsec());
        assert!(before.is_regular());
        assert_eq!(before, file_identity(file.as_fd()).expect("statx"));
        // Another modification time (as a rewrite of the same size may leave it): another
        // version of the same file.
        let later = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(1_000_000, 7);
        file.set_modified(later).expect("utimensat");
        let after = file_identity(file.as_fd()).expect("statx");
        assert!(after.same_file(&before));
        assert_ne!(after, before);
        assert_eq!((after.mtime.sec, after.mtime.nsec), (1_000_000, 7));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
