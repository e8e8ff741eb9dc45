//! ioctl request numbers: `_IOC(dir, type, nr, size)` of the asm-generic layout, which x86,
//! arm, arm64 and riscv use (mips, powerpc, sparc and alpha lay the bits out differently and
//! are not supported). Every number built here is pinned against the kernel headers by the
//! crate's tests.

/// An ioctl request number, as `libc::ioctl` takes it on this target (`c_ulong` in glibc,
/// `c_int` in bionic and musl: the same 32 bits).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub type Request = libc::c_ulong;
/// An ioctl request number, as `libc::ioctl` takes it on this target (`c_ulong` in glibc,
/// `c_int` in bionic and musl: the same 32 bits).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub type Request = libc::c_int;

#[cfg(not(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!("dmaload-abi encodes ioctl numbers in the asm-generic layout only");

const WRITE: u32 = 1;
const READ: u32 = 2;

const fn encode(dir: u32, kind: u8, nr: u8, size: usize) -> Request {
    let number = (dir << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32;
    number as Request
}

/// `_IOW(kind, nr, T)`: the kernel reads a `T` from the argument.
pub(crate) const fn iow<T>(kind: u8, nr: u8) -> Request {
    encode(WRITE, kind, nr, std::mem::size_of::<T>())
}

/// `_IOWR(kind, nr, T)`: the kernel reads and writes a `T` at the argument.
pub(crate) const fn iowr<T>(kind: u8, nr: u8) -> Request {
    encode(READ | WRITE, kind, nr, std::mem::size_of::<T>())
}
