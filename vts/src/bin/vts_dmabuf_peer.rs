//! The second process of the virtual device's binder smoke test (`tests/guest_smoke.rs`):
//! becomes the context manager of a binder device (no service manager needed), serves
//! `IDmaBufPeer`, prints `ready` on stdout and serves until killed.
//!
//!   vts-dmabuf-peer [BINDER_DEVICE]     (default /dev/binder)

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;

use dmaload_abi::dma_buf::{Access, CpuAccess};
use dmaload_abi::mmap::Mapping;
use rsbinder::{BinderResult, ExceptionCode, ParcelFileDescriptor, ProcessState, Status};

include!(concat!(env!("OUT_DIR"), "/vts_aidl.rs"));
use dmaload::vts::IDmaBufPeer::{BnDmaBufPeer, IDmaBufPeer};

fn illegal(message: String) -> Status {
    Status::from((ExceptionCode::IllegalArgument, message.as_str()))
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
        let mut map = Mapping::map_shared(buffer.as_fd(), len)
            .map_err(|e| illegal(format!("mmap of the received fd: {e}")))?;
        let access = CpuAccess::begin(buffer.as_fd(), Access::ReadWrite)
            .map_err(|e| illegal(format!("DMA_BUF_IOCTL_SYNC start: {e}")))?;
        let hash = fnv1a(map.as_slice());
        map.as_mut_slice().fill(fill as u8);
        access
            .finish()
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
