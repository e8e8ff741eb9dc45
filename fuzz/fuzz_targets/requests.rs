//! Fuzz target `requests`: the two surfaces of the seeded property tests in vts/tests/vts/,
//! through the same checks (`dmaload_vts::validation::check_case`,
//! `dmaload_vts::parcel::check_decode`), driven by libFuzzer's coverage feedback instead of
//! proptest's generators. The first input byte picks the surface:
//! * even: the rest is untrusted parcel bytes, decoded as the service's request types;
//! * odd: the rest describes a request (real files, bad fds, boundary numbers) that runs
//!   through the real engine and is checked against the reference model.
//!
//! A failed check panics, so libFuzzer keeps the input in `fuzz/artifacts/requests/`.
//!
//!   cargo +nightly fuzz run requests -- -max_total_time=3600

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dmaload_engine::IoMode;
use dmaload_vts::fixtures::BadFdKind;
use dmaload_vts::validation::{
    check_case, Fixture, GenRequest, GenSegment, LengthPick, OffsetPick, PlacePick, SourcePick,
    FILE_SIZES, MAX_SEGMENTS,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The property's files live on a real file system (O_DIRECT needs one; tmpfs refuses it):
/// `DMALOAD_FUZZ_DIR`, else `fuzz/target/files`.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::var_os("DMALOAD_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/files"));
        match Fixture::new(&dir) {
            Ok(fx) => fx,
            Err(e) => panic!("fuzz fixture in {}: {e}", dir.display()),
        }
    })
}

/// Bad fds the host can make (a dma-buf needs a dma-heap).
const BAD_FDS: &[BadFdKind] = &[
    BadFdKind::Directory,
    BadFdKind::PipeReadEnd,
    BadFdKind::Socket,
    BadFdKind::CharDevice,
    BadFdKind::EventFd,
    BadFdKind::OPath,
    BadFdKind::WriteOnly,
];

// The numbers keep the property's ranges (a `Small` offset up to 70 000, `PastEnd` by up to
// 3, ...) so every request stays within what the model and the fixture files describe; the
// fuzzer chooses among them by coverage instead of by weight.
fn segment(u: &mut Unstructured) -> Result<GenSegment> {
    let source = if u.ratio(1, 12)? {
        SourcePick::Bad(*u.choose(BAD_FDS)?)
    } else {
        SourcePick::File {
            index: u.choose_index(FILE_SIZES.len())?,
            direct: u.arbitrary()?,
        }
    };
    let offset = match u.int_in_range(0..=5u8)? {
        0 => OffsetPick::Zero,
        1 => OffsetPick::Small(u.int_in_range(0..=70_000)?),
        2 => OffsetPick::BeforeEnd(u.int_in_range(0..=3)?),
        3 => OffsetPick::PastEnd(u.int_in_range(0..=3)?),
        4 => OffsetPick::NearU64Max(u.int_in_range(0..=2)?),
        _ => OffsetPick::I64Max,
    };
    let length = match u.int_in_range(0..=4u8)? {
        0 => LengthPick::ToEof,
        1 => LengthPick::Small(u.int_in_range(1..=70_000)?),
        2 => LengthPick::Rest,
        3 => LengthPick::RestPlusOne,
        _ => LengthPick::NearU64Max(u.int_in_range(0..=2)?),
    };
    let place = match u.int_in_range(0..=5u8)? {
        0 => PlacePick::AfterPrevious(u.int_in_range(0..=9000)?),
        1 => PlacePick::Random(u.int_in_range(0..=1 << 20)?),
        2 => PlacePick::SameAsPrevious,
        3 => PlacePick::Far(u.int_in_range(15 << 20..=17 << 20)?),
        4 => PlacePick::NearI64Max(u.int_in_range(0..=2)?),
        _ => PlacePick::NearU64Max(u.int_in_range(0..=2)?),
    };
    Ok(GenSegment {
        source,
        offset,
        length,
        place,
    })
}

fn request(u: &mut Unstructured) -> Result<GenRequest> {
    let count = u.int_in_range(0..=MAX_SEGMENTS + 2)?;
    let segments = (0..count).map(|_| segment(u)).collect::<Result<_>>()?;
    let name = match u.int_in_range(0..=4u8)? {
        0 => "vts-fuzz".to_string(),
        1 => String::new(),
        2 => "n".repeat(u.int_in_range(250..=260)?),
        3 => "nul\0inside".to_string(),
        _ => u.arbitrary::<String>()?,
    };
    let gather_size = *u.choose(&[0, 1 << 20, 4096, (1 << 20) + 1, 65 << 30, 4095])?;
    let chunk_size = *u.choose(&[0, 64 << 10, 4096, 257 << 20, 4097])?;
    let io_mode = *u.choose(&[IoMode::Auto, IoMode::Direct, IoMode::Buffered])?;
    Ok(GenRequest {
        segments,
        name,
        gather_size,
        chunk_size,
        io_mode,
        known_backend: !u.ratio(1, 30)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&surface, rest)) = data.split_first() else {
        return;
    };
    if surface % 2 == 0 {
        if let Err(e) = dmaload_vts::parcel::check_decode(rest) {
            panic!("parcel decoding: {e}");
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(gen) = request(&mut u) else {
        return;
    };
    if let Err(e) = check_case(fixture(), &gen) {
        panic!("request validation: {e}\nrequest: {gen:?}");
    }
});
