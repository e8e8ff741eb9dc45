//! `/proc/meminfo`: the memory figures limits and tests are derived from.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Memory figures from /proc/meminfo, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

impl MemInfo {
    /// Reads /proc/meminfo; `None` if it is unreadable or lacks a figure.
    pub fn read() -> Option<MemInfo> {
        MemInfoFile::open()?.read()
    }

    /// Parses the text of /proc/meminfo (`MemTotal:   16318360 kB` lines).
    pub fn parse(text: &str) -> Option<MemInfo> {
        let field = |name: &str| -> Option<u64> {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
            let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
            kib.checked_mul(1024)
        };
        Some(MemInfo {
            total: field("MemTotal")?,
            available: field("MemAvailable")?,
        })
    }
}

/// Bytes read at once: the whole of /proc/meminfo (about 1.5 KiB) in one call.
const READ_AT_ONCE: usize = 4096;

/// /proc/meminfo kept open: each [`read`](MemInfoFile::read) is one `pread` at offset 0
/// (the kernel generates the text afresh), no path lookup and no open/close. A load's
/// admission reads it every time; `std::fs::read_to_string` costs an open, a statx, a close
/// and eight reads of a growing buffer (procfs reports size 0).
#[derive(Debug)]
pub struct MemInfoFile {
    file: File,
}

impl MemInfoFile {
    /// Opens /proc/meminfo; `None` if it cannot.
    pub fn open() -> Option<MemInfoFile> {
        File::open("/proc/meminfo")
            .ok()
            .map(|file| MemInfoFile { file })
    }

    /// The figures now from `kept`, an open /proc/meminfo, or without one from a fresh read.
    pub fn read_kept(kept: Option<&MemInfoFile>) -> Option<MemInfo> {
        match kept {
            Some(file) => file.read(),
            None => MemInfo::read(),
        }
    }

    /// The figures now; `None` if the read fails or lacks a figure.
    pub fn read(&self) -> Option<MemInfo> {
        let mut text = vec![0u8; READ_AT_ONCE];
        loop {
            // One call takes the whole text when it fits: a short read is the end (procfs
            // fills the buffer as far as the text goes). A read at another offset would have
            // the kernel generate it all again, so a text that does not fit is read again
            // whole into a larger buffer: one snapshot, never two halves.
            let n = self.file.read_at(&mut text, 0).ok()?;
            if n < text.len() {
                return MemInfo::parse(std::str::from_utf8(&text[..n]).ok()?);
            }
            if text.len() >= 1 << 20 {
                return None;
            }
            text.resize(2 * text.len(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines_and_refuses_missing_fields() {
        let text = "MemTotal:       16318360 kB\nMemFree:  1 kB\nMemAvailable:    8000 kB\n";
        assert_eq!(
            MemInfo::parse(text),
            Some(MemInfo {
                total: 16318360 * 1024,
                available: 8000 * 1024
            })
        );
        assert_eq!(MemInfo::parse("MemTotal: 1 kB\n"), None);
        assert_eq!(MemInfo::parse("MemTotal: x kB\nMemAvailable: 1 kB\n"), None);
        let here = MemInfo::read().expect("/proc/meminfo");
        assert!(here.total > 0 && here.available <= here.total);
        // A kept file reads the figures afresh every time (its total never changes).
        let kept = MemInfoFile::open().expect("/proc/meminfo");
        for _ in 0..3 {
            let again = kept.read().expect("a second read of the kept file");
            assert_eq!(again.total, here.total);
            assert!(again.available > 0 && again.available <= again.total);
        }
    }
}
