//! The request-validation property's harness, shared by the seeded property test (group
//! `validation-model`, proptest) and the coverage-guided fuzz target (`fuzz/`): a generated
//! request mixes real files of odd sizes (opened buffered or O_DIRECT) and fds of every bad
//! kind, boundary offsets and lengths (EOF ± 1, u64::MAX, i64::MAX), overlapping and
//! far-away buffer offsets, too many or no segments, bad tunables and names, and unknown
//! backends. `check_case` runs it through the real engine (memfd buffers, so it runs on
//! hosts too) and checks against the reference model (`crate::model`):
//! * refused ⇔ the model finds a defect, and the code is one of the defects' codes;
//! * loaded ⇒ buffer size as modelled, every byte equal to the file's, zeros in between;
//! * either way, no fd and no charged byte left behind.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use dmaload_engine::{
    BackendChoice, Caller, CancelToken, Engine, EngineConfig, ErrorCode, FdSegment, IoMode,
    LoadRequest, NoProgress, Tunables, Usage,
};

use crate::buffer::ReadView;
use crate::fixtures::{BadFdKind, PatternFile};
use crate::model::{self, Code, Expected, Limits, RequestSpec, SegmentSpec, Source};
use crate::{pattern, probe};

/// File sizes of the property's files: empty, tiny, around a page, a little over 1 MiB.
pub const FILE_SIZES: &[u64] = &[0, 1, 511, 4095, 4096, 4097, 65_537, (1 << 20) + 3];
pub const MAX_SEGMENTS: usize = 8;
pub const MAX_BUFFER: u64 = 16 << 20;
pub const UNKNOWN_HEAP: &str = "vts-no-such-heap";

#[derive(Clone, Copy, Debug)]
pub enum OffsetPick {
    Zero,
    Small(u64),
    BeforeEnd(u64),
    PastEnd(u64),
    NearU64Max(u64),
    I64Max,
}

#[derive(Clone, Copy, Debug)]
pub enum LengthPick {
    ToEof,
    Small(u64),
    Rest,
    RestPlusOne,
    NearU64Max(u64),
}

#[derive(Clone, Copy, Debug)]
pub enum PlacePick {
    AfterPrevious(u64),
    Random(u64),
    SameAsPrevious,
    Far(u64),
    NearI64Max(u64),
    NearU64Max(u64),
}

#[derive(Clone, Copy, Debug)]
pub enum SourcePick {
    File { index: usize, direct: bool },
    Bad(BadFdKind),
}

#[derive(Clone, Debug)]
pub struct GenSegment {
    pub source: SourcePick,
    pub offset: OffsetPick,
    pub length: LengthPick,
    pub place: PlacePick,
}

#[derive(Clone, Debug)]
pub struct GenRequest {
    pub segments: Vec<GenSegment>,
    pub name: String,
    pub gather_size: u64,
    pub chunk_size: u64,
    pub io_mode: IoMode,
    pub known_backend: bool,
}

/// The request with its numbers resolved against the real file sizes.
pub fn resolve(gen: &GenRequest) -> RequestSpec {
    let mut segments: Vec<SegmentSpec> = Vec::new();
    for g in &gen.segments {
        let size = match g.source {
            SourcePick::File { index, .. } => Some(FILE_SIZES[index]),
            SourcePick::Bad(_) => None,
        };
        let s = size.unwrap_or(4096);
        let file_offset = match g.offset {
            OffsetPick::Zero => 0,
            OffsetPick::Small(n) => n,
            OffsetPick::BeforeEnd(k) => s.saturating_sub(k),
            OffsetPick::PastEnd(k) => s.saturating_add(k),
            OffsetPick::NearU64Max(k) => u64::MAX - k,
            OffsetPick::I64Max => i64::MAX as u64,
        };
        let rest = s.saturating_sub(file_offset);
        let length = match g.length {
            LengthPick::ToEof => 0,
            LengthPick::Small(n) => n,
            LengthPick::Rest => rest,
            LengthPick::RestPlusOne => rest.saturating_add(1),
            LengthPick::NearU64Max(k) => u64::MAX - k,
        };
        let previous = segments.last().map(|p: &SegmentSpec| {
            let len = match p.source {
                Source::File { size } if p.length == 0 => size.saturating_sub(p.file_offset),
                _ => p.length,
            };
            (p.buffer_offset, len)
        });
        let buffer_offset = match g.place {
            PlacePick::AfterPrevious(gap) => {
                previous.map_or(0, |(at, len)| at.saturating_add(len).saturating_add(gap))
            }
            PlacePick::Random(at) => at,
            PlacePick::SameAsPrevious => previous.map_or(0, |(at, _)| at),
            PlacePick::Far(at) => at,
            PlacePick::NearI64Max(k) => i64::MAX as u64 - k,
            PlacePick::NearU64Max(k) => u64::MAX - k,
        };
        segments.push(SegmentSpec {
            source: size.map_or(Source::NotReadableFile, |size| Source::File { size }),
            file_offset,
            length,
            buffer_offset,
        });
    }
    RequestSpec {
        segments,
        name: gen.name.clone(),
        gather_size: gen.gather_size,
        chunk_size: gen.chunk_size,
        backend_known: gen.known_backend,
    }
}

fn to_model_code(code: ErrorCode) -> Option<Code> {
    Some(match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::BadFd => Code::BadFd,
        ErrorCode::Range => Code::Range,
        ErrorCode::BadSegments => Code::BadSegments,
        ErrorCode::UnknownBackend => Code::UnknownBackend,
        ErrorCode::TooLarge => Code::TooLarge,
        _ => return None,
    })
}

pub struct Fixture {
    files: Vec<PatternFile>,
    engine: Engine,
    limits: Limits,
}

fn open_source(fx: &Fixture, pick: SourcePick) -> Result<OwnedFd, String> {
    match pick {
        SourcePick::File { index, direct } => {
            let f = &fx.files[index];
            // Hosts without O_DIRECT on this file system: the buffered fd is still a valid case.
            f.open(direct)
                .or_else(|_| f.open(false))
                .map_err(|e| format!("open {}: {e}", f.path.display()))
        }
        SourcePick::Bad(kind) => kind
            .make(&fx.files[1].path)
            .map_err(|e| format!("make {} fd: {e}", kind.name()))?
            .ok_or_else(|| format!("cannot make a {} fd here", kind.name())),
    }
}

pub fn check_case(fx: &Fixture, gen: &GenRequest) -> Result<(), String> {
    let spec = resolve(gen);
    let expected = model::expect(&spec, &fx.limits);
    let fds_before = probe::own_open_fds();
    let mut segments = Vec::with_capacity(gen.segments.len());
    for (g, s) in gen.segments.iter().zip(&spec.segments) {
        segments.push(FdSegment {
            fd: open_source(fx, g.source)?,
            file_offset: s.file_offset,
            length: s.length,
            buffer_offset: s.buffer_offset,
        });
    }
    let request = LoadRequest::from_fd_segments(segments, gen.name.clone())
        .with_backend(if gen.known_backend {
            BackendChoice::Memfd
        } else {
            BackendChoice::parse(UNKNOWN_HEAP)
        })
        .with_io_mode(gen.io_mode)
        .with_tunables(Tunables {
            gather_size: gen.gather_size,
            chunk_size: gen.chunk_size,
            ..Tunables::default()
        });
    let result = fx
        .engine
        .load(Caller::new(4242), request, &CancelToken::new(), &NoProgress);
    match (&expected, result) {
        (Expected::Refused(codes), Err(err)) => {
            let code = to_model_code(err.code);
            if !code.is_some_and(|c| codes.contains(&c)) {
                return Err(format!(
                    "refused with {err}, model expects one of {codes:?}"
                ));
            }
            if err.message.trim().is_empty() {
                return Err(format!("{} without a message", err.code));
            }
        }
        (Expected::Refused(codes), Ok(buf)) => {
            return Err(format!(
                "loaded {} bytes, model expects a refusal with one of {codes:?}",
                buf.size
            ));
        }
        (Expected::Loads { .. }, Err(err)) => {
            return Err(format!("refused with {err}, model expects a load"));
        }
        (
            Expected::Loads {
                buffer_size,
                placements,
            },
            Ok(buf),
        ) => {
            if buf.size != *buffer_size {
                return Err(format!(
                    "buffer of {} bytes, model says {buffer_size}",
                    buf.size
                ));
            }
            let view = ReadView::map(buf.fd.as_fd(), buf.size as usize)
                .map_err(|e| format!("map the buffer: {e}"))?;
            let bytes = view.as_bytes();
            let mut covered = vec![false; bytes.len()];
            for p in placements {
                let SourcePick::File { index, .. } = gen.segments[p.segment].source else {
                    return Err("model placed a bad fd".into());
                };
                let at = p.buffer_offset as usize;
                let got = &bytes[at..at + p.length as usize];
                if let Some(i) = pattern::first_mismatch(fx.files[index].seed, p.file_offset, got) {
                    return Err(format!(
                        "segment {}: byte {} of the buffer differs from file byte {}",
                        p.segment,
                        at + i,
                        p.file_offset + i as u64
                    ));
                }
                covered[at..at + p.length as usize].fill(true);
            }
            if let Some(i) = (0..bytes.len()).find(|&i| !covered[i] && bytes[i] != 0) {
                return Err(format!("byte {i} lies in no segment but is not zero"));
            }
            drop(view);
            drop(buf);
        }
    }
    let usage = fx.engine.total_usage();
    if usage != Usage::default() {
        return Err(format!("engine still charges {usage:?} after the case"));
    }
    let fds_after = probe::own_open_fds();
    if fds_after != fds_before {
        return Err(format!(
            "{fds_before} fds open before the case, {fds_after} after"
        ));
    }
    Ok(())
}

impl Fixture {
    /// The property's files in `base/validation` and an engine with the limits the model knows.
    pub fn new(base: &Path) -> Result<Fixture, String> {
        let dir = base.join("validation");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        for (i, &size) in FILE_SIZES.iter().enumerate() {
            let f = PatternFile::create(&dir, &format!("prop-{size}.bin"), 1000 + i as u64, size)
                .map_err(|e| format!("create a {size}-byte file in {}: {e}", dir.display()))?;
            files.push(f);
        }
        let mut config = EngineConfig::from_system();
        config.max_buffer_bytes = MAX_BUFFER;
        config.per_caller_cap_bytes = config.per_caller_cap_bytes.max(MAX_BUFFER);
        config.global_cap_bytes = config.global_cap_bytes.max(MAX_BUFFER);
        config.max_segments = MAX_SEGMENTS;
        config.min_available_after_bytes = 0;
        let engine = Engine::new(config).map_err(|e| format!("engine: {e}"))?;
        Ok(Fixture {
            files,
            engine,
            limits: Limits {
                max_segments: MAX_SEGMENTS,
                max_buffer_bytes: MAX_BUFFER,
                page_size: dmaload_abi::system::page_size(),
                max_name_len: 255,
            },
        })
    }

    /// The limits the engine runs with, as the model sees them.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// What the model expects of `gen`: a load, a refusal with one possible code, or a refusal
/// with several (for the property's tally).
pub fn expected(fx: &Fixture, gen: &GenRequest) -> Expected {
    model::expect(&resolve(gen), &fx.limits)
}
