//! Smoke test of the virtual device (vts/vm/): the kernel interfaces dmaload needs are there
//! and behave. Binder carries a dma-buf fd from one process to another, the system
//! dma-heap allocates, maps and syncs, udmabuf wraps a sealed memfd, O_DIRECT reads work
//! on the ext4 data disk.
//!
//! Every test is `#[ignore]`d, so host runs list them as ignored; the virtual device runs
//! them: `vts/vm/cargo-test -p dmaload-vts --test guest_smoke -- --include-ignored`.
//! Run anywhere else with `--ignored`, they fail loudly instead of passing.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::{Child, Command, Stdio};

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

// ---- small kernel wrappers (ioctl numbers from the uapi headers) ----

// _IOWR('H', 0, struct dma_heap_allocation_data)
const DMA_HEAP_IOCTL_ALLOC: libc::c_ulong = 0xc018_4800;
#[repr(C)]
struct DmaHeapAllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

// _IOW('b', 0, struct dma_buf_sync)
const DMA_BUF_IOCTL_SYNC: libc::c_ulong = 0x4008_6200;
const DMA_BUF_SYNC_READ: u64 = 1;
const DMA_BUF_SYNC_RW: u64 = 3;
const DMA_BUF_SYNC_END: u64 = 4;

// _IOW('u', 0x42, struct udmabuf_create)
const UDMABUF_CREATE: libc::c_ulong = 0x4018_7542;
const UDMABUF_FLAGS_CLOEXEC: u32 = 1;
#[repr(C)]
struct UdmabufCreate {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

// _IOWR('b', 9, struct binder_version { __s32 protocol_version; })
const BINDER_VERSION: libc::c_ulong = 0xc004_6209;
const BINDER_CURRENT_PROTOCOL_VERSION: i32 = 8;

fn last_error<T>() -> std::io::Result<T> {
    Err(std::io::Error::last_os_error())
}

fn dma_heap_alloc(heap: &str, len: u64) -> std::io::Result<OwnedFd> {
    let heap = File::open(format!("/dev/dma_heap/{heap}"))?;
    let mut data = DmaHeapAllocationData {
        len,
        fd: 0,
        fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        heap_flags: 0,
    };
    // SAFETY: the ioctl reads and writes `data`, a live repr(C) struct of the uapi layout.
    if unsafe { libc::ioctl(heap.as_raw_fd(), DMA_HEAP_IOCTL_ALLOC, &mut data) } != 0 {
        return last_error();
    }
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
}

fn udmabuf_create(memfd: BorrowedFd<'_>, size: u64) -> std::io::Result<OwnedFd> {
    let udmabuf = File::open("/dev/udmabuf")?;
    let create = UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size,
    };
    // SAFETY: the ioctl reads `create`, a live repr(C) struct of the uapi layout.
    let fd = unsafe { libc::ioctl(udmabuf.as_raw_fd(), UDMABUF_CREATE, &create) };
    if fd < 0 {
        return last_error();
    }
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn memfd_create(name: &str, flags: libc::c_uint) -> std::io::Result<OwnedFd> {
    let name = CString::new(name).expect("memfd name has no NUL");
    // SAFETY: `name` is a valid C string for the call's duration.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return last_error();
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> std::io::Result<()> {
    // SAFETY: the ioctl reads one u64 from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), DMA_BUF_IOCTL_SYNC, &flags) } != 0 {
        return last_error();
    }
    Ok(())
}

/// A shared read-write mapping of an fd (or an anonymous one), unmapped on drop.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn shared(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        Self::new(Some(fd), len)
    }

    fn anonymous(len: usize) -> std::io::Result<Self> {
        Self::new(None, len)
    }

    fn new(fd: Option<BorrowedFd<'_>>, len: usize) -> std::io::Result<Self> {
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping placed by the kernel; no Rust object aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return last_error();
        }
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable, writable bytes and lives as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new(); no slice into it outlives self.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
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
    let mut map = Mapping::shared(buffer.as_fd(), LEN).expect("mmap the dma-buf");
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW).expect("sync start");
    map.bytes().copy_from_slice(&content);
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END).expect("sync end");

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
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ).expect("sync start");
    let filled = map.bytes().iter().all(|b| *b == 0x5a);
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END).expect("sync end");
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
    // SAFETY: lseek on an fd we own; no memory is involved.
    let size = unsafe { libc::lseek(buffer.as_raw_fd(), 0, libc::SEEK_END) };
    assert_eq!(size, LEN as i64, "dma-buf size");

    let content = pattern(42, LEN);
    {
        let mut map = Mapping::shared(buffer.as_fd(), LEN).expect("mmap");
        // Fresh heap memory is zeroed.
        dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW).expect("DMA_BUF_IOCTL_SYNC start");
        assert!(
            map.bytes().iter().all(|b| *b == 0),
            "fresh heap buffer is zeroed"
        );
        map.bytes().copy_from_slice(&content);
        dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END)
            .expect("DMA_BUF_IOCTL_SYNC end");
    }
    // A second, independent mapping sees the same bytes.
    let mut again = Mapping::shared(buffer.as_fd(), LEN).expect("mmap again");
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ).expect("sync start");
    assert!(
        again.bytes() == content.as_slice(),
        "bytes survive unmap and remap"
    );
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END).expect("sync end");

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
    let memfd = memfd_create("vts-udmabuf", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        .expect("memfd_create");
    let file = File::from(memfd);
    file.set_len(LEN as u64).expect("size the memfd");
    let content = pattern(3, LEN);
    file.write_all_at(&content, 0).expect("write the memfd");

    // Without F_SEAL_SHRINK the kernel refuses: the memfd could shrink under the buffer.
    let err = udmabuf_create(file.as_fd(), LEN as u64).expect_err("unsealed memfd is refused");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINVAL),
        "unsealed memfd: {err}"
    );

    // SAFETY: fcntl on an fd we own; F_ADD_SEALS takes an int.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
    assert_eq!(rc, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
    let buffer = udmabuf_create(file.as_fd(), LEN as u64).expect("UDMABUF_CREATE");
    assert_eq!(exporter_name(buffer.as_fd()), "udmabuf");

    let mut map = Mapping::shared(buffer.as_fd(), LEN).expect("mmap the udmabuf");
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW).expect("sync start");
    assert!(
        map.bytes() == content.as_slice(),
        "the udmabuf shows the memfd's bytes"
    );
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END).expect("sync end");

    // Zero copy: a later write to the memfd shows through the dma-buf.
    file.write_all_at(b"dmaload", 4096)
        .expect("write the memfd again");
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ).expect("sync start");
    assert_eq!(
        &map.bytes()[4096..4103],
        b"dmaload",
        "memfd writes reach the dma-buf"
    );
    dma_buf_sync(buffer.as_fd(), DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END).expect("sync end");
}

// ---- O_DIRECT on the data disk ----

#[test]
#[ignore = "needs the virtual device (vts/vm/)"]
fn o_direct_reads_on_the_data_disk() {
    require_guest();
    // SAFETY: statfs writes into a zeroed struct we own; the path is a valid C string.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let data = CString::new("/data").expect("path");
    assert_eq!(
        unsafe { libc::statfs(data.as_ptr(), &mut fs) },
        0,
        "statfs /data"
    );
    assert_eq!(fs.f_type, 0xef53, "/data is ext4");

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
    // SAFETY: F_GETFL on an fd we own.
    let flags = unsafe { libc::fcntl(direct.as_raw_fd(), libc::F_GETFL) };
    assert_ne!(flags & libc::O_DIRECT, 0, "O_DIRECT stays set");

    // Page-aligned buffer and offsets: reads succeed and return the file's bytes.
    let mut buf = Mapping::anonymous(1 << 20).expect("aligned buffer");
    for offset in [0usize, 4096, 3 << 20, LEN - (1 << 20)] {
        let n = direct
            .read_at(buf.bytes(), offset as u64)
            .expect("O_DIRECT read");
        assert_eq!(n, 1 << 20);
        assert!(
            buf.bytes() == &content[offset..offset + n],
            "bytes at {offset}"
        );
    }
    // A misaligned buffer is refused: proof the reads above really bypassed the page cache.
    let err = direct
        .read_at(&mut buf.bytes()[1..4097], 0)
        .expect_err("misaligned O_DIRECT");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    std::fs::remove_dir_all(&dir).ok();
}
