//! Group `validation-model`: seeded property test of request validation against the
//! reference model. The generated requests and the checks of each case are the library's
//! (`dmaload_vts::validation`, shared with the fuzz target in `fuzz/`); this file holds the
//! proptest strategies, which weight the boundary cases, and the seeded runner.

use std::sync::Mutex;

use dmaload_engine::IoMode;
use dmaload_vts::fixtures::BadFdKind;
use dmaload_vts::harness::Group;
use dmaload_vts::model::Expected;
use dmaload_vts::validation::{
    check_case, expected, Fixture, GenRequest, GenSegment, LengthPick, OffsetPick, PlacePick,
    SourcePick, FILE_SIZES, MAX_SEGMENTS,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::Options;

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

pub fn run(options: &Options) -> Group {
    let mut group = Group::new("validation-model");
    let fx = match Fixture::new(&options.dir) {
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
            match expected(&fx, &gen) {
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
