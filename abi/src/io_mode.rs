//! The I/O mode as every dmaload crate names it: stable numbers (the AIDL `IoMode` and the C
//! API's `ADMALOAD_IO_MODE_*` repeat them) and the names the CLI and dumps use.

/// How the service reads a file. Numbers never change meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum IoMode {
    /// Direct when the fd was opened with `O_DIRECT` and its file system supports it,
    /// buffered otherwise (reported as a fallback).
    #[default]
    Auto = 0,
    /// Direct I/O is required: the fd must carry `O_DIRECT`; file systems without it fall
    /// back to buffered reads, counted and reported in the stats.
    Direct = 1,
    /// Buffered reads; the pages read are dropped from the page cache afterwards.
    Buffered = 2,
}

impl IoMode {
    /// Every mode, in numeric order.
    pub const ALL: [IoMode; 3] = [IoMode::Auto, IoMode::Direct, IoMode::Buffered];

    /// The mode with stable number `code` (AIDL / C API value), if there is one.
    pub fn from_code(code: i32) -> Option<IoMode> {
        IoMode::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The stable number (AIDL / C API value).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// `auto`, `direct` or `buffered`.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Direct => "direct",
            IoMode::Buffered => "buffered",
        }
    }

    /// The mode named `text` ([`IoMode::name`]).
    pub fn parse(text: &str) -> Option<IoMode> {
        IoMode::ALL.into_iter().find(|m| m.name() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::IoMode;

    #[test]
    fn codes_and_names_round_trip() {
        for mode in IoMode::ALL {
            assert_eq!(IoMode::from_code(mode.code()), Some(mode));
            assert_eq!(IoMode::parse(mode.name()), Some(mode));
        }
        assert_eq!(IoMode::from_code(3), None);
        assert_eq!(IoMode::parse("fast"), None);
        assert_eq!(IoMode::default(), IoMode::Auto);
    }
}
