//! What to load: file segments and where they go in the buffer.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::file::open_for_load;

/// How the service reads the file (same values as the AIDL enum and `ADmaLoadIoMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoMode {
    /// Direct I/O where the fd allows it, buffered otherwise.
    #[default]
    Auto,
    /// Direct I/O only.
    Direct,
    /// Buffered reads.
    Buffered,
}

impl IoMode {
    pub fn from_c(value: i32) -> Option<IoMode> {
        match value {
            0 => Some(IoMode::Auto),
            1 => Some(IoMode::Direct),
            2 => Some(IoMode::Buffered),
            _ => None,
        }
    }

    pub fn to_c(self) -> i32 {
        match self {
            IoMode::Auto => 0,
            IoMode::Direct => 1,
            IoMode::Buffered => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Direct => "direct",
            IoMode::Buffered => "buffered",
        }
    }

    pub fn parse(text: &str) -> Option<IoMode> {
        [IoMode::Auto, IoMode::Direct, IoMode::Buffered]
            .into_iter()
            .find(|m| m.name() == text)
    }
}

/// One file range and where it lands in the buffer. The fd is the request's own duplicate.
#[derive(Debug)]
pub struct Segment {
    pub fd: OwnedFd,
    pub file_offset: u64,
    /// 0 means "to the end of the file".
    pub length: u64,
    pub buffer_offset: u64,
}

/// Longest buffer name accepted; the kernel keeps only the first 31 bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A load request. Built once, loadable any number of times (loads only read it).
#[derive(Debug)]
pub struct LoadRequest {
    segments: Vec<Segment>,
    heap: Option<String>,
    io_mode: IoMode,
    name: String,
    gather_size: u64,
    opened_direct: bool,
}

impl Default for LoadRequest {
    fn default() -> Self {
        LoadRequest::new()
    }
}

impl LoadRequest {
    pub fn new() -> LoadRequest {
        LoadRequest {
            segments: Vec::new(),
            heap: None,
            io_mode: IoMode::Auto,
            name: "dmaload".to_string(),
            gather_size: 0,
            opened_direct: true,
        }
    }

    /// Adds a segment read from `fd`, which is duplicated (close-on-exec): the caller keeps
    /// ownership of its own descriptor.
    pub fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        file_offset: u64,
        length: u64,
        buffer_offset: u64,
    ) -> Result<&mut Self> {
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("duplicating the segment fd", &e))?;
        self.segments.push(Segment {
            fd,
            file_offset,
            length,
            buffer_offset,
        });
        Ok(self)
    }

    /// Opens `path` (O_DIRECT with a buffered fallback) and adds it as a segment. Returns
    /// whether the file was opened with O_DIRECT.
    pub fn add_file(
        &mut self,
        path: &Path,
        file_offset: u64,
        length: u64,
        buffer_offset: u64,
    ) -> Result<bool> {
        let opened = open_for_load(path)?;
        self.opened_direct &= opened.direct;
        self.segments.push(Segment {
            fd: opened.fd,
            file_offset,
            length,
            buffer_offset,
        });
        Ok(opened.direct)
    }

    /// Buffer backend by name; `None` or "" lets the service choose.
    pub fn set_heap(&mut self, heap: Option<&str>) -> &mut Self {
        self.heap = heap.filter(|h| !h.is_empty()).map(str::to_string);
        self
    }

    pub fn set_io_mode(&mut self, mode: IoMode) -> &mut Self {
        self.io_mode = mode;
        self
    }

    pub fn set_name(&mut self, name: &str) -> Result<&mut Self> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::os(
                libc::EINVAL,
                format!(
                    "buffer name is {} bytes; at most {MAX_NAME_LEN} are allowed",
                    name.len()
                ),
            ));
        }
        self.name = name.to_string();
        Ok(self)
    }

    /// Bytes of buffer allocated and filled per batch; 0 = the service's setting.
    pub fn set_gather_size(&mut self, bytes: u64) -> &mut Self {
        self.gather_size = bytes;
        self
    }

    pub fn gather_size(&self) -> u64 {
        self.gather_size
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn heap(&self) -> Option<&str> {
        self.heap.as_deref()
    }

    pub fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// False if a path-based segment fell back to a buffered open.
    pub fn opened_direct(&self) -> bool {
        self.opened_direct
    }

    /// Sum of the explicit segment lengths (0-length segments count as unknown here).
    pub fn known_length(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.length)
            .fold(0u64, u64::saturating_add)
    }

    /// Fresh duplicates of the segment fds, for one transaction.
    pub(crate) fn dup_fds(&self) -> Result<Vec<OwnedFd>> {
        self.segments
            .iter()
            .map(|s| {
                s.fd.as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Error::from_io("duplicating a segment fd", &e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_duplicate_the_callers_fd() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let mut request = LoadRequest::new();
        request.add_fd(file.as_fd(), 0, 10, 0).expect("add");
        drop(file);
        // The request's duplicate survives the caller closing its own fd.
        let seg = &request.segments()[0];
        assert!(dmaload_abi::file::OpenFlags::of(seg.fd.as_fd()).is_ok());
        assert_eq!(request.dup_fds().expect("dup").len(), 1);
    }

    #[test]
    fn path_segments_report_the_buffered_fallback() {
        let mut request = LoadRequest::new();
        assert!(!request
            .add_file(Path::new("/proc/self/status"), 0, 0, 0)
            .expect("add"));
        assert!(!request.opened_direct());
        assert!(request.set_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert_eq!(request.set_heap(Some("")).heap(), None);
        assert_eq!(IoMode::parse("direct"), Some(IoMode::Direct));
        assert_eq!(IoMode::from_c(3), None);
    }
}
