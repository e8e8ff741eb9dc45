//! Group `parcel-decoding`: seeded property test of how the service's request types decode
//! from untrusted parcel bytes (rsbinder, the same generated code the service runs). The
//! checks are the library's (`dmaload_vts::parcel`, shared with the fuzz target in `fuzz/`):
//! * valid requests (every field, segments without fds) round-trip exactly;
//! * the same bytes truncated, with bytes flipped, inserted or spliced, and plain random
//!   bytes, decode to a value or an error — never a panic, never an allocation blow-up.

use std::sync::Mutex;

use dmaload_vts::harness::Group;
use dmaload_vts::parcel::{apply, build, check_decode, check_round_trip, Fields, Mutation};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::Options;

fn request_strategy() -> impl Strategy<Value = Fields> {
    let seg = (any::<i64>(), any::<i64>(), any::<i64>());
    (
        proptest::collection::vec(seg, 0..6),
        "[a-z:]{0,12}",
        any::<i32>(),
        ".{0,40}",
        (any::<i64>(), any::<i64>(), any::<i32>()),
    )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        // Length and count fields are i32s at 4-byte offsets: huge, negative, off by one.
        (
            any::<usize>(),
            prop_oneof![
                Just(-1i32),
                Just(i32::MAX),
                Just(i32::MIN),
                Just(0x4000_0000),
                any::<i32>()
            ]
        )
            .prop_map(|(i, v)| Mutation::SetI32(i, v)),
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(Mutation::Random),
    ]
}

pub fn run(o: &Options) -> Group {
    let mut group = Group::new("parcel-decoding");
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&o.seed.wrapping_add(1).to_le_bytes());
    let config = Config {
        cases: o.prop_cases * 10,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let tally = Mutex::new((0u32, 0u32));
    let outcome = runner.run(
        &(
            request_strategy(),
            proptest::collection::vec(mutation(), 1..4),
        ),
        |(v, muts)| {
            tally.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
            let mut bytes = check_round_trip(&build(&v)).map_err(TestCaseError::fail)?;
            for m in &muts {
                bytes = apply(bytes, m);
            }
            // Decoding garbage must return, not panic or abort (a panic fails the case).
            check_decode(&bytes).map_err(TestCaseError::fail)?;
            tally.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
            Ok(())
        },
    );
    let (run, passed) = *tally.lock().unwrap_or_else(|p| p.into_inner());
    let failures = match outcome {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("seed {:#x}: {e}", o.seed)],
    };
    let generated = if failures.is_empty() {
        run
    } else {
        run.min(o.prop_cases * 10)
    };
    let ok = if failures.is_empty() {
        passed
    } else {
        generated.saturating_sub(1)
    };
    group.record(generated, ok, failures);
    group
}
