//! Smoke test of the virtual device (vts/vm/): the kernel interfaces dmaload needs are there
//! and behave. Binder carries a dma-buf fd from one process to another, the system
//! dma-heap allocates, maps and syncs, udmabuf wraps a sealed memfd, O_DIRECT reads work
//! on the ext4 data disk.
//!
//! Every test is `#[ignore]`d, so host runs list them as ignored; the virtual device runs
//! them: `vts/vm/cargo-test -p dmaload-vts --test guest_smoke -- --include-ignored`.
//! Run anywhere else with `--ignored`, they fail loudly instead of passing.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use dmaload_abi::dma_buf::{sync as dma_buf_sync, SYNC_END, SYNC_READ, SYNC_RW};
use dmaload_abi::dma_heap::{self, DmaHeap};
use dmaload_abi::file::OpenFlags;
use dmaload_abi::memfd::Memfd;
use dmaload_abi::mmap::Mapping;
use dmaload_abi::udmabuf::{self, Udmabuf};
use rsbinder::{FromIBinder, ParcelFileDescriptor, ProcessState};

include!(concat!(env!("OUT_DIR"), "/vts_aidl.rs"));
use dmaload::vts::IDmaBufPeer::IDmaBufPeer;

const NEEDS_GUEST: &str =
    "run it with vts/vm/cargo-test -p dmaload-vts --test guest_smoke -- --include-ignored";

fn require_guest() {
    assert_eq!(
        std::env::var("DMALOAD_GUEST").as_deref(),
        Ok("1"),
        "not in the virtual device: {NEEDS_GUEST}"
    );
}

// ---- the kernel interfaces, through dmaload_abi (the wrappers dmaload itself uses) ----

// _IOWR('b', 9, struct binder_version { __s32 protocol_version; })
const BINDER_VERSION: libc::c_ulong = 0xc004_6209;
const BINDER_CURRENT_PROTOCOL_VERSION: i32 = 8;

fn dma_heap_alloc(heap: &str, len: u64) -> std::io::Result<OwnedFd> {
    DmaHeap::open(Path::new(dma_heap::DEVICE_DIR), heap)?.allocate(len)
}

fn udmabuf_create(memfd: BorrowedFd<'_>, size: u64) -> std::io::Result<OwnedFd> {
    Udmabuf::open(Path::new(udmabuf::DEVICE))?.create(memfd, size)
}

/// Deterministic bytes that differ at every offset of a page (a stale or shifted page shows).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

fn exporter_name(fd: BorrowedFd<'_>) -> String {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .expect("fdinfo of an open fd");
    info.lines()
        .find_map(|line| line.strip_prefix("exp_name:"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|| panic!("fd {} is not a dma-buf:\n{info}", fd.as_raw_fd()))
}

// ---- binder ----

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn binder_devices_open_and_speak_protocol_8() {
    require_guest();
    for device in ["/dev/binder", "/dev/hwbinder", "/dev/vndbinder"] {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .unwrap_or_else(|e| panic!("open {device}: {e}"));
        let mut version: i32 = -1;
        // SAFETY: BINDER_VERSION writes one i32 into `version`, which outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BINDER_VERSION, &mut version) };
        assert_eq!(
            rc,
            0,
            "BINDER_VERSION on {device}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            version, BINDER_CURRENT_PROTOCOL_VERSION,
            "{device} protocol version"
        );
    }
}

/// Kills the peer process when the test ends, however it ends.
struct PeerProcess(Child);

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn binder_carries_a_dma_buf_fd_to_another_process() {
    require_guest();
    // The peer becomes the context manager of /dev/binder, so handle 0 reaches it directly.
    let mut peer = PeerProcess(
        Command::new(env!("CARGO_BIN_EXE_vts-dmabuf-peer"))
            .arg("/dev/binder")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vts-dmabuf-peer"),
    );
    let mut ready = String::new();
    BufReader::new(peer.0.stdout.take().expect("peer stdout"))
        .read_line(&mut ready)
        .expect("read the peer's ready line");
    assert_eq!(
        ready.trim(),
        "ready",
        "the peer did not start (see its stderr above)"
    );

    ProcessState::init("/dev/binder", 0).expect("open /dev/binder");
    let context = ProcessState::as_self().context_object().expect("handle 0");
    let service: rsbinder::Strong<dyn IDmaBufPeer> =
        FromIBinder::try_from(context).expect("the context manager is an IDmaBufPeer");

    let peer_pid = service.pid().expect("pid() over binder");
    assert_eq!(peer_pid as u32, peer.0.id(), "handle 0 is the peer process");
    assert_ne!(peer_pid as u32, std::process::id());

    // A dma-heap buffer with known content goes to the peer over binder.
    const LEN: usize = 1 << 20;
    let buffer = dma_heap_alloc("system", LEN as u64).expect("allocate from /dev/dma_heap/system");
    let content = pattern(7, LEN);
    let mut map = Mapping::map_shared(buffer.as_fd(), LEN).expect("mmap the dma-buf");
    dma_buf_sync(buffer.as_fd(), SYNC_RW).expect("sync start");
    map.as_mut_slice().copy_from_slice(&content);
    dma_buf_sync(buffer.as_fd(), SYNC_RW | SYNC_END).expect("sync end");

    let sent = || ParcelFileDescriptor::new(buffer.try_clone().expect("dup the buffer fd"));
    assert_eq!(
        service.exporterOf(&sent()).expect("exporterOf over binder"),
        "system",
        "the peer received a system-heap dma-buf"
    );
    let hash = service
        .hashThenFill(&sent(), LEN as i64, 0x5a)
        .expect("hashThenFill over binder");
    assert_eq!(
        hash,
        fnv1a(&content),
        "the peer read exactly the bytes written here"
    );

    // The peer's write shows through this process's mapping: one buffer, not a copy.
    dma_buf_sync(buffer.as_fd(), SYNC_READ).expect("sync start");
    let filled = map.as_mut_slice().iter().all(|b| *b == 0x5a);
    dma_buf_sync(buffer.as_fd(), SYNC_READ | SYNC_END).expect("sync end");
    assert!(
        filled,
        "the peer's fill is visible in this process's mapping"
    );

    // A plain file is not a dma-buf: the peer says so with an error, and keeps serving.
    let not_dmabuf = ParcelFileDescriptor::new(File::open("/proc/self/stat").expect("open"));
    assert!(
        service.exporterOf(&not_dmabuf).is_err(),
        "a plain file has no exporter"
    );
    assert_eq!(service.pid().expect("pid() after an error"), peer_pid);
}

// ---- dma-heap ----

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn dma_heap_system_allocates_maps_and_syncs() {
    require_guest();
    let heaps: Vec<String> = std::fs::read_dir("/dev/dma_heap")
        .expect("/dev/dma_heap exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(heaps.iter().any(|h| h == "system"), "heaps: {heaps:?}");

    const LEN: usize = 4 << 20;
    let buffer = dma_heap_alloc("system", LEN as u64).expect("DMA_HEAP_IOCTL_ALLOC");
    assert_eq!(exporter_name(buffer.as_fd()), "system");
    // A dma-buf's size is what lseek to the end reports.
    let size = File::from(buffer.try_clone().expect("dup"))
        .seek(SeekFrom::End(0))
        .expect("lseek");
    assert_eq!(size, LEN as u64, "dma-buf size");

    let content = pattern(42, LEN);
    {
        let mut map = Mapping::map_shared(buffer.as_fd(), LEN).expect("mmap");
        // Fresh heap memory is zeroed.
        dma_buf_sync(buffer.as_fd(), SYNC_RW).expect("DMA_BUF_IOCTL_SYNC start");
        assert!(
            map.as_mut_slice().iter().all(|b| *b == 0),
            "fresh heap buffer is zeroed"
        );
        map.as_mut_slice().copy_from_slice(&content);
        dma_buf_sync(buffer.as_fd(), SYNC_RW | SYNC_END).expect("DMA_BUF_IOCTL_SYNC end");
    }
    // A second, independent mapping sees the same bytes.
    let mut again = Mapping::map_shared(buffer.as_fd(), LEN).expect("mmap again");
    dma_buf_sync(buffer.as_fd(), SYNC_READ).expect("sync start");
    assert!(
        again.as_mut_slice() == content.as_slice(),
        "bytes survive unmap and remap"
    );
    dma_buf_sync(buffer.as_fd(), SYNC_READ | SYNC_END).expect("sync end");

    // Bad sync flags are refused (the ioctl validates its argument).
    let err = dma_buf_sync(buffer.as_fd(), 0x100).expect_err("bad sync flags are refused");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

// ---- udmabuf ----

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn udmabuf_wraps_a_sealed_memfd() {
    require_guest();
    const LEN: usize = 2 << 20;
    let memfd = Memfd::create("vts-udmabuf", LEN as u64).expect("memfd_create");
    let file = File::from(memfd.as_fd().try_clone_to_owned().expect("dup the memfd"));
    let content = pattern(3, LEN);
    file.write_all_at(&content, 0).expect("write the memfd");

    // Without F_SEAL_SHRINK the kernel refuses: the memfd could shrink under the buffer.
    let err = udmabuf_create(file.as_fd(), LEN as u64).expect_err("unsealed memfd is refused");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINVAL),
        "unsealed memfd: {err}"
    );

    memfd.seal_size().expect("F_ADD_SEALS");
    let buffer = udmabuf_create(file.as_fd(), LEN as u64).expect("UDMABUF_CREATE");
    assert_eq!(exporter_name(buffer.as_fd()), "udmabuf");

    let mut map = Mapping::map_shared(buffer.as_fd(), LEN).expect("mmap the udmabuf");
    dma_buf_sync(buffer.as_fd(), SYNC_RW).expect("sync start");
    assert!(
        map.as_mut_slice() == content.as_slice(),
        "the udmabuf shows the memfd's bytes"
    );
    dma_buf_sync(buffer.as_fd(), SYNC_RW | SYNC_END).expect("sync end");

    // Zero copy: a later write to the memfd shows through the dma-buf.
    file.write_all_at(b"dmaload", 4096)
        .expect("write the memfd again");
    dma_buf_sync(buffer.as_fd(), SYNC_READ).expect("sync start");
    assert_eq!(
        &map.as_mut_slice()[4096..4103],
        b"dmaload",
        "memfd writes reach the dma-buf"
    );
    dma_buf_sync(buffer.as_fd(), SYNC_READ | SYNC_END).expect("sync end");
}

// ---- O_DIRECT on the data disk ----

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn o_direct_reads_on_the_data_disk() {
    require_guest();
    let fs = nix::sys::statfs::statfs("/data").expect("statfs /data");
    assert_eq!(
        fs.filesystem_type(),
        nix::sys::statfs::EXT4_SUPER_MAGIC,
        "/data is ext4"
    );

    const LEN: usize = 8 << 20;
    let dir = std::path::Path::new("/data").join(format!("vts-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir on /data");
    let path = dir.join("direct.bin");
    let content = pattern(11, LEN);
    {
        let mut f = File::create(&path).expect("create");
        f.write_all(&content).expect("write");
        f.sync_all().expect("fsync");
    }
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open O_DIRECT on ext4");
    let flags = OpenFlags::of(direct.as_fd()).expect("F_GETFL");
    assert!(flags.direct(), "O_DIRECT stays set");

    // Page-aligned buffer and offsets: reads succeed and return the file's bytes.
    let mut buf = Mapping::anonymous(1 << 20).expect("aligned buffer");
    for offset in [0usize, 4096, 3 << 20, LEN - (1 << 20)] {
        let n = direct
            .read_at(buf.as_mut_slice(), offset as u64)
            .expect("O_DIRECT read");
        assert_eq!(n, 1 << 20);
        assert!(
            buf.as_mut_slice() == &content[offset..offset + n],
            "bytes at {offset}"
        );
    }
    // A misaligned buffer is refused: proof the reads above really bypassed the page cache.
    let err = direct
        .read_at(&mut buf.as_mut_slice()[1..4097], 0)
        .expect_err("misaligned O_DIRECT");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    std::fs::remove_dir_all(&dir).ok();
}
