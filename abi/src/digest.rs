//! Digests as every dmaload crate names them: the algorithms (stable numbers, the AIDL
//! `DigestAlgorithm` and the C API's `ADMALOAD_DIGEST_*` repeat them), a segment's digest,
//! and their text form `sha256:HEX` / `fsverity:HEX` (what `sha256sum` and `fsverity digest`
//! print, with the algorithm in front). Computing them is the engine's business.

use std::fmt;

/// Bytes of every digest dmaload computes (both algorithms are SHA-256 based).
pub const DIGEST_BYTES: usize = 32;

/// How a segment's bytes are digested. Numbers never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum DigestAlgorithm {
    /// SHA-256 of the bytes: what `sha256sum` prints.
    Sha256 = 1,
    /// The fs-verity file digest of the bytes (SHA-256 Merkle tree over 4 KiB blocks, no
    /// salt): what `fsverity digest` prints for a file holding exactly these bytes.
    FsVerity = 2,
}

impl DigestAlgorithm {
    /// Every algorithm, in numeric order.
    pub const ALL: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::FsVerity];

    /// The stable number (AIDL / C API value).
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<DigestAlgorithm> {
        DigestAlgorithm::ALL.into_iter().find(|a| a.code() == code)
    }

    /// `sha256` or `fsverity`: the CLI's and the JSON's name, and the tag of the text form.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::FsVerity => "fsverity",
        }
    }

    pub fn parse(name: &str) -> Option<DigestAlgorithm> {
        DigestAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The digest of one segment of a request: expected by the request, or computed by the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    /// The segment: an index into the request's segments.
    pub segment: usize,
    pub algorithm: DigestAlgorithm,
    pub value: [u8; DIGEST_BYTES],
    /// The kernel's fs-verity measurement of the file (the segment is the whole file and
    /// the file has fs-verity on), not a value computed from the bytes. False in requests.
    pub from_kernel: bool,
}

impl Digest {
    /// The value as lowercase hex.
    pub fn hex(&self) -> String {
        to_hex(&self.value)
    }
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest value from hex (either case), if it is exactly [`DIGEST_BYTES`] bytes of it.
pub fn parse_hex(text: &str) -> Option<[u8; DIGEST_BYTES]> {
    let text = text.as_bytes();
    if text.len() != 2 * DIGEST_BYTES {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut value = [0u8; DIGEST_BYTES];
    for (byte, pair) in value.iter_mut().zip(text.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(value)
}

/// Parses `sha256:HEX` or `fsverity:HEX` (also `fsverity digest`'s own `sha256:` after
/// `fsverity:`, i.e. `fsverity:sha256:HEX`). The error says what is expected.
pub fn parse_tagged(text: &str) -> Result<(DigestAlgorithm, [u8; DIGEST_BYTES]), String> {
    let usage = "expected sha256:HEX or fsverity:HEX with 64 hex digits";
    let (tag, hex) = text.split_once(':').ok_or_else(|| usage.to_string())?;
    let algorithm = DigestAlgorithm::parse(tag).ok_or_else(|| usage.to_string())?;
    let hex = match algorithm {
        DigestAlgorithm::FsVerity => hex.strip_prefix("sha256:").unwrap_or(hex),
        DigestAlgorithm::Sha256 => hex,
    };
    let value = parse_hex(hex).ok_or_else(|| usage.to_string())?;
    Ok((algorithm, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_are_stable_and_round_trip() {
        assert_eq!(DigestAlgorithm::Sha256.code(), 1);
        assert_eq!(DigestAlgorithm::FsVerity.code(), 2);
        for a in DigestAlgorithm::ALL {
            assert_eq!(DigestAlgorithm::from_code(a.code()), Some(a));
            assert_eq!(DigestAlgorithm::parse(a.name()), Some(a));
        }
        assert_eq!(DigestAlgorithm::from_code(0), None);
        assert_eq!(DigestAlgorithm::from_code(3), None);
        assert_eq!(DigestAlgorithm::parse("md5"), None);
    }

    #[test]
    fn text_forms_parse_and_print() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let (algorithm, value) = parse_tagged(&format!("sha256:{hex}")).expect("parse");
        assert_eq!(algorithm, DigestAlgorithm::Sha256);
        assert_eq!(to_hex(&value), hex);
        let upper = parse_tagged(&format!("fsverity:{}", hex.to_uppercase())).expect("parse");
        assert_eq!(upper, (DigestAlgorithm::FsVerity, value));
        // What `fsverity digest` prints, tagged.
        let tool = parse_tagged(&format!("fsverity:sha256:{hex}")).expect("parse");
        assert_eq!(tool, (DigestAlgorithm::FsVerity, value));
        for bad in [
            "",
            "sha256",
            &format!("md5:{hex}"),
            &format!("sha256:{}", &hex[1..]),
            &format!("sha256:{hex}0"),
            &format!("sha256:{}g", &hex[1..]),
            &format!("sha256:sha256:{hex}"),
        ] {
            assert!(parse_tagged(bad).is_err(), "{bad:?}");
        }
    }
}
