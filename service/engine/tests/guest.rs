//! dma-heap and udmabuf tests: they need /dev/dma_heap/system and /dev/udmabuf, which only
//! the virtual device has. They are `#[ignore]`d on hosts and run in the guest by
//! `tools/test.d/30-engine-guest` (`cargo test -- --ignored`), where a missing device fails
//! them.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use common::*;
use dmaload_engine::{
    Backend, BackendChoice, Caller, CancelToken, DigestAlgorithm, Engine, EngineConfig, ErrorCode,
    FallbackKind, FdSegment, IoMode, Progress, Tunables,
};

const SIZES: [usize; 7] = [
    1,
    4095,
    4096,
    4097,
    512 * 1024 + 123,
    (2 << 20) + 4096 * 3 + 1,
    9 << 20,
];

fn system_heap() -> BackendChoice {
    BackendChoice::Heap("system".into())
}

#[test]
#[ignore = "needs /dev/dma_heap/system: runs in the virtual device"]
fn heap_loads_are_byte_exact() {
    let dir = dio_dir();
    let engine = engine();
    for len in SIZES {
        for direct in [true, false] {
            check_whole_file(&dir, &engine, system_heap(), len, direct);
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs /dev/udmabuf: runs in the virtual device"]
fn udmabuf_loads_are_byte_exact() {
    let dir = dio_dir();
    let engine = engine();
    for len in SIZES {
        for direct in [true, false] {
            check_whole_file(&dir, &engine, BackendChoice::Udmabuf, len, direct);
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn segments_at_offsets_in_dma_bufs() {
    let dir = dio_dir();
    let engine = engine();
    let data = pattern(3 << 20, 9);
    let path = write_file(&dir, "segs", &data);
    let layout: [(u64, u64, u64); 3] = [
        (4097, 100_000, 20_000),
        (1 << 20, 1 << 20, 1 << 20),
        (3 * 4096 + 5, 0, (2 << 20) + 3),
    ];
    for kind in [system_heap(), BackendChoice::Udmabuf] {
        for direct in [true, false] {
            let segments = fd_segments(&path, direct, &layout);
            let buf = load(&engine, request(segments, kind.clone(), IoMode::Auto))
                .unwrap_or_else(|e| panic!("{kind:?} direct {direct}: {e}"));
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
            assert!(
                contents(&buf) == expected,
                "{kind:?} direct {direct}: bytes differ"
            );
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn backends_auto_and_names() {
    let engine = engine();
    let listed = engine.backends();
    let names: Vec<String> = listed.iter().map(|b| b.backend.name()).collect();
    assert!(names.contains(&"heap:system".to_string()), "{names:?}");
    assert!(names.contains(&"udmabuf".to_string()), "{names:?}");
    let dir = dio_dir();
    let path = write_file(&dir, "f", &pattern(300_000, 1));
    let mut req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Auto,
        IoMode::Auto,
    );
    req.name = "guest-auto-name".into();
    let buf = load(&engine, req).expect("auto");
    assert!(
        buf.backend.is_dma_buf(),
        "auto picks a dma-buf here, got {}",
        buf.backend
    );
    // The dma-buf carries its debug name (fdinfo shows it).
    let fdinfo =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", buf.fd.as_fd().as_raw_fd()))
            .expect("fdinfo");
    assert!(
        fdinfo.contains("guest-auto-name"),
        "name missing from fdinfo:\n{fdinfo}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn udmabuf_over_its_size_limit_falls_back_to_a_heap() {
    let dir = dio_dir();
    // A 1 MiB limit (as if udmabuf.size_limit_mb=1) makes a 2 MiB file too large.
    let limit_file = dir.join("size_limit_mb");
    std::fs::write(&limit_file, "1\n").expect("limit file");
    let mut config = EngineConfig::from_system();
    config.udmabuf_size_limit_file = limit_file;
    let engine = Engine::new(config).expect("engine");
    let data = pattern(2 << 20, 4);
    let path = write_file(&dir, "f", &data);
    let req = request(
        vec![FdSegment::whole_file(open_direct(&path))],
        BackendChoice::Udmabuf,
        IoMode::Auto,
    );
    let buf = load(&engine, req).expect("fallback");
    assert_eq!(buf.backend, Backend::Heap("system".into()));
    assert!(buf
        .stats
        .fallbacks
        .iter()
        .any(|f| f.kind == FallbackKind::Backend && f.reason.contains("size_limit_mb")));
    assert!(contents(&buf)[..data.len()] == data[..]);
    // The kernel's own limit is respected too: udmabuf is listed with it.
    let real = engine_limit();
    assert!(real > 0);
    std::fs::remove_dir_all(dir).ok();
}

fn engine_limit() -> u64 {
    let engine = engine();
    engine
        .backends()
        .into_iter()
        .find(|b| b.backend == Backend::Udmabuf)
        .map(|b| b.max_buffer_bytes)
        .unwrap_or(0)
}

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
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn cancel_and_truncation_in_dma_buf_backends() {
    let dir = dio_dir();
    let engine = engine();
    let small = Tunables {
        gather_size: 2 << 20,
        chunk_size: 64 << 10,
        reader_threads: 1,
        ..Tunables::default()
    };
    for kind in [system_heap(), BackendChoice::Udmabuf] {
        let path = write_file(&dir, "f", &pattern(16 << 20, 5));
        let cancel = CancelToken::new();
        let sink = OnFirstProgress(|| cancel.cancel(), Mutex::new(false));
        let req = request(
            vec![FdSegment::whole_file(open_direct(&path))],
            kind.clone(),
            IoMode::Auto,
        )
        .with_tunables(small);
        let err = engine
            .load(Caller::new(5), req, &cancel, &sink)
            .expect_err("cancelled");
        assert_eq!(err.code, ErrorCode::Cancelled, "{kind:?}: {err}");
        assert_eq!(engine.usage(5), Default::default());

        let truncate = || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_len(1 << 20).expect("truncate");
        };
        let sink = OnFirstProgress(truncate, Mutex::new(false));
        let req = request(
            vec![FdSegment::whole_file(open_direct(&path))],
            kind.clone(),
            IoMode::Auto,
        )
        .with_tunables(small);
        let err = engine
            .load(Caller::new(5), req, &CancelToken::new(), &sink)
            .expect_err("shrunk");
        assert_eq!(err.code, ErrorCode::FileChanged, "{kind:?}: {err}");
        assert_eq!(engine.usage(5), Default::default());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs /dev/dma_heap/system: runs in the virtual device"]
fn heap_loads_charge_their_bounce_ring_and_keep_the_heap_open() {
    let dir = dio_dir();
    let heap_fds = || fds_to("/dev/dma_heap/system");
    let before = heap_fds();
    let engine = engine();
    assert_eq!(
        heap_fds(),
        before + 1,
        "the engine opens the heap once, when it starts"
    );
    let data = pattern(64 << 20, 41);
    let path = write_file(&dir, "f", &data);
    let req = || {
        request(
            vec![FdSegment::whole_file(open_direct(&path))],
            system_heap(),
            IoMode::Direct,
        )
        .with_tunables(Tunables {
            chunk_size: 8 << 20,
            reader_threads: 4,
            bounce_buffers: 2,
            ..Tunables::default()
        })
    };
    let buf = load(&engine, req()).expect("heap load");
    // max(bounce_buffers, readers + 1) = 5 blocks of a chunk and its alignment, charged.
    let working = buf.stats.working_bytes;
    let block = working / 5;
    assert!(
        working % 5 == 0 && block > 8 << 20 && block <= (8 << 20) + 8192,
        "{:?}",
        buf.stats
    );
    assert!(contents(&buf)[..data.len()] == data[..]);
    drop(buf);
    for _ in 0..3 {
        load(&engine, req()).expect("heap load");
    }
    assert_eq!(heap_fds(), before + 1, "loads reuse the engine's heap fd");
    assert_eq!(engine.total_usage(), Default::default());

    // A caller cap 20 MiB over the buffer: one reader with two blocks fits, not more.
    let mut config = EngineConfig::from_system();
    config.per_caller_cap_bytes = (64 << 20) + (20 << 20);
    let capped = Engine::new(config.clone()).expect("engine");
    let buf = load(&capped, req()).expect("shrunk load");
    assert_eq!(buf.stats.working_bytes, 2 * block, "{:?}", buf.stats);
    assert!(buf
        .stats
        .fallbacks
        .iter()
        .any(|f| f.kind == FallbackKind::WorkingMemory));
    assert!(contents(&buf)[..data.len()] == data[..]);
    drop(buf);
    // Less than a block over the buffer: refused before the heap allocates anything.
    config.per_caller_cap_bytes = (64 << 20) + 4096;
    let tight = Engine::new(config).expect("engine");
    let err = load(&tight, req()).expect_err("over the cap");
    assert_eq!(err.code, ErrorCode::CallerCap, "{err}");
    assert!(err.message.contains("working memory"), "{err}");
    assert_eq!(tight.total_usage(), Default::default());
    std::fs::remove_dir_all(dir).ok();
}

fn assert_shmem(buf: &dmaload_engine::LoadedBuffer) {
    assert!(
        buf.stats.memory.starts_with("shmem"),
        "{}",
        buf.stats.memory
    );
}

/// A buffer of shmem memory whose load says it found too few hugetlb pages.
fn assert_shmem_for_want_of_hugetlb_pages(buf: &dmaload_engine::LoadedBuffer) {
    assert_shmem(buf);
    assert!(
        buf.stats
            .fallbacks
            .iter()
            .any(|f| f.kind == FallbackKind::SmallPages && f.reason.contains("hugetlb pages")),
        "{:?}",
        buf.stats.fallbacks
    );
}

/// Sets the size of the 2 MiB hugetlb pool for a test and restores it afterwards.
struct HugetlbPool {
    before: u64,
}

const NR_HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

fn read_pool(name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{name}"))
        .expect("hugetlb sysfs")
        .trim()
        .parse()
        .expect("number")
}

impl HugetlbPool {
    /// Returns the pages the kernel actually reserved (fragmentation may give fewer).
    fn set(pages: u64) -> (HugetlbPool, u64) {
        let pool = HugetlbPool {
            before: read_pool("nr_hugepages"),
        };
        std::fs::write(NR_HUGEPAGES, pages.to_string()).expect("set nr_hugepages");
        (pool, read_pool("nr_hugepages"))
    }
}

impl Drop for HugetlbPool {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.before.to_string());
    }
}

#[test]
#[ignore = "needs /dev/udmabuf and a hugetlb pool: runs in the virtual device"]
fn udmabuf_memory_comes_from_the_hugetlb_pool_when_it_has_room() {
    let dir = dio_dir();
    let len = (24 << 20) + 5;
    let data = pattern(len, 99);
    let path = write_file(&dir, "huge", &data);
    let load_udmabuf = |engine: &Engine| {
        let req = request(
            vec![FdSegment::whole_file(open_direct(&path))],
            BackendChoice::Udmabuf,
            IoMode::Direct,
        );
        let buf = load(engine, req).expect("udmabuf load");
        assert!(contents(&buf)[..len] == data[..], "udmabuf content differs");
        buf
    };
    let engine = engine();
    // No pool: shmem memory, and nothing to report about hugetlb.
    let (_pool, got) = HugetlbPool::set(0);
    assert_eq!(got, 0);
    let buf = load_udmabuf(&engine);
    assert_shmem(&buf);
    assert!(
        !buf.stats
            .fallbacks
            .iter()
            .any(|f| f.reason.contains("hugetlb")),
        "{:?}",
        buf.stats.fallbacks
    );
    drop(buf);
    // A pool too small for the buffer: shmem, and the load says why.
    let (_small, got) = HugetlbPool::set(8);
    assert!(got > 0 && got < 13, "pool of {got} pages");
    let buf = load_udmabuf(&engine);
    assert_shmem_for_want_of_hugetlb_pages(&buf);
    drop(buf);
    // A pool with room: the buffer's 13 pages come from it and go back on release.
    let (_big, total) = HugetlbPool::set(32);
    assert!(total >= 13, "the guest reserved only {total} huge pages");
    let buf = load_udmabuf(&engine);
    assert_eq!(buf.stats.memory, "hugetlb");
    assert_eq!(read_pool("free_hugepages"), total - 13);
    drop(buf);
    assert_eq!(read_pool("free_hugepages"), total, "pages back in the pool");
    // hugetlb off in the configuration: shmem even with a pool.
    let mut config = EngineConfig::from_system();
    config.hugetlb = false;
    let no_huge = Engine::new(config).expect("engine");
    let buf = load_udmabuf(&no_huge);
    assert_shmem(&buf);
    drop(buf);
    assert_eq!(read_pool("free_hugepages"), total);
    std::fs::remove_dir_all(dir).ok();
}

/// Sets how many surplus 2 MiB hugetlb pages the kernel may allocate on demand
/// (`nr_overcommit_hugepages`) for a test and restores it afterwards.
struct Overcommit {
    before: u64,
}

const NR_OVERCOMMIT: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_overcommit_hugepages";

impl Overcommit {
    fn set(pages: u64) -> Overcommit {
        let guard = Overcommit {
            before: read_pool("nr_overcommit_hugepages"),
        };
        std::fs::write(NR_OVERCOMMIT, pages.to_string()).expect("set nr_overcommit_hugepages");
        guard
    }
}

impl Drop for Overcommit {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_OVERCOMMIT, self.before.to_string());
    }
}

/// Progress that, at the first report, takes surplus hugetlb pages (another user of hugetlb
/// memory arriving in the middle of a load) as long as the kernel gives them, and checks
/// that counts only grow.
struct SurplusHog {
    taken: Mutex<Option<(u64, dmaload_abi::memfd::Memfd, dmaload_abi::mmap::Mapping)>>,
    counts: Mutex<Vec<u64>>,
}

impl Progress for SurplusHog {
    fn progress(&self, done: u64, _total: u64) {
        self.counts.lock().unwrap().push(done);
        let mut taken = self.taken.lock().unwrap();
        if taken.is_some() {
            return;
        }
        const PAGE: usize = 2 << 20;
        let most = 64;
        let memfd = dmaload_abi::memfd::Memfd::create_hugetlb("hog", most * PAGE as u64)
            .expect("hugetlb memfd");
        let map =
            dmaload_abi::mmap::Mapping::map_shared_noreserve(memfd.as_fd(), most as usize * PAGE)
                .expect("map");
        // Page by page, until the kernel has no more (the load's populating threads race
        // for the same pages).
        let got = (0..most as usize)
            .take_while(|i| map.populate_write(i * PAGE, PAGE).is_ok())
            .count() as u64;
        *taken = Some((got, memfd, map));
    }
}

#[test]
#[ignore = "needs /dev/udmabuf and hugetlb pages: runs in the virtual device"]
fn udmabuf_memory_comes_from_surplus_hugetlb_pages_without_a_pool() {
    let dir = dio_dir();
    let len = (64 << 20) + 5;
    let pages = (len as u64).div_ceil(2 << 20);
    let data = pattern(len, 77);
    let path = write_file(&dir, "surplus", &data);
    let req = || {
        request(
            vec![FdSegment::whole_file(open_direct(&path))],
            BackendChoice::Udmabuf,
            IoMode::Direct,
        )
    };
    let engine = engine();
    let (_pool, got) = HugetlbPool::set(0);
    assert_eq!(got, 0);
    // Surplus pages allowed, none reserved: the buffer's pages are allocated as they are
    // populated and go back to the page allocator when it is freed.
    let _allowed = Overcommit::set(2 * pages);
    let buf = load(&engine, req()).expect("udmabuf load");
    assert_eq!(buf.stats.memory, "hugetlb-surplus", "{:?}", buf.stats);
    assert!(contents(&buf)[..len] == data[..], "content differs");
    assert_eq!(read_pool("surplus_hugepages"), pages);
    drop(buf);
    assert_eq!(read_pool("surplus_hugepages"), 0, "surplus pages freed");
    // Too few allowed for the buffer: shmem, and the load says why.
    let _few = Overcommit::set(pages / 2);
    let buf = load(&engine, req()).expect("udmabuf load");
    assert_shmem_for_want_of_hugetlb_pages(&buf);
    drop(buf);
    // Someone takes surplus pages while the load runs (exactly the buffer's are allowed): the
    // engine fills the buffer again with shmem memory, byte-exact, and says so; progress
    // never goes back.
    let _exact = Overcommit::set(pages);
    let hog = SurplusHog {
        taken: Mutex::new(None),
        counts: Mutex::new(Vec::new()),
    };
    let buf = engine
        .load(Caller::new(0), req(), &CancelToken::new(), &hog)
        .expect("refilled with shmem");
    let hogged = hog.taken.lock().unwrap().as_ref().map(|t| t.0);
    assert!(hogged.unwrap_or(0) > 0, "the hog took no page: {hogged:?}");
    assert_shmem(&buf);
    assert!(
        buf.stats
            .fallbacks
            .iter()
            .any(|f| f.reason.contains("surplus hugetlb pages ran out")),
        "{:?}",
        buf.stats.fallbacks
    );
    assert!(
        contents(&buf)[..len] == data[..],
        "content differs after the refill"
    );
    let counts = hog.counts.lock().unwrap().clone();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert_eq!(counts.last(), Some(&(len as u64)));
    drop(buf);
    drop(hog);
    assert_eq!(read_pool("surplus_hugepages"), 0, "everything freed");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn auto_takes_the_backend_measured_fastest_here() {
    let dir = dio_dir();
    let len = 24 << 20;
    let data = pattern(len, 12);
    let path = write_file(&dir, "measured", &data);
    let engine = engine();
    let load_kind = |kind: BackendChoice| {
        let req = request(
            vec![FdSegment::whole_file(open_direct(&path))],
            kind,
            IoMode::Direct,
        );
        let buf = load(&engine, req).expect("load");
        assert!(contents(&buf)[..len] == data[..]);
        buf
    };
    let candidates = [Backend::Udmabuf, Backend::Heap("system".into())];
    for _ in 0..3 {
        drop(load_kind(BackendChoice::Udmabuf));
        drop(load_kind(system_heap()));
    }
    let rates: Vec<f64> = candidates
        .iter()
        .map(|b| {
            let (rate, samples) = engine
                .measured_rate(b, len as u64)
                .unwrap_or_else(|| panic!("{b} was not measured"));
            assert_eq!(samples, 3, "{b}");
            assert!(rate > 0.0);
            rate
        })
        .collect();
    let fastest = if rates[0] >= rates[1] {
        &candidates[0]
    } else {
        &candidates[1]
    };
    // Small buffers are measured apart: nothing yet.
    assert!(engine.measured_rate(&Backend::Udmabuf, 1 << 20).is_none());
    let buf = load_kind(BackendChoice::Auto);
    assert_eq!(
        &buf.backend, fastest,
        "rates {rates:?}; {:?}",
        buf.stats.fallbacks
    );
    let listed = engine.backends();
    assert!(listed
        .iter()
        .filter(|b| candidates.contains(&b.backend))
        .all(|b| b.detail.contains("measured")));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs dma-heap and udmabuf: runs in the virtual device"]
fn digests_in_dma_bufs_equal_the_tools() {
    let dir = dio_dir();
    let engine = engine();
    for len in [1, 4097, 512 * 1024 + 123, (2 << 20) + 4096 * 3 + 1, 9 << 20] {
        let data = pattern(len, len as u64 + 1);
        let path = write_file(&dir, &format!("d{len}"), &data);
        let want = tools(&path);
        for kind in [system_heap(), BackendChoice::Udmabuf] {
            for direct in [true, false] {
                let req = with_digests(
                    request(
                        vec![FdSegment::whole_file(open(&path, direct))],
                        kind.clone(),
                        IoMode::Auto,
                    ),
                    &BOTH,
                );
                let buf = load(&engine, req)
                    .unwrap_or_else(|e| panic!("{kind:?} {len} direct {direct}: {e}"));
                assert!(contents(&buf)[..len] == data[..]);
                for (algorithm, value) in want {
                    let d = digest_of(&buf, 0, algorithm);
                    assert_eq!(
                        d.value, value,
                        "{kind:?} {len} bytes direct {direct}: {algorithm}"
                    );
                    assert!(!d.from_kernel);
                }
            }
        }
    }
    // Segments at odd offsets, each digested on its own bytes, in both dma-buf backends.
    let data = pattern((3 << 20) + 11, 77);
    let path = write_file(&dir, "dsegs", &data);
    let layout: [(u64, u64, u64); 3] = [
        (4097, 100_000, 3),
        (1 << 20, (1 << 20) + 1, 200_001),
        (3 * 4096 + 5, 0, (2 << 20) + 3),
    ];
    let pieces: Vec<_> = layout
        .iter()
        .enumerate()
        .map(|(i, &(fo, len, _))| {
            let end = if len == 0 {
                data.len()
            } else {
                (fo + len) as usize
            };
            tools(&write_file(&dir, &format!("p{i}"), &data[fo as usize..end]))
        })
        .collect();
    for kind in [system_heap(), BackendChoice::Udmabuf] {
        for direct in [true, false] {
            let segments = fd_segments(&path, direct, &layout);
            let req = with_digests(request(segments, kind.clone(), IoMode::Auto), &BOTH);
            let buf = load(&engine, req).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            for (i, want) in pieces.iter().enumerate() {
                for &(algorithm, value) in want {
                    assert_eq!(
                        digest_of(&buf, i, algorithm).value,
                        value,
                        "{kind:?} direct {direct} segment {i} {algorithm}"
                    );
                }
            }
        }
    }
    assert_eq!(engine.total_usage(), dmaload_engine::Usage::default());
    std::fs::remove_dir_all(dir).ok();
}

/// Runs `fsverity enable [args] path` (Debian's tool, on the guest's $PATH).
fn enable_verity(path: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("fsverity")
        .arg("enable")
        .args(args)
        .arg(path)
        .output()
        .expect("run fsverity");
    assert!(out.status.success(), "fsverity enable: {out:?}");
}

#[test]
#[ignore = "needs ext4 with fs-verity and dma-buf backends: runs in the virtual device"]
fn a_verity_file_is_measured_by_the_kernel() {
    let dir = dio_dir();
    let engine = engine();
    let len = (5 << 20) + 4097;
    let data = pattern(len, 31);
    let path = write_file(&dir, "verity", &data);
    enable_verity(&path, &[]);
    let facts = dmaload_abi::statx::file_facts(open_buffered(&path).as_fd()).expect("statx");
    assert!(facts.verity, "statx reports fs-verity on");
    let [(_, sha), (_, verity)] = tools(&path);
    for kind in [system_heap(), BackendChoice::Udmabuf, BackendChoice::Memfd] {
        // The whole file: the kernel's measurement, which `fsverity digest` equals.
        let req = with_digests(
            request(
                vec![FdSegment::whole_file(open_direct(&path))],
                kind.clone(),
                IoMode::Auto,
            ),
            &BOTH,
        );
        let buf = load(&engine, req).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(contents(&buf)[..len] == data[..]);
        let d = digest_of(&buf, 0, DigestAlgorithm::FsVerity);
        assert!(d.from_kernel, "{kind:?}: the kernel measured it");
        assert_eq!(
            d.value, verity,
            "{kind:?}: the measurement is `fsverity digest`"
        );
        assert_eq!(digest_of(&buf, 0, DigestAlgorithm::Sha256).value, sha);
        // A wrong expected value fails against the kernel's measurement too.
        let mut wrong = verity;
        wrong[3] ^= 4;
        let req = request(
            vec![FdSegment::whole_file(open_buffered(&path))],
            kind.clone(),
            IoMode::Auto,
        )
        .expecting(0, DigestAlgorithm::FsVerity, wrong);
        let err = load(&engine, req).expect_err("a wrong digest");
        assert_eq!(err.code, ErrorCode::DigestMismatch, "{err}");
        assert!(err.message.contains("the kernel measured"), "{err}");
    }
    // A part of the file is no file the kernel measured: computed from its bytes.
    let piece = write_file(&dir, "verity-piece", &data[4096..4096 + 100_000]);
    let req = with_digests(
        request(
            vec![FdSegment {
                fd: open_buffered(&path),
                file_offset: 4096,
                length: 100_000,
                buffer_offset: 0,
            }],
            system_heap(),
            IoMode::Auto,
        ),
        &[DigestAlgorithm::FsVerity],
    );
    let buf = load(&engine, req).expect("a segment of a verity file");
    let d = digest_of(&buf, 0, DigestAlgorithm::FsVerity);
    assert!(!d.from_kernel);
    assert_eq!(d.value, tool_digest("fsverity", &["digest"], &piece));
    drop(buf);
    // A tree with a salt measures to another digest than dmaload's (no salt): computed, and
    // the fallback says why.
    let salted = write_file(&dir, "salted", &data[..1 << 20]);
    let plain = tool_digest("fsverity", &["digest"], &salted);
    enable_verity(&salted, &["--salt=00ff"]);
    let req = with_digests(
        request(
            vec![FdSegment::whole_file(open_buffered(&salted))],
            BackendChoice::Udmabuf,
            IoMode::Auto,
        ),
        &[DigestAlgorithm::FsVerity],
    );
    let buf = load(&engine, req).expect("a salted verity file");
    let d = digest_of(&buf, 0, DigestAlgorithm::FsVerity);
    assert!(!d.from_kernel);
    assert_eq!(d.value, plain);
    assert!(
        buf.stats
            .fallbacks
            .iter()
            .any(|f| f.kind == FallbackKind::Digest && f.reason.contains("salt")),
        "{:?}",
        buf.stats.fallbacks
    );
    drop(buf);
    assert_eq!(engine.total_usage(), dmaload_engine::Usage::default());
    std::fs::remove_dir_all(dir).ok();
}
