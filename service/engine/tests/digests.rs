//! Digests computed while loading, checked against the tools everyone trusts: `sha256sum`
//! (coreutils) and `fsverity digest` (Debian's fsverity, fsverity-utils), run on the same
//! bytes. Memfd backend (the host's), direct and buffered reads, whole files of odd sizes,
//! segments at odd offsets, a 1 GiB + 4097 B file; wrong expected digests fail with
//! `DIGEST_MISMATCH` and leave nothing behind.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use dmaload_abi::digest::to_hex;
use dmaload_engine::digest::{fsverity, sha256};
use dmaload_engine::{
    BackendChoice, DigestAlgorithm, Engine, ErrorCode, FdSegment, IoMode, LoadRequest,
};

fn mode(direct: bool) -> IoMode {
    if direct {
        IoMode::Direct
    } else {
        IoMode::Buffered
    }
}

fn assert_idle(engine: &Engine) {
    let u = engine.total_usage();
    assert_eq!(
        (
            u.charged_bytes,
            u.working_bytes,
            u.loads_in_flight,
            u.charges
        ),
        (0, 0, 0, 0),
        "the engine is back at its baseline"
    );
}

#[test]
fn digests_of_whole_files_equal_the_tools() {
    let dir = dio_dir();
    let engine = engine();
    // The empty file: no buffer of 0 bytes is ever made (RANGE), and the digest functions
    // agree with the tools on it.
    let empty = write_file(&dir, "empty", b"");
    for (algorithm, want) in tools(&empty) {
        let got = match algorithm {
            DigestAlgorithm::Sha256 => sha256(b""),
            DigestAlgorithm::FsVerity => fsverity(b""),
        };
        assert_eq!(to_hex(&got), to_hex(&want), "{algorithm} of 0 bytes");
    }
    let req = with_digests(
        LoadRequest::whole_file(open_buffered(&empty), "empty"),
        &BOTH,
    );
    assert_eq!(load(&engine, req).unwrap_err().code, ErrorCode::Range);
    for len in [
        1,
        4095,
        4096,
        4097,
        512 * 1024 - 1,
        512 * 1024 + 1,
        (2 << 20) + 3 * 4096 + 1,
        (5 << 20) + 12345,
    ] {
        let data = pattern(len, len as u64);
        let path = write_file(&dir, &format!("w{len}"), &data);
        let want = tools(&path);
        for direct in [true, false] {
            let req = with_digests(
                request(
                    vec![FdSegment::whole_file(open(&path, direct))],
                    BackendChoice::Memfd,
                    mode(direct),
                ),
                &BOTH,
            );
            let buf = load(&engine, req).unwrap_or_else(|e| panic!("{len} {direct}: {e}"));
            assert!(contents(&buf)[..len] == data[..], "{len} bytes: content");
            assert_eq!(buf.digests.len(), 2, "{len}: {:?}", buf.digests);
            for (algorithm, value) in want {
                let d = digest_of(&buf, 0, algorithm);
                assert_eq!(
                    d.hex(),
                    to_hex(&value),
                    "{algorithm} of {len} bytes, direct {direct}"
                );
                assert!(
                    !d.from_kernel,
                    "this file system has no fs-verity on the file"
                );
            }
            assert!(buf.stats.digest > std::time::Duration::ZERO);
        }
    }
    assert_idle(&engine);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn segments_at_odd_offsets_are_digested_on_their_own_bytes() {
    let dir = dio_dir();
    let engine = engine();
    let data = pattern((3 << 20) + 777, 5);
    let path = write_file(&dir, "segs", &data);
    // (file offset, length, buffer offset): unaligned everywhere, a segment of one byte, one
    // of 4097 crossing 2 MiB gathers, one to the end of the file, one exactly one block.
    let layout: [(u64, u64, u64); 5] = [
        (4097, 100_003, 3),
        ((1 << 20) + 3, 1, 200_000),
        (12_345, 4097, (2 << 20) - 2000),
        ((2 << 20) + 5, 0, (3 << 20) + 1),
        (0, 4096, (5 << 20) + 1),
    ];
    for direct in [true, false] {
        let segments = fd_segments(&path, direct, &layout);
        let req = with_digests(request(segments, BackendChoice::Memfd, mode(direct)), &BOTH);
        let buf = load(&engine, req).unwrap_or_else(|e| panic!("direct {direct}: {e}"));
        let got = contents(&buf);
        assert_eq!(buf.digests.len(), 2 * layout.len());
        for (i, &(file_offset, length, buffer_offset)) in layout.iter().enumerate() {
            let (fo, bo) = (file_offset as usize, buffer_offset as usize);
            let len = if length == 0 {
                data.len() - fo
            } else {
                length as usize
            };
            assert!(got[bo..bo + len] == data[fo..fo + len], "segment {i}");
            let piece = write_file(&dir, &format!("piece{i}"), &data[fo..fo + len]);
            for (algorithm, value) in tools(&piece) {
                assert_eq!(
                    digest_of(&buf, i, algorithm).hex(),
                    to_hex(&value),
                    "segment {i} {algorithm}, direct {direct}"
                );
            }
        }
    }
    assert_idle(&engine);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn expected_digests_pass_and_mismatches_leave_nothing_behind() {
    let dir = dio_dir();
    let engine = engine();
    let len = (3 << 20) + 5;
    let data = pattern(len, 11);
    let path = write_file(&dir, "expected", &data);
    let [(_, sha), (_, verity)] = tools(&path);
    let mut wrong = sha;
    wrong[31] ^= 1;
    let name = format!("digest-mismatch-{}", std::process::id());
    let fds_before = fds_to(&path.to_string_lossy());
    for direct in [true, false] {
        // Right values: the load succeeds and reports them (only what was asked).
        let req = request(
            vec![FdSegment::whole_file(open(&path, direct))],
            BackendChoice::Memfd,
            mode(direct),
        )
        .expecting(0, DigestAlgorithm::Sha256, sha)
        .expecting(0, DigestAlgorithm::FsVerity, verity);
        let buf = load(&engine, req).expect("expected digests match");
        assert_eq!(buf.digests.len(), 2);
        drop(buf);
        for (algorithm, value) in [
            (DigestAlgorithm::Sha256, wrong),
            (DigestAlgorithm::FsVerity, sha),
        ] {
            let mut req = request(
                vec![FdSegment::whole_file(open(&path, direct))],
                BackendChoice::Memfd,
                mode(direct),
            )
            .expecting(0, algorithm, value);
            req.name = name.clone();
            let err = load(&engine, req).expect_err("a wrong digest fails the load");
            assert_eq!(err.code, ErrorCode::DigestMismatch, "{err}");
            assert!(
                err.message.contains(&to_hex(&value)) && err.message.contains("segment 0"),
                "{err}"
            );
            let computed = match algorithm {
                DigestAlgorithm::Sha256 => sha,
                DigestAlgorithm::FsVerity => verity,
            };
            assert!(err.message.contains(&to_hex(&computed)), "{err}");
            assert_idle(&engine);
            assert_eq!(fds_to(&name), 0, "the buffer's memfd was closed");
            assert_eq!(
                fds_to(&path.to_string_lossy()),
                fds_before,
                "no file fd kept"
            );
        }
    }
    // Requests the engine refuses before reading: a segment that does not exist, two
    // expected digests of one algorithm for one segment.
    let one = || {
        request(
            vec![FdSegment::whole_file(open_buffered(&path))],
            BackendChoice::Memfd,
            IoMode::Auto,
        )
    };
    let err = load(&engine, one().expecting(1, DigestAlgorithm::Sha256, sha)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    let err = load(
        &engine,
        one()
            .expecting(0, DigestAlgorithm::Sha256, sha)
            .expecting(0, DigestAlgorithm::Sha256, sha),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    // An expected digest alone computes that digest of that segment only.
    let buf = load(
        &engine,
        one().expecting(0, DigestAlgorithm::FsVerity, verity),
    )
    .expect("load");
    assert_eq!(buf.digests.len(), 1);
    assert_eq!(buf.digests[0].algorithm, DigestAlgorithm::FsVerity);
    drop(buf);
    assert_idle(&engine);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn digest_state_is_working_memory_of_the_load() {
    let dir = dio_dir();
    let engine = engine();
    let len = 64 << 20;
    let path = write_file(&dir, "working", &pattern(len, 3));
    let load_with = |algorithms: &[DigestAlgorithm]| {
        let req = with_digests(
            LoadRequest::whole_file(open_buffered(&path), "w").with_backend(BackendChoice::Memfd),
            algorithms,
        );
        load(&engine, req).expect("load").stats
    };
    let none = load_with(&[]);
    let verity = load_with(&[DigestAlgorithm::FsVerity]);
    // 32 bytes per 512 KiB group, the levels above, a result.
    let groups = (len as u64).div_ceil(512 << 10);
    assert!(
        verity.working_bytes >= none.working_bytes + groups * 32,
        "{} vs {}",
        verity.working_bytes,
        none.working_bytes
    );
    assert_eq!(none.digest, std::time::Duration::ZERO);
    assert!(verity.digest > std::time::Duration::ZERO);
    assert_idle(&engine);
    std::fs::remove_dir_all(dir).ok();
}

/// Writes `len` bytes of [`pattern`]-like content in pieces (no buffer of the file's size).
fn write_big(path: &Path, len: u64) {
    let mut f = std::fs::File::create(path).expect("create");
    let piece = pattern(8 << 20, 99);
    let mut left = len;
    let mut round = 0u8;
    while left > 0 {
        let mut block = piece.clone();
        // Every piece differs: a tree built from one repeated piece would hide misplacement.
        block[0] = round;
        block[4096] = round.wrapping_add(1);
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write");
        left -= n as u64;
        round = round.wrapping_add(1);
    }
    f.sync_all().expect("sync");
}

#[test]
fn a_gigabyte_and_a_block_is_digested_like_the_tools() {
    let dir = dio_dir();
    let engine = engine();
    let len = (1u64 << 30) + 4097;
    let path = dir.join("big");
    write_big(&path, len);
    let want = tools(&path);
    let req = with_digests(
        LoadRequest::whole_file(open_direct(&path), "big")
            .with_backend(BackendChoice::Memfd)
            .with_io_mode(IoMode::Direct),
        &BOTH,
    );
    let buf = load(&engine, req).expect("load");
    assert_eq!(buf.stats.bytes_direct, len);
    for (algorithm, value) in want {
        assert_eq!(
            digest_of(&buf, 0, algorithm).hex(),
            to_hex(&value),
            "{algorithm}"
        );
    }
    drop(buf);
    assert_idle(&engine);
    std::fs::remove_dir_all(dir).ok();
}
