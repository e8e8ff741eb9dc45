//! fs-verity (<linux/fsverity.h>): the kernel's measurement of a verity file
//! (`FS_IOC_MEASURE_VERITY`), its descriptor (`FS_IOC_READ_VERITY_METADATA`), and turning
//! verity on (`FS_IOC_ENABLE_VERITY`, for tools and tests: the service never changes a file).
//!
//! A file with fs-verity on is read-only, and the kernel checks every page it reads against
//! the file's Merkle tree: the measurement is then the digest of the bytes any read returns.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::ioctl;

/// `FS_VERITY_HASH_ALG_SHA256`.
pub const HASH_ALG_SHA256: u16 = 1;
/// `FS_VERITY_METADATA_TYPE_DESCRIPTOR`.
pub const METADATA_TYPE_DESCRIPTOR: u64 = 2;
/// Size of `struct fsverity_descriptor`, the bytes a file digest is the hash of.
pub const DESCRIPTOR_BYTES: usize = 256;
/// Offset of `fsverity_descriptor.data_size` (little-endian `u64`).
pub const DESCRIPTOR_DATA_SIZE_AT: usize = 8;
/// Offset of `fsverity_descriptor.root_hash` (64 bytes, the hash's own length used).
pub const DESCRIPTOR_ROOT_HASH_AT: usize = 16;
/// Largest digest the kernel measures (SHA-512).
const MAX_DIGEST_BYTES: usize = 64;

/// `struct fsverity_digest` without its flexible array: the size the request number encodes.
#[repr(C)]
pub(crate) struct DigestHeader {
    pub(crate) digest_algorithm: u16,
    pub(crate) digest_size: u16,
}

/// `struct fsverity_digest` with room for the largest digest.
#[repr(C)]
struct MeasureArgs {
    header: DigestHeader,
    digest: [u8; MAX_DIGEST_BYTES],
}

/// `struct fsverity_read_metadata_arg`.
#[repr(C)]
pub(crate) struct ReadMetadataArgs {
    pub(crate) metadata_type: u64,
    pub(crate) offset: u64,
    pub(crate) length: u64,
    pub(crate) buf_ptr: u64,
    pub(crate) reserved: u64,
}

/// `struct fsverity_enable_arg`.
#[repr(C)]
pub(crate) struct EnableArgs {
    pub(crate) version: u32,
    pub(crate) hash_algorithm: u32,
    pub(crate) block_size: u32,
    pub(crate) salt_size: u32,
    pub(crate) salt_ptr: u64,
    pub(crate) sig_size: u32,
    pub(crate) reserved1: u32,
    pub(crate) sig_ptr: u64,
    pub(crate) reserved2: [u64; 11],
}

/// `_IOW('f', 133, struct fsverity_enable_arg)`.
pub(crate) const FS_IOC_ENABLE_VERITY: ioctl::Request = ioctl::iow::<EnableArgs>(b'f', 133);
/// `_IOWR('f', 134, struct fsverity_digest)`.
pub(crate) const FS_IOC_MEASURE_VERITY: ioctl::Request = ioctl::iowr::<DigestHeader>(b'f', 134);
/// `_IOWR('f', 135, struct fsverity_read_metadata_arg)`.
pub(crate) const FS_IOC_READ_VERITY_METADATA: ioctl::Request =
    ioctl::iowr::<ReadMetadataArgs>(b'f', 135);

/// The kernel's measurement of a verity file: the fs-verity file digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// `FS_VERITY_HASH_ALG_*`.
    pub algorithm: u16,
    pub digest: Vec<u8>,
}

/// `FS_IOC_MEASURE_VERITY`. `ENODATA`: the file has no verity; `ENOTTY`/`EOPNOTSUPP`: its
/// file system has none.
pub fn measure(fd: BorrowedFd<'_>) -> io::Result<Measurement> {
    let mut args = MeasureArgs {
        header: DigestHeader {
            digest_algorithm: 0,
            digest_size: MAX_DIGEST_BYTES as u16,
        },
        digest: [0; MAX_DIGEST_BYTES],
    };
    // SAFETY: the request number encodes `struct fsverity_digest` (pinned by the tests); the
    // kernel writes at most `digest_size` bytes after the header, which `args` has room for,
    // and `args` lives across the call.
    crate::syscall::retry(|| unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_MEASURE_VERITY,
            &mut args as *mut MeasureArgs,
        )
    })?;
    let len = usize::from(args.header.digest_size).min(MAX_DIGEST_BYTES);
    Ok(Measurement {
        algorithm: args.header.digest_algorithm,
        digest: args.digest[..len].to_vec(),
    })
}

/// What a verity file's Merkle tree was built with (from its `fsverity_descriptor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub version: u8,
    pub hash_algorithm: u8,
    pub log_blocksize: u8,
    pub salt_size: u8,
    pub data_size: u64,
}

/// The file's `fsverity_descriptor` (`FS_IOC_READ_VERITY_METADATA`, Linux 5.12+).
pub fn descriptor(fd: BorrowedFd<'_>) -> io::Result<Descriptor> {
    let mut bytes = [0u8; DESCRIPTOR_BYTES];
    let args = ReadMetadataArgs {
        metadata_type: METADATA_TYPE_DESCRIPTOR,
        offset: 0,
        length: DESCRIPTOR_BYTES as u64,
        buf_ptr: bytes.as_mut_ptr() as u64,
        reserved: 0,
    };
    // SAFETY: the request number encodes `ReadMetadataArgs` (pinned by the tests); the kernel
    // writes at most `length` bytes to `buf_ptr`, which points into `bytes`; both live across
    // the call.
    let n = crate::syscall::retry(|| unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_READ_VERITY_METADATA,
            &args as *const ReadMetadataArgs,
        )
    })?;
    if (n as usize) < DESCRIPTOR_ROOT_HASH_AT {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&bytes[DESCRIPTOR_DATA_SIZE_AT..DESCRIPTOR_DATA_SIZE_AT + 8]);
    Ok(Descriptor {
        version: bytes[0],
        hash_algorithm: bytes[1],
        log_blocksize: bytes[2],
        salt_size: bytes[3],
        data_size: u64::from_le_bytes(size),
    })
}

/// Turns fs-verity on for a file (SHA-256, 4 KiB blocks, no salt: what `fsverity enable`
/// does by default). The fd must be open read-only with no writer of the file left. The file
/// is read-only from then on. For tools and tests.
pub fn enable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let args = EnableArgs {
        version: 1,
        hash_algorithm: u32::from(HASH_ALG_SHA256),
        block_size: 4096,
        salt_size: 0,
        salt_ptr: 0,
        sig_size: 0,
        reserved1: 0,
        sig_ptr: 0,
        reserved2: [0; 11],
    };
    // SAFETY: the request number encodes `EnableArgs` (pinned by the tests); the kernel only
    // reads `args` (no salt, no signature pointers), which lives across the call.
    crate::syscall::retry(|| unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_ENABLE_VERITY,
            &args as *const EnableArgs,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_file_without_verity_has_no_measurement() {
        let path = std::env::temp_dir().join(format!("dmaload-abi-verity-{}", std::process::id()));
        std::fs::write(&path, b"not verity").expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let err = measure(file.as_fd()).expect_err("no verity");
        // ENODATA on file systems with verity, ENOTTY/EOPNOTSUPP on the others.
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENODATA | libc::ENOTTY | libc::EOPNOTSUPP)
            ),
            "{err}"
        );
        assert!(descriptor(file.as_fd()).is_err());
        std::fs::remove_file(&path).ok();
    }
}
