//! Leak and health probes from /proc and the kernel log.

use std::fs;
use std::io;

/// Open fds of process `pid` (`/proc/<pid>/fd` entries).
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Open fds of this process, minus the one `read_dir` itself holds.
pub fn own_open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// `MemAvailable` in bytes.
pub fn mem_available() -> Option<u64> {
    dmaload_abi::meminfo::MemInfo::read().map(|m| m.available)
}

/// Lines of the kernel log that report an OOM kill.
pub fn oom_kills() -> Vec<String> {
    kernel_log(&["Out of memory", "oom-kill"])
}

/// The binder driver's reports of reference-count misuse: a transaction buffer freed while
/// its process no longer held a handle in it ("transaction release ... bad handle"), or a
/// reference command on a handle that does not exist ("refcount change on invalid ref").
pub fn binder_ref_errors() -> Vec<String> {
    kernel_log(&["bad handle", "invalid ref"])
}

/// Records of the kernel log containing any of `needles` (reads /dev/kmsg without blocking;
/// nothing where it cannot be read).
pub fn kernel_log(needles: &[&str]) -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut record = vec![0u8; 8192];
    // Each read returns one record; EAGAIN at the end, EPIPE when records were overwritten.
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                if needles.iter().any(|n| text.contains(n)) {
                    found.push(text.trim().to_string());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    found
}
