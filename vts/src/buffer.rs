//! Reading a returned buffer back the way an app would (`dmaload_abi::dma_buf::ReadView`:
//! map the fd, bracket CPU access with `DMA_BUF_IOCTL_SYNC` for dma-bufs, read the bytes), and
//! what /proc says about a buffer fd.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use dmaload_abi::dma_buf::ReadView;

/// What /proc says about an fd of this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// True for a dma-buf (fdinfo has `exp_name:`).
    pub dma_buf: bool,
    /// The exporter (`system`, `udmabuf`, ...) of a dma-buf.
    pub exporter: String,
    /// The dma-buf's name (`DMA_BUF_SET_NAME`), or the memfd's name.
    pub name: String,
    /// Size from fdinfo (dma-bufs), 0 otherwise.
    pub size: u64,
}

impl FdInfo {
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<FdInfo> {
        let raw = fd.as_raw_fd();
        let text = fs::read_to_string(format!("/proc/self/fdinfo/{raw}"))?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let mut info = FdInfo::default();
        if let Some(exp) = field("exp_name:") {
            info.dma_buf = true;
            info.exporter = exp;
            info.name = field("name:").unwrap_or_default();
            info.size = field("size:").and_then(|s| s.parse().ok()).unwrap_or(0);
        } else {
            // memfd: the link reads "/memfd:<name> (deleted)".
            let link = fs::read_link(format!("/proc/self/fd/{raw}"))?;
            let link = link.to_string_lossy();
            if let Some(rest) = link.strip_prefix("/memfd:") {
                info.name = rest.trim_end_matches(" (deleted)").to_string();
            }
        }
        Ok(info)
    }
}
