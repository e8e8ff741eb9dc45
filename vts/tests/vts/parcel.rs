//! Group `parcel-decoding`: seeded property test of how the service's request types decode
//! from untrusted parcel bytes (rsbinder, the same generated code the service runs):
//! * valid requests (every field, segments without fds) round-trip exactly;
//! * the same bytes truncated, with bytes flipped, inserted or spliced, and plain random
//!   bytes, decode to a value or an error — never a panic, never an allocation blow-up.

use std::sync::Mutex;

use dmaload_aidl::{FileSegment, IoMode, LoadRequest, Tunables};
use dmaload_vts::harness::Group;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::Options;

/// Generated request fields: segments, backend, io mode, name, tunables.
type Fields = (Vec<(i64, i64, i64)>, String, i32, String, (i64, i64, i32));

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

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    SetI32(usize, i32),
    Random(Vec<u8>),
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

fn build(v: &Fields) -> LoadRequest {
    LoadRequest {
        r#segments: v
            .0
            .iter()
            .map(|&(o, l, b)| FileSegment {
                r#fd: None,
                r#fileOffset: o,
                r#length: l,
                r#bufferOffset: b,
            })
            .collect(),
        r#backend: v.1.clone(),
        r#ioMode: IoMode(v.2),
        r#name: v.3.clone(),
        r#tunables: Tunables {
            r#gatherSize: v.4 .0,
            r#chunkSize: v.4 .1,
            r#readerThreads: v.4 .2,
            ..Default::default()
        },
    }
}

fn same(a: &LoadRequest, b: &LoadRequest) -> bool {
    a.r#segments.len() == b.r#segments.len()
        && a.r#segments.iter().zip(&b.r#segments).all(|(x, y)| {
            x.r#fd.is_none()
                && y.r#fd.is_none()
                && x.r#fileOffset == y.r#fileOffset
                && x.r#length == y.r#length
                && x.r#bufferOffset == y.r#bufferOffset
        })
        && a.r#backend == b.r#backend
        && a.r#ioMode == b.r#ioMode
        && a.r#name == b.r#name
        && a.r#tunables.r#gatherSize == b.r#tunables.r#gatherSize
        && a.r#tunables.r#chunkSize == b.r#tunables.r#chunkSize
        && a.r#tunables.r#readerThreads == b.r#tunables.r#readerThreads
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = bytes.len().max(1);
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Flip(i, b) => {
            if !bytes.is_empty() {
                bytes[i % n] ^= b | 1;
            }
        }
        Mutation::Insert(i, v) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::SetI32(i, v) => {
            let at = (i % n) & !3;
            if at + 4 <= bytes.len() {
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::Random(v) => bytes = v.clone(),
    }
    bytes
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
            let req = build(&v);
            let bytes = rsbinder::to_bytes(&req)
                .map_err(|e| TestCaseError::fail(format!("encode: {e:?}")))?;
            let back: LoadRequest = rsbinder::from_bytes(&bytes)
                .map_err(|e| TestCaseError::fail(format!("round trip: {e:?}")))?;
            if !same(&req, &back) {
                return Err(TestCaseError::fail("round trip changed the request"));
            }
            let mut mutated = bytes;
            for m in &muts {
                mutated = apply(mutated, m);
            }
            // Decoding garbage must return, not panic or abort (a panic fails the case).
            let _ = rsbinder::from_bytes::<LoadRequest>(&mutated);
            let _ = rsbinder::from_bytes::<FileSegment>(&mutated);
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
