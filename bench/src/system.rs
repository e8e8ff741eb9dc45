//! Measurement plumbing: cold caches, page-cache residency, peak RSS.

use std::os::fd::BorrowedFd;

use dmaload_abi::file::resident_bytes;

/// Writes back dirty pages and drops the page cache (root only). Returns false when not
/// permitted (then runs are not cold, and the report says so).
pub fn drop_caches() -> bool {
    // SAFETY: sync() has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Bytes of the file resident in the page cache.
pub fn cached_bytes(fd: BorrowedFd<'_>, len: u64) -> u64 {
    resident_bytes(fd, len).unwrap_or(0)
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux 4.0+).
pub fn reset_peak_rss() {
    reset_peak_rss_of("/proc/self");
}

/// The process's peak RSS (VmHWM) in bytes.
pub fn peak_rss() -> u64 {
    peak_rss_of("/proc/self")
}

/// Resets the peak RSS of the process at `proc_dir` (`/proc/<pid>`; a child of ours).
pub fn reset_peak_rss_of(proc_dir: &str) {
    let _ = std::fs::write(format!("{proc_dir}/clear_refs"), "5\n");
}

/// The peak RSS of the process at `proc_dir`, in bytes (0 when unknown).
pub fn peak_rss_of(proc_dir: &str) -> u64 {
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}
