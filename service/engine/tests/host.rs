//! Engine tests that run anywhere: memfd backend, validation, limits, cancel, truncation.
//! Real files on ext4 (direct I/O) and tmpfs (no direct I/O).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Barrier, Mutex};

use common::*;
use dmaload_abi::file::resident_bytes;
use dmaload_engine::{
    Backend, BackendChoice, Caller, CancelToken, Engine, EngineConfig, ErrorCode, FallbackKind,
    FdSegment, IoMode, LoadRequest, NoProgress, Progress, Segment, Tunables,
};

const ODD_SIZES: [usize; 9] = [
    1,
    511,
    4095,
    4096,
    4097,
    8191,
    512 * 1024 + 123,
    (2 << 20) + 4096 * 3 + 1,
    7 << 20,
];

#[test]
fn memfd_whole_files_are_byte_exact_direct_and_buffered() {
    let dir = dio_dir();
    let engine = engine();
    for len in ODD_SIZES {
        for direct in [true, false] {
            check_whole_file(&dir, &engine, BackendChoice::Memfd, len, direct);
        }
    }
    assert_eq!(
        engine.total_usage().charged_bytes,
        0,
        "charges released with the buffers"
    );
}

#[test]
fn default_tunables_load_a_larger_file() {
    let dir = dio_dir();
    let engine = engine();
    let len = (130 << 20) + 12345; // more than one 128 MiB gather
    let data = pattern(len, 42);
    let path = write_file(&dir, "big", &data);
    let req = LoadRequest::whole_file(open_direct(&path), "big").with_backend(BackendChoice::Memfd);
    let buf = load(&engine, req).expect("load");
    assert!(contents(&buf)[..len] == data[..]);
    assert_eq!(buf.stats.bytes_direct, len as u64);
    assert!(
        buf.stats.bytes_bounced < 1 << 20,
        "only the unaligned tail is bounced"
    );
    assert!(buf.stats.first_gather <= buf.stats.total);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn chunks_larger_than_gathers_still_complete() {
    let dir = dio_dir();
    let engine = engine();
    let len = (9 << 20) + 3;
    let data = pattern(len, 77);
    let path = write_file(&dir, "g", &data);
    let tunables = Tunables {
        gather_size: 1 << 20,
        chunk_size: 4 << 20,
        ..Tunables::default()
    };
    let req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Memfd,
        IoMode::Auto,
    )
    .with_tunables(tunables);
    let buf = load(&engine, req).expect("load");
    assert!(contents(&buf)[..len] == data[..]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn segments_at_offsets_land_where_asked() {
    let dir = dio_dir();
    let engine = engine();
    let data = pattern(3 << 20, 9);
    let path = write_file(&dir, "segs", &data);
    for direct in [true, false] {
        // (file offset, length, buffer offset): aligned, unaligned on both sides, mismatched
        // alignment between file and buffer, and a gap left in the buffer.
        let layout: [(u64, u64, u64); 4] = [
            (0, 4096, 8192),
            (4097, 100_000, 20_000),
            (1 << 20, 1 << 20, 1 << 20),
            (3 * 4096 + 5, 0, (2 << 20) + 3), // to EOF
        ];
        let segments = fd_segments(&path, direct, &layout);
        let req = request(segments, BackendChoice::Memfd, IoMode::Auto);
        let buf = load(&engine, req).unwrap_or_else(|e| panic!("direct {direct}: {e}"));
        let got = contents(&buf);
        let mut expected = vec![0u8; buf.size as usize];
        for &(fo, len, bo) in &layout {
            let len = if len == 0 {
                data.len() as u64 - fo
            } else {
                len
            };
            expected[bo as usize..(bo + len) as usize]
                .copy_from_slice(&data[fo as usize..(fo + len) as usize]);
        }
        let end = (2 << 20) + 3 + (data.len() - (3 * 4096 + 5));
        assert_eq!(buf.size, (end as u64).div_ceil(4096) * 4096);
        assert!(got == expected, "direct {direct}: segment bytes differ");
        if direct {
            assert!(buf.stats.bytes_bounced > 0);
            assert!(buf
                .stats
                .fallbacks
                .iter()
                .any(|f| f.kind == FallbackKind::BounceBlock));
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tmpfs_files_are_read_buffered_and_say_so() {
    let dir = tmpfs_dir();
    let engine = engine();
    let len = (1 << 20) + 77;
    let data = pattern(len, 3);
    let path = write_file(&dir, "t", &data);
    // tmpfs may accept O_DIRECT opens; try it, else a plain fd.
    let fd: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map(Into::into)
        .unwrap_or_else(|_| open_buffered(&path));
    let req = request(
        vec![FdSegment::whole_file(fd)],
        BackendChoice::Memfd,
        IoMode::Direct,
    );
    let buf = load(&engine, req).expect("load");
    assert!(contents(&buf)[..len] == data[..]);
    assert_eq!(
        buf.stats.bytes_buffered, len as u64,
        "tmpfs has no direct I/O"
    );
    assert!(
        buf.stats
            .fallbacks
            .iter()
            .any(|f| f.kind == FallbackKind::BufferedIo),
        "the buffered fallback is reported: {:?}",
        buf.stats.fallbacks
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn buffered_loads_leave_no_page_cache_and_buffers_are_cloexec() {
    let dir = dio_dir();
    let engine = engine();
    let len = 16 << 20;
    let path = write_file(&dir, "cache", &pattern(len, 21));
    let file = File::open(&path).expect("open");
    // Start cold for this file (its pages were written just now).
    dmaload_abi::file::drop_cached(file.as_fd(), 0, len as u64).expect("fadvise");
    let before = resident_bytes(file.as_fd(), len as u64).expect("mincore");
    let req = request(
        vec![FdSegment::whole_file(open_buffered(&path))],
        BackendChoice::Memfd,
        IoMode::Buffered,
    );
    let buf = load(&engine, req).expect("load");
    let after = resident_bytes(file.as_fd(), len as u64).expect("mincore");
    assert_eq!(buf.stats.bytes_buffered, len as u64);
    assert!(
        after <= before + (len as u64) / 100,
        "buffered load left {after} bytes cached (before {before})"
    );
    // FD_CLOEXEC shows in /proc fdinfo as O_CLOEXEC in the octal "flags:" field.
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", buf.fd.as_raw_fd()))
        .expect("fdinfo");
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .expect("flags");
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "buffer fd is close-on-exec"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn direct_mode_without_o_direct_falls_back_with_a_reason() {
    let dir = dio_dir();
    let engine = engine();
    let path = write_file(&dir, "nd", &pattern(10_000, 1));
    let req = request(
        vec![FdSegment::whole_file(open_buffered(&path))],
        BackendChoice::Memfd,
        IoMode::Direct,
    );
    let buf = load(&engine, req).expect("load");
    let fb = &buf.stats.fallbacks;
    assert!(fb
        .iter()
        .any(|f| f.kind == FallbackKind::BufferedIo && f.reason.contains("O_DIRECT")));
    assert_eq!(buf.stats.bytes_buffered, 10_000);
    std::fs::remove_dir_all(dir).ok();
}

fn expect_code(engine: &Engine, req: LoadRequest, code: ErrorCode) -> String {
    match load(engine, req) {
        Ok(buf) => panic!("expected {code}, got a buffer of {} bytes", buf.size),
        Err(e) => {
            assert_eq!(e.code, code, "{e}");
            assert!(!e.message.is_empty());
            e.message
        }
    }
}

#[test]
fn bad_fds_of_each_kind_are_refused() {
    let dir = dio_dir();
    let engine = engine();
    let path = write_file(&dir, "f", &pattern(5000, 1));
    let write_only: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("wo")
        .into();
    let o_path: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&path)
        .expect("path")
        .into();
    let directory: OwnedFd = File::open(&dir).expect("dir").into();
    let (pipe_reader, _pipe_writer) = std::io::pipe().expect("pipe");
    let char_device: OwnedFd = File::open("/dev/null").expect("null").into();
    for (what, fd) in [
        ("write-only", write_only),
        ("O_PATH", o_path),
        ("directory", directory),
        ("pipe", OwnedFd::from(pipe_reader)),
        ("char device", char_device),
    ] {
        let req = request(
            vec![FdSegment::whole_file(fd)],
            BackendChoice::Memfd,
            IoMode::Auto,
        );
        let msg = expect_code(&engine, req, ErrorCode::BadFd);
        assert!(msg.contains("file 0"), "{what}: {msg}");
    }
    drop(_pipe_writer);
    assert_eq!(fds_to(&path.to_string_lossy()), 0, "no fd leaked");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ranges_and_segments_are_validated_before_allocation() {
    let dir = dio_dir();
    let engine = engine();
    let path = write_file(&dir, "f", &pattern(10_000, 1));
    let seg = |file_offset, length, buffer_offset| FdSegment {
        fd: open_buffered(&path),
        file_offset,
        length,
        buffer_offset,
    };
    let one = |s| request(vec![s], BackendChoice::Memfd, IoMode::Auto);
    expect_code(&engine, one(seg(9_000, 1_001, 0)), ErrorCode::Range);
    expect_code(&engine, one(seg(10_000, 0, 0)), ErrorCode::Range);
    expect_code(&engine, one(seg(20_000, 0, 0)), ErrorCode::Range);
    expect_code(&engine, one(seg(u64::MAX - 10, 100, 0)), ErrorCode::Range);
    expect_code(
        &engine,
        one(seg(0, 10, u64::MAX - 5)),
        ErrorCode::BadSegments,
    );
    expect_code(
        &engine,
        request(vec![], BackendChoice::Memfd, IoMode::Auto),
        ErrorCode::BadSegments,
    );
    let overlapping = vec![seg(0, 5000, 0), seg(0, 5000, 4999)];
    expect_code(
        &engine,
        request(overlapping, BackendChoice::Memfd, IoMode::Auto),
        ErrorCode::BadSegments,
    );
    let empty_file = write_file(&dir, "empty", &[]);
    let req = request(
        vec![FdSegment::whole_file(open_buffered(&empty_file))],
        BackendChoice::Memfd,
        IoMode::Auto,
    );
    expect_code(&engine, req, ErrorCode::Range);
    // Bad tunables.
    for tunables in [
        Tunables {
            chunk_size: 1000,
            ..Tunables::default()
        },
        Tunables {
            gather_size: 4096,
            ..Tunables::default()
        },
        Tunables {
            reader_threads: 1000,
            ..Tunables::default()
        },
    ] {
        let req = one(seg(0, 0, 0)).with_tunables(tunables);
        expect_code(&engine, req, ErrorCode::InvalidArgument);
    }
    let mut req = one(seg(0, 0, 0));
    req.name = "x".repeat(300);
    expect_code(&engine, req, ErrorCode::InvalidArgument);
    assert_eq!(engine.total_usage(), Default::default(), "nothing charged");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unknown_and_disallowed_backends_are_refused() {
    let dir = dio_dir();
    let path = write_file(&dir, "f", &pattern(5000, 1));
    let engine = engine();
    let one = |kind| {
        request(
            vec![FdSegment::whole_file(open_buffered(&path))],
            kind,
            IoMode::Auto,
        )
    };
    expect_code(
        &engine,
        one(BackendChoice::Heap("no-such-heap".into())),
        ErrorCode::UnknownBackend,
    );
    let mut config = EngineConfig::from_system();
    config.allowed_backends = vec!["udmabuf".into()];
    let strict = Engine::new(config).expect("engine");
    expect_code(
        &strict,
        one(BackendChoice::Memfd),
        ErrorCode::BackendNotAllowed,
    );
    let listed = engine.backends();
    let memfd = listed
        .iter()
        .find(|b| b.backend == Backend::Memfd)
        .expect("memfd listed");
    assert!(!memfd.dma_buf && memfd.allowed);
    if !std::path::Path::new("/dev/udmabuf").exists() {
        expect_code(
            &engine,
            one(BackendChoice::Udmabuf),
            ErrorCode::UnknownBackend,
        );
    }
    if !std::path::Path::new("/dev/dma_heap").exists() {
        // Auto on a host without dma-bufs: a memfd, and the result says so plainly.
        let buf = load(&engine, one(BackendChoice::Auto)).expect("auto");
        assert_eq!(buf.backend, Backend::Memfd);
        assert!(!buf.backend.is_dma_buf());
        assert!(buf
            .stats
            .fallbacks
            .iter()
            .any(|f| f.reason.contains("NOT a dma-buf")));
    }
    std::fs::remove_dir_all(dir).ok();
}

fn capped_engine() -> Engine {
    let mut config = EngineConfig::from_system();
    config.global_cap_bytes = 3 << 20;
    config.per_caller_cap_bytes = 2 << 20;
    config.max_buffer_bytes = (3 << 19) + 4096;
    Engine::new(config).expect("engine")
}

#[test]
fn caps_are_enforced_before_allocation_and_released_on_drop() {
    let dir = dio_dir();
    let engine = capped_engine();
    let path = write_file(&dir, "f", &pattern(2 << 20, 1));
    let part = |len| {
        request(
            vec![FdSegment {
                fd: open_direct(&path),
                file_offset: 0,
                length: len,
                buffer_offset: 0,
            }],
            BackendChoice::Memfd,
            IoMode::Auto,
        )
    };
    let load_as = |uid, req| engine.load(Caller::new(uid), req, &CancelToken::new(), &NoProgress);
    assert_eq!(
        load_as(1, part(2 << 20)).unwrap_err().code,
        ErrorCode::TooLarge
    );
    let a = load_as(1, part(1 << 20)).expect("first");
    assert_eq!(engine.usage(1).charged_bytes, 1 << 20);
    assert_eq!(engine.usage(1).loads_in_flight, 0);
    assert_eq!(
        load_as(1, part((1 << 20) + 1)).unwrap_err().code,
        ErrorCode::CallerCap
    );
    let b = load_as(2, part(3 << 19)).expect("other caller");
    assert_eq!(
        load_as(3, part(1 << 20)).unwrap_err().code,
        ErrorCode::GlobalCap
    );
    drop(a);
    assert_eq!(engine.usage(1).charged_bytes, 0);
    let c = load_as(3, part(1 << 20)).expect("after release");
    drop((b, c));
    assert_eq!(engine.total_usage(), Default::default());
    std::fs::remove_dir_all(dir).ok();
}

/// A direct load whose file and buffer offsets differ in alignment: each reader streams its
/// chunks through a 1 MiB bounce block, the load's working memory.
fn misaligned(path: &std::path::Path, name: &str) -> LoadRequest {
    let mut req = request(
        vec![FdSegment {
            fd: open_direct(path),
            file_offset: 1,
            length: 0,
            buffer_offset: 0,
        }],
        BackendChoice::Memfd,
        IoMode::Direct,
    )
    .with_tunables(Tunables {
        chunk_size: 1 << 20,
        reader_threads: 4,
        ..small_tunables()
    });
    req.name = name.into();
    req
}

/// Records what the engine charges while the load runs.
struct UsageDuringLoad<'a>(&'a Engine, Mutex<Option<dmaload_engine::Usage>>);

impl Progress for UsageDuringLoad<'_> {
    fn progress(&self, _done: u64, _total: u64) {
        let mut seen = self.1.lock().expect("lock");
        if seen.is_none() {
            *seen = Some(self.0.usage(31));
        }
    }
}

#[test]
fn working_memory_is_charged_before_allocation_shrunk_to_fit_and_reported() {
    let dir = dio_dir();
    let data = pattern((8 << 20) + 5, 31);
    let path = write_file(&dir, "f", &data);
    let size = (8u64 << 20) + 4096;
    let engine = engine();
    let readers = engine.worker_threads().1.min(4) as u64;
    // Room for everything: one 1 MiB block per reader, charged while the load runs.
    let sink = UsageDuringLoad(&engine, Mutex::new(None));
    let buf = engine
        .load(
            Caller::new(31),
            misaligned(&path, "working-full"),
            &CancelToken::new(),
            &sink,
        )
        .expect("load");
    assert!(buf.stats.bytes_direct > 0, "{:?}", buf.stats);
    assert_eq!(buf.stats.working_bytes, readers << 20, "{:?}", buf.stats);
    let during = sink.1.lock().expect("lock").expect("progress");
    assert_eq!(
        (during.charged_bytes, during.working_bytes),
        (size, readers << 20)
    );
    assert_eq!(contents(&buf)[..data.len() - 1], data[1..]);
    drop(buf);
    assert_eq!(engine.usage(31), Default::default());
    assert_eq!(engine.total_usage().working_bytes, 0);
    // 64 readers asked for: no more than the engine has workers, each with one block.
    let mut greedy = misaligned(&path, "working-greedy");
    greedy.tunables.reader_threads = 64;
    greedy.tunables.chunk_size = 64 << 10;
    let buf = load(&engine, greedy).expect("greedy load");
    let workers = engine.worker_threads().1 as u64;
    assert_eq!(
        buf.stats.working_bytes,
        workers.min(64) << 20,
        "{:?}",
        buf.stats
    );
    drop(buf);

    // A caller cap 2.5 MiB over the buffer: two readers' blocks fit, the load still runs.
    let mut config = EngineConfig::from_system();
    config.per_caller_cap_bytes = size + (5 << 19);
    let capped = Engine::new(config.clone()).expect("engine");
    let buf = load(&capped, misaligned(&path, "working-shrunk")).expect("shrunk load");
    assert_eq!(buf.stats.working_bytes, 2 << 20, "{:?}", buf.stats);
    assert!(
        buf.stats
            .fallbacks
            .iter()
            .any(|f| f.kind == FallbackKind::WorkingMemory),
        "{:?}",
        buf.stats.fallbacks
    );
    assert_eq!(contents(&buf)[..data.len() - 1], data[1..]);
    drop(buf);
    assert_eq!(capped.total_usage(), Default::default());

    // Half a block over the buffer: not even one reader fits. Refused before anything is
    // allocated (no memfd was made), with the working memory named.
    config.per_caller_cap_bytes = size + (1 << 19);
    let tight = Engine::new(config).expect("engine");
    let err = load(&tight, misaligned(&path, "working-refused")).expect_err("over the cap");
    assert_eq!(err.code, ErrorCode::CallerCap, "{err}");
    assert!(err.message.contains("working memory"), "{err}");
    assert_eq!(fds_to("working-refused"), 0);
    assert_eq!(tight.total_usage(), Default::default());
    // The same buffer read through the page cache needs no bounce block: it fits.
    let buffered = request(
        vec![FdSegment {
            fd: open_buffered(&path),
            file_offset: 1,
            length: 0,
            buffer_offset: 0,
        }],
        BackendChoice::Memfd,
        IoMode::Buffered,
    );
    let buf = load(&tight, buffered).expect("buffered load");
    assert_eq!(buf.stats.working_bytes, 0);
    drop(buf);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn loads_share_the_engines_worker_threads() {
    let dir = dio_dir();
    let path = write_file(&dir, "f", &pattern(16 << 20, 32));
    let engine = engine();
    let (_, size) = engine.worker_threads();
    for _ in 0..5 {
        let req = request(
            vec![FdSegment::whole_file(open_direct(&path))],
            BackendChoice::Memfd,
            IoMode::Direct,
        );
        load(&engine, req).expect("load");
        let (started, _) = engine.worker_threads();
        assert!(started >= 1 && started <= size, "{started} of {size}");
    }
    // Five loads asked for several helpers each; the threads that helped the first loads
    // helped the later ones.
    assert!(engine.worker_threads().0 <= size);
    let (pooled, max) = engine.pooled_bytes();
    assert!(
        pooled > 0 && pooled <= max,
        "{pooled} of {max} bytes of bounce blocks kept"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A progress sink that runs an action once, after the first chunk.
struct OnFirstProgress<F: Fn() + Sync>(F, Mutex<bool>);

impl<F: Fn() + Sync> Progress for OnFirstProgress<F> {
    fn progress(&self, _done: u64, _total: u64) {
        let mut fired = self.1.lock().expect("lock");
        if !*fired {
            *fired = true;
            (self.0)();
        }
    }
}

#[test]
fn cancel_mid_load_frees_everything() {
    let dir = dio_dir();
    let engine = engine();
    let path = write_file(&dir, "f", &pattern(24 << 20, 5));
    let cancel = CancelToken::new();
    let sink = OnFirstProgress(|| cancel.cancel(), Mutex::new(false));
    let req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Memfd,
        IoMode::Auto,
    )
    .with_tunables(Tunables {
        chunk_size: 64 << 10,
        reader_threads: 1,
        ..small_tunables()
    });
    let mut req = req;
    req.name = "cancel-me".into();
    let err = engine
        .load(Caller::new(7), req, &cancel, &sink)
        .expect_err("cancelled");
    assert_eq!(err.code, ErrorCode::Cancelled, "{err}");
    assert_eq!(
        engine.usage(7),
        Default::default(),
        "charge and slot released"
    );
    assert_eq!(fds_to("cancel-me"), 0, "memfd closed");
    assert_eq!(fds_to(&path.to_string_lossy()), 0, "file fd closed");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_file_truncated_mid_load_is_a_specific_error() {
    let dir = dio_dir();
    let engine = engine();
    for direct in [true, false] {
        let path = write_file(&dir, "f", &pattern(24 << 20, 5));
        let truncate = || {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open for truncate");
            f.set_len(1 << 20).expect("truncate");
        };
        let sink = OnFirstProgress(truncate, Mutex::new(false));
        let req = request(
            vec![FdSegment::whole_file(open(&path, direct))],
            BackendChoice::Memfd,
            IoMode::Auto,
        )
        .with_tunables(Tunables {
            chunk_size: 64 << 10,
            reader_threads: 1,
            ..small_tunables()
        });
        let err = engine
            .load(Caller::new(8), req, &CancelToken::new(), &sink)
            .expect_err("shrunk");
        assert_eq!(err.code, ErrorCode::FileChanged, "direct {direct}: {err}");
        assert_eq!(engine.usage(8), Default::default());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn concurrent_loads_beyond_the_limit_are_busy() {
    let dir = dio_dir();
    let mut config = EngineConfig::from_system();
    config.max_concurrent_loads = 1;
    let engine = Arc::new(Engine::new(config).expect("engine"));
    let path = write_file(&dir, "f", &pattern(4 << 20, 5));
    let in_load = Arc::new(Barrier::new(2));
    let may_finish = Arc::new(Barrier::new(2));
    let first = {
        let (engine, path, in_load, may_finish) = (
            engine.clone(),
            path.clone(),
            in_load.clone(),
            may_finish.clone(),
        );
        std::thread::spawn(move || {
            let sink = OnFirstProgress(
                || {
                    in_load.wait();
                    may_finish.wait();
                },
                Mutex::new(false),
            );
            let req = request(
                vec![FdSegment::whole_file(open_direct(&path))],
                BackendChoice::Memfd,
                IoMode::Auto,
            );
            engine
                .load(Caller::new(1), req, &CancelToken::new(), &sink)
                .map(|b| b.size)
        })
    };
    in_load.wait();
    let req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Memfd,
        IoMode::Auto,
    );
    let err = engine
        .load(Caller::new(2), req, &CancelToken::new(), &NoProgress)
        .expect_err("busy");
    assert_eq!(err.code, ErrorCode::Busy);
    may_finish.wait();
    assert_eq!(first.join().expect("thread").expect("first load"), 4 << 20);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn engine_is_shared_by_many_threads() {
    let dir = dio_dir();
    let engine = Arc::new(engine());
    let path = write_file(&dir, "f", &pattern((3 << 20) + 5, 11));
    let data = pattern((3 << 20) + 5, 11);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (engine, path) = (engine.clone(), path.clone());
            std::thread::spawn(move || {
                let req = request(
                    vec![FdSegment::whole_file(open(&path, i % 2 == 0))],
                    BackendChoice::Memfd,
                    IoMode::Auto,
                );
                let buf = engine
                    .load(Caller::new(i), req, &CancelToken::new(), &NoProgress)
                    .expect("load");
                contents(&buf)
            })
        })
        .collect();
    for t in threads {
        let got = t.join().expect("thread");
        assert!(got[..data.len()] == data[..]);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "io-uring")]
fn io_uring_engine() -> Engine {
    let mut config = EngineConfig::from_system();
    config.io_engine = dmaload_engine::IoEngine::IoUring;
    Engine::new(config).expect("engine")
}

#[cfg(feature = "io-uring")]
/// io_uring is set up here unless the kernel or a sandbox denies it; either way the load
/// must say what it used.
fn check_io_engine_reported(buf: &dmaload_engine::LoadedBuffer) {
    let uring_here = dmaload_engine::uring::Ring::new(1).is_ok();
    let fell_back = buf
        .stats
        .fallbacks
        .iter()
        .any(|f| f.kind == FallbackKind::IoEngine);
    assert_eq!(
        fell_back, !uring_here,
        "io_uring usable here: {uring_here}; fallbacks: {:?}",
        buf.stats.fallbacks
    );
}

#[cfg(feature = "io-uring")]
#[test]
fn io_uring_reads_are_byte_exact_at_odd_sizes_and_offsets() {
    let dir = dio_dir();
    let engine = io_uring_engine();
    for len in ODD_SIZES {
        check_whole_file(&dir, &engine, BackendChoice::Memfd, len, true);
    }
    // Several pieces in flight per read, segments at unaligned offsets, a chunk larger than
    // a gather.
    let data = pattern((9 << 20) + 3, 31);
    let path = write_file(&dir, "uring", &data);
    let layout: [(u64, u64, u64); 3] = [
        (0, 4 << 20, 0),
        (4097, 1_000_000, (4 << 20) + 5),
        (5 << 20, 0, 6 << 20), // to EOF
    ];
    let segments = fd_segments(&path, true, &layout);
    let req = request(segments, BackendChoice::Memfd, IoMode::Direct).with_tunables(Tunables {
        gather_size: 2 << 20,
        chunk_size: 4 << 20,
        ..Tunables::default()
    });
    let buf = load(&engine, req).expect("io_uring load");
    check_io_engine_reported(&buf);
    let got = contents(&buf);
    for &(fo, len, bo) in &layout {
        let len = if len == 0 {
            data.len() as u64 - fo
        } else {
            len
        };
        assert!(
            got[bo as usize..(bo + len) as usize] == data[fo as usize..(fo + len) as usize],
            "segment at file offset {fo} differs"
        );
    }
    assert_eq!(engine.total_usage().charged_bytes, buf.size);
    drop(buf);
    assert_eq!(engine.total_usage().charged_bytes, 0);
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "io-uring")]
#[test]
fn io_uring_reads_see_a_truncated_file() {
    let dir = dio_dir();
    let engine = io_uring_engine();
    let path = write_file(&dir, "f", &pattern(24 << 20, 6));
    let truncate = || {
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for truncate");
        f.set_len((1 << 20) + 512).expect("truncate");
    };
    let sink = OnFirstProgress(truncate, Mutex::new(false));
    let req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Memfd,
        IoMode::Direct,
    )
    .with_tunables(Tunables {
        chunk_size: 1 << 20,
        reader_threads: 1,
        ..small_tunables()
    });
    let err = engine
        .load(Caller::new(9), req, &CancelToken::new(), &sink)
        .expect_err("shrunk");
    assert_eq!(err.code, ErrorCode::FileChanged, "{err}");
    assert_eq!(engine.usage(9), Default::default());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn segments_share_their_file() {
    let dir = dio_dir();
    let engine = engine();
    let data = pattern(40 << 10, 21);
    let path = write_file(&dir, "shared", &data);
    // 10,000 segments of 4 bytes of one file, in reverse order in the buffer: one fd.
    let count = 10_000u64;
    let mut req = LoadRequest::whole_file(open_buffered(&path), "shared")
        .with_backend(BackendChoice::Memfd)
        .with_tunables(small_tunables());
    req.segments = (0..count)
        .map(|i| Segment {
            file: 0,
            file_offset: i * 4,
            length: 4,
            buffer_offset: (count - 1 - i) * 4,
        })
        .collect();
    let buf = load(&engine, req).expect("10,000 segments of one file");
    let got = contents(&buf);
    for i in 0..count as usize {
        let at = (count as usize - 1 - i) * 4;
        assert_eq!(&got[at..at + 4], &data[i * 4..i * 4 + 4], "segment {i}");
    }

    // Two files, segments interleaved, one of them read twice.
    let other = pattern(8192, 22);
    let other_path = write_file(&dir, "other", &other);
    let mut req = request(vec![], BackendChoice::Memfd, IoMode::Auto);
    req.files = vec![open_direct(&path), open_buffered(&other_path)];
    req.segments = vec![
        Segment {
            file: 1,
            file_offset: 0,
            length: 8192,
            buffer_offset: 0,
        },
        Segment {
            file: 0,
            file_offset: 4096,
            length: 4096,
            buffer_offset: 8192,
        },
        Segment {
            file: 1,
            file_offset: 100,
            length: 0,
            buffer_offset: 3 << 12,
        },
    ];
    let buf = load(&engine, req).expect("two files");
    let got = contents(&buf);
    assert_eq!(&got[..8192], &other[..]);
    assert_eq!(&got[8192..12288], &data[4096..8192]);
    assert_eq!(&got[12288..12288 + 8092], &other[100..]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn file_tables_are_validated() {
    let dir = dio_dir();
    let path = write_file(&dir, "f", &pattern(10_000, 3));
    let mut config = EngineConfig::from_system();
    config.max_files = 3;
    config.max_segments = 100;
    let engine = Engine::new(config).expect("engine");
    let req = |files: usize, segments: Vec<Segment>| {
        let mut r = request(vec![], BackendChoice::Memfd, IoMode::Auto);
        r.files = (0..files).map(|_| open_buffered(&path)).collect();
        r.segments = segments;
        r
    };
    let seg = |file, buffer_offset| Segment {
        file,
        file_offset: 0,
        length: 10,
        buffer_offset,
    };
    let msg = expect_code(
        &engine,
        req(4, (0..4).map(|i| seg(i, i as u64 * 4096)).collect()),
        ErrorCode::TooManyFiles,
    );
    assert!(msg.contains("4 files") && msg.contains('3'), "{msg}");
    let msg = expect_code(
        &engine,
        req(1, (0..101).map(|i| seg(0, i * 4096)).collect()),
        ErrorCode::BadSegments,
    );
    assert!(msg.contains("101 segments"), "{msg}");
    let msg = expect_code(&engine, req(2, vec![seg(2, 0)]), ErrorCode::BadSegments);
    assert!(msg.contains("names file 2"), "{msg}");
    let msg = expect_code(&engine, req(2, vec![seg(0, 0)]), ErrorCode::BadSegments);
    assert!(msg.contains("file 1 is read by no segment"), "{msg}");
    // A bad file is refused once, named by its index, whatever number of segments read it.
    let write_only: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .into();
    let mut bad = req(1, (0..50).map(|i| seg(0, i * 4096)).collect());
    bad.files.push(write_only);
    bad.segments.push(seg(1, 1 << 20));
    let msg = expect_code(&engine, bad, ErrorCode::BadFd);
    assert!(msg.starts_with("file 1:"), "{msg}");
    assert_eq!(engine.total_usage(), Default::default());
    std::fs::remove_dir_all(dir).ok();
}
