//! Fixtures: pattern files of every size class on a real file system, and fds of every
//! kind a load must refuse.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::pattern;
use dmaload_abi::dma_heap::{self, DmaHeap};

/// A file whose content is `pattern` with `seed`.
#[derive(Clone, Debug)]
pub struct PatternFile {
    pub path: PathBuf,
    pub seed: u64,
    pub size: u64,
}

impl PatternFile {
    /// Creates (or reuses, if its size already matches) a pattern file.
    pub fn create(dir: &Path, name: &str, seed: u64, size: u64) -> io::Result<PatternFile> {
        let path = dir.join(name);
        let reuse = fs::metadata(&path).is_ok_and(|m| m.len() == size)
            && fs::read_link(&path).is_err()
            && size > 0
            && first_bytes_match(&path, seed);
        if !reuse {
            pattern::write_file(&path, seed, size)?;
        }
        Ok(PatternFile { path, seed, size })
    }

    /// Opened read-only, with `O_DIRECT` when `direct`.
    pub fn open(&self, direct: bool) -> io::Result<OwnedFd> {
        let mut o = OpenOptions::new();
        o.read(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        Ok(o.open(&self.path)?.into())
    }
}

/// An existing file is reused only if its head and tail hold the expected content.
fn first_bytes_match(path: &Path, seed: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = File::open(path) else {
        return false;
    };
    let Ok(size) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    let n = size.min(64) as usize;
    let mut buf = vec![0u8; n];
    [0, size - n as u64].iter().all(|&at| {
        f.read_exact_at(&mut buf, at).is_ok() && pattern::first_mismatch(seed, at, &buf).is_none()
    })
}

/// Sizes from 1 byte up, odd ones included (page ± 1, not a multiple of 512, a few MiB + 1).
pub const SIZE_CLASSES: &[u64] = &[
    1,
    511,
    4095,
    4097,
    65_537,
    (1 << 20) + 3,
    (8 << 20) - 1,
    (32 << 20) + 4097,
];

/// Kinds of fds that are not a readable regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadFdKind {
    Directory,
    PipeReadEnd,
    Socket,
    CharDevice,
    EventFd,
    /// A dma-buf from a dma-heap (only where /dev/dma_heap exists).
    DmaBuf,
    OPath,
    WriteOnly,
}

impl BadFdKind {
    pub const ALL: [BadFdKind; 8] = [
        BadFdKind::Directory,
        BadFdKind::PipeReadEnd,
        BadFdKind::Socket,
        BadFdKind::CharDevice,
        BadFdKind::EventFd,
        BadFdKind::DmaBuf,
        BadFdKind::OPath,
        BadFdKind::WriteOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BadFdKind::Directory => "directory",
            BadFdKind::PipeReadEnd => "pipe",
            BadFdKind::Socket => "socket",
            BadFdKind::CharDevice => "char-device",
            BadFdKind::EventFd => "eventfd",
            BadFdKind::DmaBuf => "dma-buf",
            BadFdKind::OPath => "o-path",
            BadFdKind::WriteOnly => "write-only",
        }
    }

    /// Makes such an fd; `file` is a regular file to open O_PATH / write-only.
    /// `Ok(None)`: this machine cannot make one (no dma-heap on a host).
    pub fn make(self, file: &Path) -> io::Result<Option<OwnedFd>> {
        let fd: OwnedFd = match self {
            BadFdKind::Directory => File::open(file.parent().unwrap_or(Path::new("/")))?.into(),
            BadFdKind::PipeReadEnd => {
                let (read, _write) = nix::unistd::pipe().map_err(io::Error::from)?;
                read
            }
            BadFdKind::Socket => {
                let (a, _b) = std::os::unix::net::UnixStream::pair()?;
                a.into()
            }
            BadFdKind::CharDevice => File::open("/dev/null")?.into(),
            BadFdKind::EventFd => nix::sys::eventfd::EventFd::from_value_and_flags(
                0,
                nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
            )
            .map_err(io::Error::from)?
            .into(),
            BadFdKind::DmaBuf => match dma_heap_alloc("system", 4096) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            },
            BadFdKind::OPath => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(file)?
                .into(),
            BadFdKind::WriteOnly => OpenOptions::new().write(true).open(file)?.into(),
        };
        Ok(Some(fd))
    }
}

/// Allocates a dma-buf of `len` bytes from `/dev/dma_heap/<heap>` (the suite's own
/// allocation, e.g. to pass a dma-buf where a file is expected).
pub fn dma_heap_alloc(heap: &str, len: u64) -> io::Result<OwnedFd> {
    DmaHeap::open(Path::new(dma_heap::DEVICE_DIR), heap)?.allocate(len)
}

/// Names under /dev/dma_heap (sorted), as the kernel offers them.
pub fn kernel_heaps() -> Vec<String> {
    dma_heap::list_heaps(Path::new(dma_heap::DEVICE_DIR))
}

/// A test directory under `base` (on the data disk in the device, under target/ on hosts).
pub fn test_dir(base: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = base.join(name);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
