//! Text that came from a caller (buffer names, heap names, paths, dump arguments), made safe to
//! print: every dump line, log line and error message shows such text through [`Untrusted`].
//!
//! Control characters and anything a terminal or log reader could take for something else
//! (escape sequences, CR/LF that would start a forged line, bidi overrides, zero-width and
//! other invisible characters, bytes that are not UTF-8) are shown as `\xNN` (a byte) or
//! `\u{...}` (a character); at most a fixed number of bytes is shown, then `…(+N bytes)` says
//! how much of the input was left out. A backslash is shown as it is, so escaping is
//! idempotent (text escaped once passes unchanged) but not reversible.

use std::fmt::{self, Write};
use std::path::Path;

/// Bytes of escaped text shown by default before the rest is cut off.
pub const DEFAULT_LIMIT: usize = 256;

/// Longest possible cut-off marker, `…(+18446744073709551615 bytes)`: a shown text is at most
/// its limit plus this many bytes.
pub const MARKER_MAX_BYTES: usize = 32;

/// Caller text to print: escaped and bounded by its `Display`.
#[derive(Clone, Copy, Debug)]
pub struct Untrusted<'a> {
    bytes: &'a [u8],
    limit: usize,
}

impl<'a> Untrusted<'a> {
    pub fn str(text: &'a str) -> Untrusted<'a> {
        Untrusted::bytes(text.as_bytes())
    }

    /// Bytes that are usually text (a path, an argument); invalid UTF-8 shows as `\xNN`.
    pub fn bytes(bytes: &'a [u8]) -> Untrusted<'a> {
        Untrusted {
            bytes,
            limit: DEFAULT_LIMIT,
        }
    }

    pub fn path(path: &'a Path) -> Untrusted<'a> {
        use std::os::unix::ffi::OsStrExt;
        Untrusted::bytes(path.as_os_str().as_bytes())
    }

    /// Shows at most `limit` bytes of escaped text (then the cut-off marker).
    pub fn limit(self, limit: usize) -> Untrusted<'a> {
        Untrusted { limit, ..self }
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0usize;
        let mut rest = self.bytes;
        while !rest.is_empty() {
            let (piece, used) = next_piece(rest);
            if shown + piece.len() > self.limit {
                break;
            }
            f.write_str(&piece)?;
            shown += piece.len();
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            write!(f, "…(+{} bytes)", rest.len())?;
        }
        Ok(())
    }
}

/// The escaped form of the first character (or invalid byte) of `bytes`, and how many input
/// bytes it covers.
fn next_piece(bytes: &[u8]) -> (String, usize) {
    let mut piece = String::new();
    let b = bytes[0];
    if b.is_ascii() {
        if (0x20..0x7f).contains(&b) {
            piece.push(char::from(b));
        } else {
            let _ = write!(piece, "\\x{b:02x}");
        }
        return (piece, 1);
    }
    // A UTF-8 sequence is at most 4 bytes long: decode just the candidate.
    let end = bytes.len().min(4);
    let valid = match std::str::from_utf8(&bytes[..end]) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) => {
            // Rust's printable tables: a character shows as itself when escape_debug keeps it.
            if !c.is_control() && c.escape_debug().count() == 1 {
                piece.push(c);
            } else {
                let _ = write!(piece, "\\u{{{:x}}}", u32::from(c));
            }
            (piece, c.len_utf8())
        }
        None => {
            let _ = write!(piece, "\\x{b:02x}");
            (piece, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Untrusted::str(text).to_string()
    }

    #[test]
    fn printable_text_passes_unchanged() {
        assert_eq!(shown("model-v2 weights.bin"), "model-v2 weights.bin");
        assert_eq!(shown("modèle 日本 😀"), "modèle 日本 😀");
        assert_eq!(shown(r"a\x1bb"), r"a\x1bb");
        assert_eq!(shown(""), "");
    }

    #[test]
    fn controls_and_invisible_characters_are_escaped() {
        assert_eq!(
            shown("a\x1b[2Jb\x07c\rd\ne\tf\x7f"),
            r"a\x1b[2Jb\x07c\x0dd\x0ae\x09f\x7f"
        );
        // A forged dump line stays on its line.
        assert_eq!(shown("x\nid=999 uid=0"), r"x\x0aid=999 uid=0");
        // C1 controls (8-bit CSI), bidi override, line separator, zero-width space, BOM.
        assert_eq!(
            shown("\u{9b}\u{202e}\u{2028}\u{200b}\u{feff}"),
            r"\u{9b}\u{202e}\u{2028}\u{200b}\u{feff}"
        );
        assert_eq!(
            Untrusted::bytes(b"ok\xff\xc3(\xe2\x82").to_string(),
            r"ok\xff\xc3(\xe2\x82"
        );
    }

    #[test]
    fn escaping_is_idempotent() {
        for text in ["a\x1bb", "\u{202e}x\n", "plain"] {
            let once = shown(text);
            assert_eq!(shown(&once), once);
        }
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let long = "n".repeat(8 << 20);
        let out = shown(&long);
        assert_eq!(
            out,
            format!(
                "{}…(+{} bytes)",
                "n".repeat(DEFAULT_LIMIT),
                (8 << 20) - DEFAULT_LIMIT
            )
        );
        assert!(out.len() <= DEFAULT_LIMIT + MARKER_MAX_BYTES);
        // The limit counts escaped bytes; an escape is never split.
        let out = Untrusted::str("\x1b\x1b\x1b").limit(9).to_string();
        assert_eq!(out, r"\x1b\x1b…(+1 bytes)");
        let marker = format!("…(+{} bytes)", u64::MAX);
        assert_eq!(marker.len(), MARKER_MAX_BYTES);
        assert_eq!(Untrusted::str("abc").limit(0).to_string(), "…(+3 bytes)");
    }

    #[test]
    fn paths_with_invalid_utf8_show_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/data/m\xffodel\x1b.bin"));
        assert_eq!(
            Untrusted::path(path).to_string(),
            r"/data/m\xffodel\x1b.bin"
        );
    }
}
