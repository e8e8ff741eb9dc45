//! The reference model of request validation, written from docs/DESIGN.md's error table
//! rather than from the engine's code: given the files, fds and numbers of a request, which
//! error codes may the service answer with, or which bytes must the buffer hold.
//!
//! A request with several defects may be refused with the code of any one of them; a
//! request with none must load, byte-exact, into a buffer of the page-rounded extent of its
//! segments with zeros between them.

/// Stable codes of docs/DESIGN.md (the engine, the AIDL and the C API share them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    InvalidArgument = 1,
    BadFd = 2,
    Range = 3,
    BadSegments = 4,
    UnknownBackend = 5,
    TooLarge = 7,
}

/// What a segment's fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A readable regular file of this size.
    File { size: u64 },
    /// Anything that is not (directory, pipe, O_PATH, write-only, ...).
    NotReadableFile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpec {
    pub source: Source,
    pub file_offset: u64,
    /// 0 = to the end of the file.
    pub length: u64,
    pub buffer_offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    pub segments: Vec<SegmentSpec>,
    pub name: String,
    /// 0 = default.
    pub gather_size: u64,
    /// 0 = default.
    pub chunk_size: u64,
    /// The backend named exists.
    pub backend_known: bool,
}

/// Service limits the model needs.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_segments: usize,
    pub max_buffer_bytes: u64,
    pub page_size: u64,
    pub max_name_len: usize,
}

/// One piece of file content in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub segment: usize,
    pub file_offset: u64,
    pub length: u64,
    pub buffer_offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Loads {
        buffer_size: u64,
        placements: Vec<Placement>,
    },
    /// Refused with any of these codes (never empty).
    Refused(Vec<Code>),
}

fn tunable_ok(value: u64, page: u64, min: u64, max: u64) -> bool {
    value == 0 || (value % page == 0 && (min..=max).contains(&value))
}

/// What the service must answer to `req`.
pub fn expect(req: &RequestSpec, limits: &Limits) -> Expected {
    let mut codes = Vec::new();
    if req.name.len() > limits.max_name_len || req.name.contains('\0') {
        codes.push(Code::InvalidArgument);
    }
    if !tunable_ok(req.gather_size, limits.page_size, 1 << 20, 64 << 30)
        || !tunable_ok(req.chunk_size, limits.page_size, 64 << 10, 256 << 20)
    {
        codes.push(Code::InvalidArgument);
    }
    if req.segments.is_empty() || req.segments.len() > limits.max_segments {
        codes.push(Code::BadSegments);
    }
    let mut placements = Vec::new();
    let mut segment_defect = false;
    if req.segments.len() <= limits.max_segments {
        for (i, s) in req.segments.iter().enumerate() {
            let Source::File { size } = s.source else {
                codes.push(Code::BadFd);
                segment_defect = true;
                continue;
            };
            let length = if s.length == 0 {
                if s.file_offset >= size {
                    codes.push(Code::Range);
                    segment_defect = true;
                    continue;
                }
                size - s.file_offset
            } else {
                s.length
            };
            match s.file_offset.checked_add(length) {
                Some(end) if end <= size => {}
                _ => {
                    codes.push(Code::Range);
                    segment_defect = true;
                    continue;
                }
            }
            if s.buffer_offset
                .checked_add(length)
                .map_or(true, |end| end > i64::MAX as u64)
            {
                codes.push(Code::BadSegments);
                segment_defect = true;
                continue;
            }
            placements.push(Placement {
                segment: i,
                file_offset: s.file_offset,
                length,
                buffer_offset: s.buffer_offset,
            });
        }
    }
    if !codes.is_empty() || segment_defect {
        return refused(codes);
    }
    // Overlap is only decidable once every segment's extent is known.
    let mut sorted = placements.clone();
    sorted.sort_by_key(|p| (p.buffer_offset, p.length));
    if sorted
        .windows(2)
        .any(|w| w[0].buffer_offset + w[0].length > w[1].buffer_offset)
    {
        return refused(vec![Code::BadSegments]);
    }
    if !req.backend_known {
        return refused(vec![Code::UnknownBackend]);
    }
    let end = sorted
        .iter()
        .map(|p| p.buffer_offset + p.length)
        .max()
        .unwrap_or(0);
    let buffer_size = end.div_ceil(limits.page_size) * limits.page_size;
    if buffer_size > limits.max_buffer_bytes {
        return refused(vec![Code::TooLarge]);
    }
    Expected::Loads {
        buffer_size,
        placements,
    }
}

fn refused(mut codes: Vec<Code>) -> Expected {
    codes.sort();
    codes.dedup();
    Expected::Refused(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_segments: 4,
        max_buffer_bytes: 1 << 20,
        page_size: 4096,
        max_name_len: 255,
    };

    fn seg(size: u64, off: u64, len: u64, at: u64) -> SegmentSpec {
        SegmentSpec {
            source: Source::File { size },
            file_offset: off,
            length: len,
            buffer_offset: at,
        }
    }

    fn req(segments: Vec<SegmentSpec>) -> RequestSpec {
        RequestSpec {
            segments,
            name: "t".into(),
            gather_size: 0,
            chunk_size: 0,
            backend_known: true,
        }
    }

    #[test]
    fn the_model_follows_the_design_table() {
        let ok = expect(&req(vec![seg(10, 2, 0, 4096), seg(10, 0, 3, 0)]), &LIMITS);
        assert_eq!(
            ok,
            Expected::Loads {
                buffer_size: 8192,
                placements: vec![
                    Placement {
                        segment: 0,
                        file_offset: 2,
                        length: 8,
                        buffer_offset: 4096
                    },
                    Placement {
                        segment: 1,
                        file_offset: 0,
                        length: 3,
                        buffer_offset: 0
                    },
                ]
            }
        );
        let refused = |r: RequestSpec| match expect(&r, &LIMITS) {
            Expected::Refused(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(req(vec![])), vec![Code::BadSegments]);
        assert_eq!(refused(req(vec![seg(10, 10, 0, 0)])), vec![Code::Range]);
        assert_eq!(
            refused(req(vec![seg(10, u64::MAX, 2, 0)])),
            vec![Code::Range]
        );
        assert_eq!(
            refused(req(vec![seg(10, 0, 5, 0), seg(10, 0, 5, 4)])),
            vec![Code::BadSegments]
        );
        assert_eq!(
            refused(req(vec![seg(10, 0, 5, (1 << 20) + 1)])),
            vec![Code::TooLarge]
        );
        let mut r = req(vec![seg(10, 0, 11, 0)]);
        r.chunk_size = 4097;
        assert_eq!(refused(r), vec![Code::InvalidArgument, Code::Range]);
    }
}
