//! Sealed memfds (`memfd_create`, `F_ADD_SEALS`, `MFD_HUGETLB`): the memory behind the
//! udmabuf and memfd backends, and how the kernel is configured to back them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Longest memfd name the kernel accepts (`MFD_NAME_MAX_LEN`).
const MEMFD_NAME_MAX: usize = 249;

/// A memfd of a fixed size.
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
    size: u64,
}

impl Memfd {
    /// Creates a close-on-exec, sealable memfd of `size` bytes (sparse until populated).
    /// `name` shows in /proc/*/fd links and /proc/*/maps.
    pub fn create(name: &str, size: u64) -> io::Result<Memfd> {
        Memfd::create_with(name, size, 0)
    }

    /// Like [`Memfd::create`], backed by 2 MiB pages of the hugetlb pool; the size is rounded
    /// up to 2 MiB. Creation succeeds even when the pool is short: mapping it fails then.
    pub fn create_hugetlb(name: &str, size: u64) -> io::Result<Memfd> {
        Memfd::create_with(
            name,
            size.div_ceil(HUGETLB_PAGE) * HUGETLB_PAGE,
            libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )
    }

    fn create_with(name: &str, size: u64, extra_flags: libc::c_uint) -> io::Result<Memfd> {
        // The kernel refuses names over 249 bytes (NAME_MAX minus "memfd:") with EINVAL;
        // the name is only a label, so keep its first 249 bytes.
        let mut name = name.replace('\0', "_");
        let mut cut = name.len().min(MEMFD_NAME_MAX);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        let name = CString::new(name).map_err(io::Error::other)?;
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | extra_flags;
        // SAFETY: `name` is NUL-terminated; the returned fd is owned only here.
        let raw = crate::syscall::result(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len =
            libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: plain syscall on an fd we own.
        crate::syscall::result(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
        Ok(Memfd { fd, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Seals the size (udmabuf requires `F_SEAL_SHRINK`; growing is sealed too, and so is
    /// sealing itself, so nobody can change the seals later).
    pub fn seal_size(&self) -> io::Result<()> {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on an fd we own.
        crate::syscall::result(unsafe {
            libc::fcntl(self.fd.as_raw_fd(), libc::F_ADD_SEALS, seals)
        })?;
        Ok(())
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Memfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The hugetlb page size dmaload uses (PMD-sized on x86-64 and arm64 with 4 KiB pages).
pub const HUGETLB_PAGE: u64 = 2 << 20;

/// The 2 MiB hugetlb pages the kernel can give right now
/// (`/sys/kernel/mm/hugepages/hugepages-2048kB`): pages a device reserved at boot
/// (`vm.nr_hugepages`) and surplus pages allocated on demand up to `nr_overcommit_hugepages`
/// (returned to the page allocator when freed: no memory is set aside for them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugetlbPages {
    /// Free pages of the pool (`free_hugepages`), some of them reserved by mappings.
    pub free: u64,
    /// Free pages promised to existing mappings (`resv_hugepages`).
    pub reserved: u64,
    /// Surplus pages in use now (`surplus_hugepages`).
    pub surplus: u64,
    /// Most surplus pages at once (`nr_overcommit_hugepages`; 0: none).
    pub overcommit: u64,
}

impl HugetlbPages {
    const DIR: &'static str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

    /// Reads the counters; all zero when the kernel has no 2 MiB hugetlb pages.
    pub fn read() -> HugetlbPages {
        let read = |name: &str| -> u64 {
            std::fs::read_to_string(format!("{}/{name}", HugetlbPages::DIR))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)
        };
        HugetlbPages {
            free: read("free_hugepages"),
            reserved: read("resv_hugepages"),
            surplus: read("surplus_hugepages"),
            overcommit: read("nr_overcommit_hugepages"),
        }
    }

    /// Pool pages no mapping has reserved: a mapping that reserves takes these at once.
    pub fn pool_free(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }

    /// Surplus pages the kernel may still allocate on demand (if the page allocator finds
    /// free 2 MiB blocks when they are faulted in).
    pub fn surplus_room(&self) -> u64 {
        self.overcommit.saturating_sub(self.surplus)
    }
}

/// Free 2 MiB pages in the hugetlb pool that no mapping has reserved yet, or 0 when the
/// kernel has no such pool. A device reserves the pool at boot (`vm.nr_hugepages`).
pub fn hugetlb_pages_free() -> u64 {
    HugetlbPages::read().pool_free()
}

/// How shmem huge pages are configured (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShmemThp {
    /// memfds get huge folios when they ask (`advise`) or always (`always`, `within_size`,
    /// `force`).
    Available(String),
    /// Disabled (`never`, `deny`) or unknown; the string says why.
    Unavailable(String),
}

/// Reads the shmem THP policy, plus whether 64 KiB mTHP is enabled for shmem.
pub fn shmem_thp() -> ShmemThp {
    let path = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
    let Ok(text) = std::fs::read_to_string(path) else {
        return ShmemThp::Unavailable(format!("{path} is not readable (no THP)"));
    };
    let selected = text
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();
    match selected.as_str() {
        "always" | "within_size" | "advise" | "force" => ShmemThp::Available(selected),
        _ => {
            let mthp = std::fs::read_to_string(
                "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/shmem_enabled",
            )
            .unwrap_or_default();
            if ["[always]", "[within_size]", "[advise]"]
                .iter()
                .any(|w| mthp.contains(w))
            {
                return ShmemThp::Available("64kB mTHP".to_string());
            }
            ShmemThp::Unavailable(format!(
                "{path} is '{selected}': memfds get 4 KiB pages; set it to 'advise' for huge folios"
            ))
        }
    }
}
