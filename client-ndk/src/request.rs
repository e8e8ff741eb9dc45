//! What to load: file segments and where they go in the buffer. The request keeps each
//! distinct file once, so any number of segments of one file hold one fd.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, ErrorCode, Result};
use crate::file::open_for_load;
use dmaload_abi::digest::{Digest, DigestAlgorithm, DIGEST_BYTES};
use dmaload_abi::file::OpenFlags;
use dmaload_abi::statx::file_facts;

/// How the service reads the file (the values of the AIDL enum and `ADmaLoadIoMode`).
pub use dmaload_abi::io_mode::IoMode;

/// One range of one of the request's files ([`LoadRequest::file_count`]) and where it lands
/// in the buffer.
pub use dmaload_abi::segment::Segment;

/// Most distinct files one request carries (`IDmaLoader.MAX_FILES`): every binder transport
/// takes that many fds in one call. Segments of one file share its fd, so they cost nothing.
pub const MAX_FILES: usize = 64;

/// Longest buffer name the service accepts (`IDmaLoader.MAX_NAME_BYTES`); it prefixes the
/// name with the caller's uid, and the kernel keeps the first 31 bytes of a dma-buf's name.
pub const MAX_NAME_BYTES: usize = 200;

/// What makes two fds the same file of a request: the same inode, opened with the same access
/// mode and the same `O_DIRECT` (the service reads an fd as it is, so an fd with `O_DIRECT`
/// and one without are read differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    access: i32,
    direct: bool,
}

impl FileIdentity {
    fn of(fd: BorrowedFd<'_>) -> Result<FileIdentity> {
        let flags = OpenFlags::of(fd).map_err(|e| Error::from_io("the segment fd", &e))?;
        let facts = file_facts(fd).map_err(|e| Error::from_io("stat of the segment fd", &e))?;
        Ok(FileIdentity {
            dev: facts.dev,
            ino: facts.ino,
            access: flags.0 & (libc::O_ACCMODE | libc::O_PATH),
            direct: flags.direct(),
        })
    }
}

/// One distinct file: the request's own fd (close-on-exec), shared by its segments.
#[derive(Debug)]
struct RequestFile {
    fd: OwnedFd,
    identity: FileIdentity,
}

/// A load request. Built once, loadable any number of times (loads only read it).
#[derive(Debug)]
pub struct LoadRequest {
    files: Vec<RequestFile>,
    segments: Vec<Segment>,
    backend: Option<String>,
    io_mode: IoMode,
    name: String,
    gather_size: u64,
    opened_direct: bool,
    shareable: bool,
    digests: Vec<DigestAlgorithm>,
    expected: Vec<Digest>,
}

impl Default for LoadRequest {
    fn default() -> Self {
        LoadRequest::new()
    }
}

impl LoadRequest {
    pub fn new() -> LoadRequest {
        LoadRequest {
            files: Vec::new(),
            segments: Vec::new(),
            backend: None,
            io_mode: IoMode::Auto,
            name: "dmaload".to_string(),
            gather_size: 0,
            opened_direct: true,
            shareable: false,
            digests: Vec::new(),
            expected: Vec::new(),
        }
    }

    /// Adds a segment read from `fd`. The caller keeps ownership of its descriptor: the
    /// request keeps a duplicate (close-on-exec), one per distinct file however many segments
    /// read it. `TOO_MANY_FILES` for a file beyond [`MAX_FILES`].
    pub fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        file_offset: u64,
        length: u64,
        buffer_offset: u64,
    ) -> Result<&mut Self> {
        let identity = FileIdentity::of(fd)?;
        let file = match self.file_index(identity) {
            Some(file) => file,
            None => {
                self.check_room()?;
                let fd = fd
                    .try_clone_to_owned()
                    .map_err(|e| Error::from_io("duplicating the segment fd", &e))?;
                self.push_file(fd, identity)
            }
        };
        self.segments.push(Segment {
            file,
            file_offset,
            length,
            buffer_offset,
        });
        Ok(self)
    }

    /// Opens `path` (O_DIRECT with a buffered fallback; never blocking, regular files only:
    /// [`open_for_load`]) and adds it as a segment; a file the request already has is not
    /// opened twice. Returns whether the file was opened with O_DIRECT.
    pub fn add_file(
        &mut self,
        path: &Path,
        file_offset: u64,
        length: u64,
        buffer_offset: u64,
    ) -> Result<bool> {
        let opened = open_for_load(path)?;
        let identity = FileIdentity::of(opened.fd.as_fd())?;
        let file = match self.file_index(identity) {
            // The request's own fd serves this segment too; the new one closes here.
            Some(file) => file,
            None => {
                self.check_room()?;
                self.push_file(opened.fd, identity)
            }
        };
        self.opened_direct &= opened.direct;
        self.segments.push(Segment {
            file,
            file_offset,
            length,
            buffer_offset,
        });
        Ok(opened.direct)
    }

    fn file_index(&self, identity: FileIdentity) -> Option<usize> {
        self.files.iter().position(|f| f.identity == identity)
    }

    fn check_room(&self) -> Result<()> {
        if self.files.len() < MAX_FILES {
            return Ok(());
        }
        Err(Error::service(
            ErrorCode::TooManyFiles,
            format!(
                "the request already reads {MAX_FILES} distinct files, the most one request \
                 carries; read more segments of those files, or split the load"
            ),
        ))
    }

    fn push_file(&mut self, fd: OwnedFd, identity: FileIdentity) -> usize {
        self.files.push(RequestFile { fd, identity });
        self.files.len() - 1
    }

    /// Buffer backend by name (`auto`, `heap:NAME` or a dma-heap's NAME, `udmabuf`, `memfd`);
    /// `None` or "" lets the service choose.
    pub fn set_backend(&mut self, backend: Option<&str>) -> &mut Self {
        self.backend = backend.filter(|b| !b.is_empty()).map(str::to_string);
        self
    }

    pub fn set_io_mode(&mut self, mode: IoMode) -> &mut Self {
        self.io_mode = mode;
        self
    }

    pub fn set_name(&mut self, name: &str) -> Result<&mut Self> {
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::os(
                libc::EINVAL,
                format!(
                    "buffer name is {} bytes; at most {MAX_NAME_BYTES} are allowed",
                    name.len()
                ),
            ));
        }
        if name.contains('\0') {
            return Err(Error::os(
                libc::EINVAL,
                "buffer name contains a NUL character",
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

    /// Accepts a buffer shared with this uid's other shareable requests for the same content
    /// (same files, unchanged, same segments, backend and digests): one already loaded, in
    /// flight, or kept warm by the service ([`crate::LoadedBuffer::reuse`] says which). The
    /// memory is then shared: do not write to it. Needs interface version 2 (the load fails
    /// with `EOPNOTSUPP` against a version 1 service).
    pub fn set_shareable(&mut self, shareable: bool) -> &mut Self {
        self.shareable = shareable;
        self
    }

    pub fn shareable(&self) -> bool {
        self.shareable
    }

    /// Has the service compute `algorithm` for every segment while it loads (interface
    /// version 2): [`crate::LoadedBuffer::digests`].
    pub fn add_digest(&mut self, algorithm: DigestAlgorithm) -> &mut Self {
        if !self.digests.contains(&algorithm) {
            self.digests.push(algorithm);
        }
        self
    }

    /// Requires segment `segment` (in the order segments were added) to have `value` as its
    /// `algorithm` digest (interface version 2): the service computes it while loading (or
    /// takes the kernel's fs-verity measurement) and fails the load with `DIGEST_MISMATCH`,
    /// handing nothing out, when it differs. A later expectation for the same segment and
    /// algorithm replaces the earlier one. `EINVAL` for a value that is not
    /// [`DIGEST_BYTES`] long; a segment the request does not have fails the load
    /// (`INVALID_ARGUMENT`).
    pub fn expect_digest(
        &mut self,
        segment: usize,
        algorithm: DigestAlgorithm,
        value: &[u8],
    ) -> Result<&mut Self> {
        let value: [u8; DIGEST_BYTES] = value.try_into().map_err(|_| {
            Error::os(
                libc::EINVAL,
                format!(
                    "an expected {algorithm} digest is {DIGEST_BYTES} bytes, not {}",
                    value.len()
                ),
            )
        })?;
        self.expected
            .retain(|e| (e.segment, e.algorithm) != (segment, algorithm));
        self.expected.push(Digest {
            segment,
            algorithm,
            value,
            from_kernel: false,
        });
        Ok(self)
    }

    /// The digests computed for every segment.
    pub fn digests(&self) -> &[DigestAlgorithm] {
        &self.digests
    }

    /// The digests segments must have.
    pub fn expected_digests(&self) -> &[Digest] {
        &self.expected
    }

    /// Whether the request asks for digests (which interface version 1 does not have).
    pub fn uses_digests(&self) -> bool {
        !self.digests.is_empty() || !self.expected.is_empty()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
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

    /// Distinct files the segments read.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Fresh duplicates of the distinct files' fds, for one transaction.
    pub(crate) fn dup_files(&self) -> Result<Vec<OwnedFd>> {
        self.files
            .iter()
            .map(|f| {
                f.fd.as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Error::from_io("duplicating a file's fd", &e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, len: usize) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dmaload-client-req-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(name);
        std::fs::write(&path, vec![1u8; len]).expect("write");
        path
    }

    #[test]
    fn segments_duplicate_the_callers_fd() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let mut request = LoadRequest::new();
        request.add_fd(file.as_fd(), 0, 10, 0).expect("add");
        drop(file);
        // The request's duplicate survives the caller closing its own fd.
        assert!(OpenFlags::of(request.files[0].fd.as_fd()).is_ok());
        assert_eq!(request.dup_files().expect("dup").len(), 1);
    }

    #[test]
    fn segments_of_one_file_share_one_fd() {
        let path = temp_file("shared.bin", 8192);
        let file = std::fs::File::open(&path).expect("open");
        let again = std::fs::File::open(&path).expect("open");
        let mut request = LoadRequest::new();
        for i in 0..10_000u64 {
            request
                .add_fd(file.as_fd(), i % 2, 1, i * 4096)
                .expect("add");
        }
        // Another open of the same file with the same flags is the same file too.
        request.add_fd(again.as_fd(), 0, 1, 1 << 40).expect("add");
        let direct = request.add_file(&path, 0, 1, 1 << 41).expect("add path");
        assert_eq!(request.segments().len(), 10_002);
        assert!(request.segments()[..10_001].iter().all(|s| s.file == 0));
        // O_DIRECT (the path-based open, where the file system has it) makes a second file:
        // the service reads it differently.
        let expected = if direct { 2 } else { 1 };
        assert_eq!(request.file_count(), expected);
        assert_eq!(request.segments()[10_001].file, expected - 1);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn more_distinct_files_than_a_request_carries_are_refused() {
        let dir = std::env::temp_dir().join(format!("dmaload-client-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut request = LoadRequest::new();
        for i in 0..MAX_FILES {
            let path = dir.join(format!("f{i}"));
            std::fs::write(&path, b"x").expect("write");
            request.add_file(&path, 0, 1, i as u64 * 4096).expect("add");
        }
        let path = dir.join("one-too-many");
        std::fs::write(&path, b"x").expect("write");
        let err = request.add_file(&path, 0, 1, 1 << 30).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TooManyFiles), "{err}");
        let file = std::fs::File::open(&path).expect("open");
        let err = request.add_fd(file.as_fd(), 0, 1, 1 << 30).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TooManyFiles), "{err}");
        // A file it already has still takes segments.
        request
            .add_file(&dir.join("f0"), 0, 1, 1 << 31)
            .expect("add");
        assert_eq!(request.file_count(), MAX_FILES);
        assert_eq!(request.segments().len(), MAX_FILES + 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn path_segments_report_the_buffered_fallback() {
        let mut request = LoadRequest::new();
        assert!(!request
            .add_file(Path::new("/proc/self/status"), 0, 0, 0)
            .expect("add"));
        assert!(!request.opened_direct());
        assert!(request.set_name(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
        assert!(request.set_name(&"x".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(request.set_name("a\0b").is_err());
        assert_eq!(request.set_backend(Some("")).backend(), None);
        assert_eq!(IoMode::parse("direct"), Some(IoMode::Direct));
        assert_eq!(IoMode::from_code(3), None);
    }

    #[test]
    fn digests_are_asked_once_and_expected_values_checked() {
        let mut request = LoadRequest::new();
        assert!(!request.uses_digests());
        request
            .add_digest(DigestAlgorithm::Sha256)
            .add_digest(DigestAlgorithm::Sha256);
        assert_eq!(request.digests(), [DigestAlgorithm::Sha256]);
        let err = request
            .expect_digest(0, DigestAlgorithm::FsVerity, &[0; 31])
            .unwrap_err();
        assert_eq!(err.c_code(), -libc::EINVAL, "{err}");
        request
            .expect_digest(0, DigestAlgorithm::FsVerity, &[1; 32])
            .unwrap()
            .expect_digest(0, DigestAlgorithm::FsVerity, &[2; 32])
            .unwrap()
            .expect_digest(1, DigestAlgorithm::FsVerity, &[3; 32])
            .unwrap();
        let values: Vec<_> = request
            .expected_digests()
            .iter()
            .map(|d| (d.segment, d.value[0]))
            .collect();
        assert_eq!(
            values,
            [(0, 2), (1, 3)],
            "the later expectation replaced the first"
        );
        assert!(request.uses_digests());
    }

    #[test]
    fn limits_are_the_interfaces_and_the_headers() {
        use crate::binder_stack::idl::IDmaLoader;
        assert_eq!(MAX_FILES as i32, IDmaLoader::MAX_FILES);
        assert_eq!(MAX_NAME_BYTES as i32, IDmaLoader::MAX_NAME_BYTES);
        let header = include_str!("../include/dmaload.h");
        for line in [
            format!("#define DMALOAD_MAX_FILES {MAX_FILES}\n"),
            format!("#define DMALOAD_MAX_NAME_BYTES {MAX_NAME_BYTES}\n"),
        ] {
            assert!(header.contains(&line), "dmaload.h lacks `{line}`");
        }
    }
}
