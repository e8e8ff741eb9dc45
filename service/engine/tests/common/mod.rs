//! Helpers shared by the engine's integration tests: real files on real file systems.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dmaload_abi::digest::{parse_hex, DIGEST_BYTES};
use dmaload_abi::dma_buf::copy_out;
use dmaload_engine::{
    BackendChoice, Caller, CancelToken, Digest, DigestAlgorithm, Engine, EngineConfig, FdSegment,
    IoMode, LoadRequest, LoadedBuffer, NoProgress, Tunables,
};

/// A directory on a file system with direct I/O (ext4 here): `DMALOAD_TEST_DIR` or the
/// system temp dir.
pub fn dio_dir() -> PathBuf {
    let base = std::env::var_os("DMALOAD_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    unique_dir(&base)
}

/// A directory on tmpfs (no real direct I/O).
pub fn tmpfs_dir() -> PathBuf {
    unique_dir(Path::new("/dev/shm"))
}

fn unique_dir(base: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = base.join(format!(
        "dmaload-engine-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Deterministic, position-dependent content (no two 4 KiB blocks alike).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut f = File::create(&path).expect("create file");
    f.write_all(bytes).expect("write file");
    f.sync_all().expect("sync file");
    path
}

pub fn open_direct(path: &Path) -> OwnedFd {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open O_DIRECT")
        .into()
}

pub fn open_buffered(path: &Path) -> OwnedFd {
    File::open(path).expect("open").into()
}

pub fn open(path: &Path, direct: bool) -> OwnedFd {
    if direct {
        open_direct(path)
    } else {
        open_buffered(path)
    }
}

/// One fd segment per `(file offset, length, buffer offset)` of `layout`, each with its own
/// open of `path` (with `O_DIRECT` when `direct`).
pub fn fd_segments(path: &Path, direct: bool, layout: &[(u64, u64, u64)]) -> Vec<FdSegment> {
    layout
        .iter()
        .map(|&(file_offset, length, buffer_offset)| FdSegment {
            fd: open(path, direct),
            file_offset,
            length,
            buffer_offset,
        })
        .collect()
}

pub fn engine() -> Engine {
    Engine::new(EngineConfig::from_system()).expect("engine")
}

pub fn small_tunables() -> Tunables {
    // Small gathers and chunks so that even small files cross many boundaries.
    Tunables {
        gather_size: 2 << 20,
        chunk_size: 256 << 10,
        ..Tunables::default()
    }
}

pub fn request(segments: Vec<FdSegment>, buffer: BackendChoice, io_mode: IoMode) -> LoadRequest {
    LoadRequest::from_fd_segments(segments, "test")
        .with_backend(buffer)
        .with_io_mode(io_mode)
        .with_tunables(small_tunables())
}

pub fn load(engine: &Engine, req: LoadRequest) -> Result<LoadedBuffer, dmaload_engine::LoadError> {
    engine.load(Caller::new(1000), req, &CancelToken::new(), &NoProgress)
}

/// The buffer's bytes.
pub fn contents(buf: &LoadedBuffer) -> Vec<u8> {
    copy_out(buf.fd.as_fd(), buf.size as usize).expect("copy out")
}

/// Number of fds this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Loads `data` from a file in `dir` with each combination given and checks every byte.
pub fn check_whole_file(
    dir: &Path,
    engine: &Engine,
    kind: BackendChoice,
    len: usize,
    direct: bool,
) {
    let data = pattern(len, len as u64 + 7);
    let path = write_file(dir, &format!("f{len}-{direct}"), &data);
    let req = request(
        vec![FdSegment::whole_file(open(&path, direct))],
        kind.clone(),
        if direct {
            IoMode::Direct
        } else {
            IoMode::Buffered
        },
    );
    let buf =
        load(engine, req).unwrap_or_else(|e| panic!("{kind:?} len {len} direct {direct}: {e}"));
    let page = 4096;
    assert_eq!(
        buf.size,
        (len as u64).div_ceil(page) * page,
        "size is page-rounded"
    );
    let got = contents(&buf);
    assert!(
        got[..len] == data[..],
        "{kind:?} len {len} direct {direct}: content differs"
    );
    assert!(
        got[len..].iter().all(|&b| b == 0),
        "tail after the file is zero"
    );
    assert_eq!(
        buf.stats.bytes_direct + buf.stats.bytes_buffered,
        len as u64
    );
    if direct {
        assert_eq!(
            buf.stats.bytes_direct, len as u64,
            "direct fd on ext4 is read direct"
        );
    } else {
        assert_eq!(buf.stats.bytes_buffered, len as u64);
    }
    std::fs::remove_file(path).ok();
}

/// Number of this process's fds whose target contains `needle` (a file path or a memfd
/// name): tests run in parallel, so leaks are counted per object, not in total.
pub fn fds_to(needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains(needle))
        .count()
}

/// Both digest algorithms.
pub const BOTH: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::FsVerity];

/// Runs `tool args... path` and returns the digest it prints first (`HEX  path` as sha256sum,
/// `sha256:HEX path` as `fsverity digest`).
pub fn tool_digest(tool: &str, args: &[&str], path: &Path) -> [u8; DIGEST_BYTES] {
    let out = std::process::Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {tool} failed ({e}): install it (apt-get install coreutils fsverity)")
        });
    assert!(out.status.success(), "{tool}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().next().unwrap_or_default();
    let hex = word.rsplit(':').next().unwrap_or_default();
    parse_hex(hex).unwrap_or_else(|| panic!("{tool} printed {text:?}"))
}

/// What `sha256sum` and `fsverity digest` say of the file at `path`.
pub fn tools(path: &Path) -> [(DigestAlgorithm, [u8; DIGEST_BYTES]); 2] {
    [
        (DigestAlgorithm::Sha256, tool_digest("sha256sum", &[], path)),
        (
            DigestAlgorithm::FsVerity,
            tool_digest("fsverity", &["digest"], path),
        ),
    ]
}

/// `req` computing `algorithms` for every segment.
pub fn with_digests(mut req: LoadRequest, algorithms: &[DigestAlgorithm]) -> LoadRequest {
    for &a in algorithms {
        req = req.with_digest(a);
    }
    req
}

/// The buffer's `algorithm` digest of `segment`.
pub fn digest_of(buf: &LoadedBuffer, segment: usize, algorithm: DigestAlgorithm) -> Digest {
    *buf.digests
        .iter()
        .find(|d| d.segment == segment && d.algorithm == algorithm)
        .unwrap_or_else(|| panic!("no {algorithm} digest of segment {segment}"))
}
