//! Group `validation-model`: seeded property test of request validation against the
//! reference model (`dmaload_vts::model`). Each generated request mixes real files of odd
//! sizes (opened buffered or O_DIRECT) and fds of every bad kind, boundary offsets and
//! lengths (EOF ± 1, u64::MAX, i64::MAX), overlapping and far-away buffer offsets, too many
//! or no segments, bad tunables and names, and unknown backends. It runs through the real
//! engine (memfd buffers, so it runs on hosts too). Properties per case:
//! * refused ⇔ the model finds a defect, and the code is one of the defects' codes;
//! * loaded ⇒ buffer size as modelled, every byte equal to the file's, zeros in between;
//! * either way, no fd and no charged byte left behind.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use dmaload_engine::{
    BufferKind, CancelToken, Engine, EngineConfig, ErrorCode, IoMode, LoadRequest, NoProgress,
    Owner, Segment, Tunables, Usage,
};
use dmaload_vts::buffer::ReadView;
use dmaload_vts::fixtures::{BadFdKind, PatternFile};
use dmaload_vts::harness::Group;
use dmaload_vts::model::{self, Code, Expected, Limits, RequestSpec, SegmentSpec, Source};
use dmaload_vts::{pattern, probe};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::Options;

/// File sizes of the property's files: empty, tiny, around a page, a little over 1 MiB.
const FILE_SIZES: &[u64] = &[0, 1, 511, 4095, 4096, 4097, 65_537, (1 << 20) + 3];
const MAX_SEGMENTS: usize = 8;
const MAX_BUFFER: u64 = 16 << 20;
const UNKNOWN_HEAP: &str = "vts-no-such-heap";

#[derive(Clone, Copy, Debug)]
enum OffsetPick {
    Zero,
    Small(u64),
    BeforeEnd(u64),
    PastEnd(u64),
    NearU64Max(u64),
    I64Max,
}

#[derive(Clone, Copy, Debug)]
enum LengthPick {
    ToEof,
    Small(u64),
    Rest,
    RestPlusOne,
    NearU64Max(u64),
}

#[derive(Clone, Copy, Debug)]
enum PlacePick {
    AfterPrevious(u64),
    Random(u64),
    SameAsPrevious,
    Far(u64),
    NearI64Max(u64),
    NearU64Max(u64),
}

#[derive(Clone, Copy, Debug)]
enum SourcePick {
    File { index: usize, direct: bool },
    Bad(BadFdKind),
}

#[derive(Clone, Debug)]
struct GenSegment {
    source: SourcePick,
    offset: OffsetPick,
    length: LengthPick,
    place: PlacePick,
}

#[derive(Clone, Debug)]
struct GenRequest {
    segments: Vec<GenSegment>,
    name: String,
    gather_size: u64,
    chunk_size: u64,
    io_mode: IoMode,
    known_backend: bool,
}

fn source_pick() -> impl Strategy<Value = SourcePick> {
    let bad = proptest::sample::select(
        BadFdKind::ALL
            .iter()
            .copied()
            .filter(|k| *k != BadFdKind::DmaBuf)
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        24 => (0..FILE_SIZES.len(), any::<bool>())
            .prop_map(|(index, direct)| SourcePick::File { index, direct }),
        1 => bad.prop_map(SourcePick::Bad),
    ]
}

fn offset_pick() -> impl Strategy<Value = OffsetPick> {
    prop_oneof![
        12 => Just(OffsetPick::Zero),
        6 => (0u64..=70_000).prop_map(OffsetPick::Small),
        2 => (0u64..=3).prop_map(OffsetPick::BeforeEnd),
        1 => (0u64..=3).prop_map(OffsetPick::PastEnd),
        1 => (0u64..=2).prop_map(OffsetPick::NearU64Max),
        1 => Just(OffsetPick::I64Max),
    ]
}

fn length_pick() -> impl Strategy<Value = LengthPick> {
    prop_oneof![
        12 => Just(LengthPick::ToEof),
        3 => (1u64..=70_000).prop_map(LengthPick::Small),
        6 => Just(LengthPick::Rest),
        1 => Just(LengthPick::RestPlusOne),
        1 => (0u64..=2).prop_map(LengthPick::NearU64Max),
    ]
}

fn place_pick() -> impl Strategy<Value = PlacePick> {
    prop_oneof![
        24 => (0u64..=9000).prop_map(PlacePick::AfterPrevious),
        2 => (0u64..=(1 << 20)).prop_map(PlacePick::Random),
        1 => Just(PlacePick::SameAsPrevious),
        1 => ((15u64 << 20)..=(17 << 20)).prop_map(PlacePick::Far),
        1 => (0u64..=2).prop_map(PlacePick::NearI64Max),
        1 => (0u64..=2).prop_map(PlacePick::NearU64Max),
    ]
}

fn segment_strategy() -> impl Strategy<Value = GenSegment> {
    (source_pick(), offset_pick(), length_pick(), place_pick()).prop_map(
        |(source, offset, length, place)| GenSegment {
            source,
            offset,
            length,
            place,
        },
    )
}

fn request_strategy() -> impl Strategy<Value = GenRequest> {
    let segments = prop_oneof![
        1 => Just(Vec::new()),
        24 => proptest::collection::vec(segment_strategy(), 1..=4),
        2 => proptest::collection::vec(segment_strategy(), 5..=MAX_SEGMENTS + 2),
    ];
    let name = prop_oneof![
        30 => Just("vts-prop".to_string()),
        2 => Just(String::new()),
        2 => Just("n".repeat(255)),
        1 => Just("n".repeat(256)),
        1 => Just("nul\0inside".to_string()),
    ];
    let gather = prop_oneof![
        30 => Just(0u64),
        3 => Just(1u64 << 20),
        1 => Just(4096u64),
        1 => Just((1u64 << 20) + 1),
        1 => Just(65u64 << 30),
    ];
    let chunk = prop_oneof![
        30 => Just(0u64),
        3 => Just(64u64 << 10),
        1 => Just(4096u64),
        1 => Just(257u64 << 20),
    ];
    let io = prop_oneof![
        Just(IoMode::Auto),
        Just(IoMode::Direct),
        Just(IoMode::Buffered)
    ];
    (
        segments,
        name,
        gather,
        chunk,
        io,
        proptest::bool::weighted(0.97),
    )
        .prop_map(
            |(segments, name, gather_size, chunk_size, io_mode, known_backend)| GenRequest {
                segments,
                name,
                gather_size,
                chunk_size,
                io_mode,
                known_backend,
            },
        )
}

/// The request with its numbers resolved against the real file sizes.
fn resolve(gen: &GenRequest) -> RequestSpec {
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
            OffsetPick::PastEnd(k) => s + k,
            OffsetPick::NearU64Max(k) => u64::MAX - k,
            OffsetPick::I64Max => i64::MAX as u64,
        };
        let rest = s.saturating_sub(file_offset);
        let length = match g.length {
            LengthPick::ToEof => 0,
            LengthPick::Small(n) => n,
            LengthPick::Rest => rest,
            LengthPick::RestPlusOne => rest + 1,
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

struct Fixture {
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

fn check_case(fx: &Fixture, gen: &GenRequest) -> Result<(), String> {
    let spec = resolve(gen);
    let expected = model::expect(&spec, &fx.limits);
    let fds_before = probe::own_open_fds();
    let mut segments = Vec::with_capacity(gen.segments.len());
    for (g, s) in gen.segments.iter().zip(&spec.segments) {
        segments.push(Segment {
            fd: open_source(fx, g.source)?,
            file_offset: s.file_offset,
            length: s.length,
            buffer_offset: s.buffer_offset,
        });
    }
    let request = LoadRequest {
        segments,
        buffer: if gen.known_backend {
            BufferKind::Memfd
        } else {
            BufferKind::parse(UNKNOWN_HEAP)
        },
        io_mode: gen.io_mode,
        name: gen.name.clone(),
        tunables: Tunables {
            gather_size: gen.gather_size,
            chunk_size: gen.chunk_size,
            ..Tunables::default()
        },
    };
    let result = fx
        .engine
        .load(Owner::new(4242), request, &CancelToken::new(), &NoProgress);
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

fn fixture(options: &Options) -> Result<Fixture, String> {
    let dir = options.dir.join("validation");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for (i, &size) in FILE_SIZES.iter().enumerate() {
        let f = PatternFile::create(&dir, &format!("prop-{size}.bin"), 1000 + i as u64, size)
            .map_err(|e| format!("create a {size}-byte file in {}: {e}", dir.display()))?;
        files.push(f);
    }
    let mut config = EngineConfig::from_system();
    config.max_buffer_bytes = MAX_BUFFER;
    config.per_owner_cap_bytes = config.per_owner_cap_bytes.max(MAX_BUFFER);
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
            page_size: dmaload_engine::kernel::page_size(),
            max_name_len: 255,
        },
    })
}

pub fn run(options: &Options) -> Group {
    let mut group = Group::new("validation-model");
    let fx = match fixture(options) {
        Ok(fx) => fx,
        Err(e) => {
            group.case("fixtures", || Err(e));
            return group;
        }
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&options.seed.to_le_bytes());
    let config = Config {
        cases: options.prop_cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let tally = Mutex::new((0u32, 0u32, [0u32; 3]));
    let outcome = runner.run(&request_strategy(), |gen| {
        let result = check_case(&fx, &gen);
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += 1;
        if result.is_ok() {
            t.1 += 1;
            let expected = model::expect(&resolve(&gen), &fx.limits);
            match expected {
                Expected::Loads { .. } => t.2[0] += 1,
                Expected::Refused(c) if c.len() == 1 => t.2[1] += 1,
                Expected::Refused(_) => t.2[2] += 1,
            }
        }
        result.map_err(TestCaseError::fail)
    });
    let (run, passed, kinds) = *tally.lock().unwrap_or_else(|p| p.into_inner());
    // Shrinking re-runs failing inputs: count the generated cases, and one failure per
    // minimal counterexample.
    let failures = match outcome {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("seed {:#x}: {e}", options.seed)],
    };
    let generated = if failures.is_empty() {
        run
    } else {
        run.min(options.prop_cases)
    };
    let ok = if failures.is_empty() {
        passed
    } else {
        generated.saturating_sub(1)
    };
    println!(
        "  validation-model: {} loads, {} refusals with one defect, {} with several (seed {:#x})",
        kinds[0], kinds[1], kinds[2], options.seed
    );
    group.record(generated, ok, failures);
    group
}
