//! The second process of the virtual device's binder smoke test (`tests/guest_smoke.rs`):
//! becomes the context manager of a binder device (no service manager needed), serves
//! `IDmaBufPeer`, prints `ready` on stdout and serves until killed.
//!
//!   vts-dmabuf-peer [BINDER_DEVICE]     (default /dev/binder)

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::ExitCode;

use rsbinder::{BinderResult, ExceptionCode, ParcelFileDescriptor, ProcessState, Status};

include!(concat!(env!("OUT_DIR"), "/vts_aidl.rs"));
use dmaload::vts::IDmaBufPeer::{BnDmaBufPeer, IDmaBufPeer};

const DMA_BUF_SYNC_RW: u64 = 3;
const DMA_BUF_SYNC_END: u64 = 4;
// _IOW('b', 0, struct dma_buf_sync { __u64 flags; })
const DMA_BUF_IOCTL_SYNC: libc::c_ulong = 0x4008_6200;

fn illegal(message: String) -> Status {
    Status::from((ExceptionCode::IllegalArgument, message.as_str()))
}

/// A shared read-write mapping of a dma-buf, unmapped on drop.
struct DmaBufMapping<'fd> {
    fd: BorrowedFd<'fd>,
    addr: *mut u8,
    len: usize,
}

impl<'fd> DmaBufMapping<'fd> {
    fn new(fd: BorrowedFd<'fd>, len: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh shared mapping chosen by the kernel; no Rust object aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            addr: addr.cast(),
            len,
        })
    }

    fn sync(&self, flags: u64) -> std::io::Result<()> {
        let arg = flags;
        // SAFETY: DMA_BUF_IOCTL_SYNC reads one u64 from the pointer, which outlives the call.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), DMA_BUF_IOCTL_SYNC, &arg) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, alive as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for DmaBufMapping<'_> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new(); no slice into it outlives self.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

fn fnv1a(bytes: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

struct Peer;

impl rsbinder::Interface for Peer {}

impl IDmaBufPeer for Peer {
    fn r#pid(&self) -> BinderResult<i32> {
        Ok(std::process::id() as i32)
    }

    fn r#exporterOf(&self, buffer: &ParcelFileDescriptor) -> BinderResult<String> {
        let path = format!("/proc/self/fdinfo/{}", buffer.as_raw_fd());
        let info =
            std::fs::read_to_string(&path).map_err(|e| illegal(format!("reading {path}: {e}")))?;
        info.lines()
            .find_map(|line| line.strip_prefix("exp_name:"))
            .map(|name| name.trim().to_string())
            .ok_or_else(|| illegal(format!("{path} names no exporter: not a dma-buf")))
    }

    fn r#hashThenFill(
        &self,
        buffer: &ParcelFileDescriptor,
        size: i64,
        fill: i8,
    ) -> BinderResult<i64> {
        let len = usize::try_from(size).map_err(|_| illegal(format!("bad size {size}")))?;
        let mut map = DmaBufMapping::new(buffer.as_fd(), len)
            .map_err(|e| illegal(format!("mmap of the received fd: {e}")))?;
        map.sync(DMA_BUF_SYNC_RW)
            .map_err(|e| illegal(format!("DMA_BUF_IOCTL_SYNC start: {e}")))?;
        let hash = fnv1a(map.bytes());
        map.bytes().fill(fill as u8);
        map.sync(DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END)
            .map_err(|e| illegal(format!("DMA_BUF_IOCTL_SYNC end: {e}")))?;
        Ok(hash)
    }
}

fn try_main() -> Result<(), Box<dyn std::error::Error>> {
    let device = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/binder".into());
    ProcessState::init(&device, 0)?;
    let service = BnDmaBufPeer::new_binder(Peer);
    ProcessState::as_self().become_context_manager(service.as_binder())?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    ProcessState::join_thread_pool()?;
    Ok(())
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vts-dmabuf-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
