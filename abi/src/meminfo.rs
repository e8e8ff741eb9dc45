//! `/proc/meminfo`: the memory figures limits and tests are derived from.

/// Memory figures from /proc/meminfo, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

impl MemInfo {
    /// Reads /proc/meminfo; `None` if it is unreadable or lacks a figure.
    pub fn read() -> Option<MemInfo> {
        MemInfo::parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
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
    }
}
