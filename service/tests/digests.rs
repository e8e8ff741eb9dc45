//! Digests through dmaloadd over RPC binder: what the client library asks for comes back
//! equal to `sha256sum` and `fsverity digest` of the same bytes (whole files of odd sizes,
//! segments at odd offsets, direct and buffered reads, synchronous and asynchronous loads);
//! a wrong expected digest is `DIGEST_MISMATCH` and leaves the service at its baseline;
//! malformed digests on the wire are `INVALID_ARGUMENT`; the dump counts them all.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/rpc.rs"]
mod rpc;

use dmaload::{
    DigestAlgorithm, Endpoint, ErrorCode, LoadRequest, LoadedBuffer, Loader, NoEvents, DIGEST_BYTES,
};
use dmaload_abi::digest::{parse_hex, to_hex};
use dmaload_aidl::aidl as idl;
use idl::ErrorCode::ErrorCode as E;
use rpc::{expect_code, open, Conn, Service};

const BOTH: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::FsVerity];

/// `sha256sum` and `fsverity digest` of the file at `path`.
fn tools(path: &Path) -> [(DigestAlgorithm, [u8; DIGEST_BYTES]); 2] {
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(tool)
            .args(args)
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}; apt-get install coreutils fsverity"));
        assert!(out.status.success(), "{tool}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let word = text.split_whitespace().next().unwrap_or_default();
        parse_hex(word.rsplit(':').next().unwrap_or_default())
            .unwrap_or_else(|| panic!("{tool} printed {text:?}"))
    };
    [
        (DigestAlgorithm::Sha256, run("sha256sum", &[])),
        (DigestAlgorithm::FsVerity, run("fsverity", &["digest"])),
    ]
}

fn loader(service: &Service) -> Loader {
    Loader::connect(Some(&Endpoint::Socket(service.socket()))).expect("connect")
}

fn check(buffer: &LoadedBuffer, segment: usize, path: &Path, what: &str) {
    for (algorithm, value) in tools(path) {
        let d = buffer
            .digest(segment, algorithm)
            .unwrap_or_else(|| panic!("{what}: no {algorithm} digest of segment {segment}"));
        assert_eq!(d.hex(), to_hex(&value), "{what}: {algorithm}");
        assert!(!d.from_kernel, "{what}: no fs-verity on the host's files");
    }
}

/// The service's resources a load must give back.
fn baseline(conn: &Conn) -> (i32, i64, i32, i32, i64, i64) {
    let s = conn.state();
    let u = conn.loader.getUsage().unwrap();
    (
        s.openFds,
        s.outstandingBufferBytes,
        s.liveBuffers,
        s.loadsInFlight,
        s.workingBytes,
        u.chargedBytes,
    )
}

fn back_to(conn: &Conn, base: (i32, i64, i32, i32, i64, i64), what: &str) {
    for _ in 0..100 {
        if baseline(conn) == base {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(baseline(conn), base, "{what}: not back at the baseline");
}

#[test]
fn digests_through_the_service_equal_the_tools() {
    let service = Service::start("digests", &[]);
    let loader = loader(&service);
    assert_eq!(loader.interface_version(), 2);
    for len in [1, 4095, 4096, 4097, (3 << 20) + 5] {
        let (path, data) = service.file(&format!("w{len}"), len);
        for direct in [true, false] {
            let mut request = LoadRequest::new();
            if direct {
                request.add_file(&path, 0, 0, 0).unwrap();
            } else {
                let file = std::fs::File::open(&path).unwrap();
                request.add_fd(file.as_fd(), 0, 0, 0).unwrap();
            }
            request.set_backend(Some("memfd"));
            for a in BOTH {
                request.add_digest(a);
            }
            let buffer = loader.load(&request).expect("load");
            assert_eq!(buffer.map(len as u64).unwrap().as_bytes(), &data[..]);
            check(&buffer, 0, &path, &format!("{len} bytes, direct {direct}"));
            assert_eq!(buffer.digests().len(), 2);
            assert!(buffer.stats().digest_ns > 0);
            loader.release_buffer(buffer.buffer_id()).unwrap();
        }
    }
    // Segments at odd offsets of one file, each digested on its own bytes; asynchronously.
    let (path, data) = service.file("segments", (2 << 20) + 4097);
    let layout: [(u64, u64, u64); 3] = [
        (4097, 100_001, 5),
        (1, 4096, 300_001),
        (1 << 20, 0, 1 << 20),
    ];
    let mut request = LoadRequest::new();
    for &(file_offset, length, buffer_offset) in &layout {
        request
            .add_file(&path, file_offset, length, buffer_offset)
            .unwrap();
    }
    request.set_backend(Some("memfd"));
    for a in BOTH {
        request.add_digest(a);
    }
    let buffer = loader
        .load_async(&request, Arc::new(NoEvents))
        .unwrap()
        .join()
        .expect("an asynchronous load");
    assert_eq!(buffer.digests().len(), 6);
    for (i, &(file_offset, length, _)) in layout.iter().enumerate() {
        let (fo, len) = (
            file_offset as usize,
            if length == 0 {
                data.len() - file_offset as usize
            } else {
                length as usize
            },
        );
        let piece = service.dir.join(format!("piece{i}"));
        std::fs::write(&piece, &data[fo..fo + len]).unwrap();
        check(&buffer, i, &piece, &format!("segment {i}"));
    }
    loader.release_buffer(buffer.buffer_id()).unwrap();
}

#[test]
fn a_wrong_digest_fails_with_digest_mismatch_and_leaves_the_service_at_baseline() {
    let service = Service::start("digest-mismatch", &[]);
    let conn = service.connect();
    let loader = loader(&service);
    let (path, _) = service.file("model.bin", (5 << 20) + 3);
    let [(_, sha), (_, verity)] = tools(&path);
    // A first load opens this caller's pidfd, which stays while the caller lives.
    let mut first = LoadRequest::new();
    first.add_file(&path, 0, 0, 0).unwrap();
    first.set_backend(Some("memfd"));
    let warm = loader.load(&first).expect("a first load");
    loader.release_buffer(warm.buffer_id()).unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(50));
    let base = baseline(&conn);

    let request = |algorithm: DigestAlgorithm, value: &[u8]| {
        let mut r = LoadRequest::new();
        r.add_file(&path, 0, 0, 0).unwrap();
        r.set_backend(Some("memfd"));
        r.expect_digest(0, algorithm, value).unwrap();
        r
    };
    // The right values: loaded, and reported.
    let mut right = request(DigestAlgorithm::Sha256, &sha);
    right
        .expect_digest(0, DigestAlgorithm::FsVerity, &verity)
        .unwrap();
    let buffer = loader.load(&right).expect("the expected digests");
    assert_eq!(buffer.digests().len(), 2);
    loader.release_buffer(buffer.buffer_id()).unwrap();
    drop(buffer);
    back_to(&conn, base, "after a load with the right digests");

    let mut wrong = sha;
    wrong[0] ^= 0x80;
    for (algorithm, value, computed) in [
        (DigestAlgorithm::Sha256, wrong, sha),
        (DigestAlgorithm::FsVerity, sha, verity),
    ] {
        let err = loader
            .load(&request(algorithm, &value))
            .expect_err("a wrong digest");
        assert_eq!(err.code(), Some(ErrorCode::DigestMismatch), "{err}");
        for text in [to_hex(&value), to_hex(&computed), "segment 0".to_string()] {
            assert!(err.message().contains(&text), "{err} lacks {text}");
        }
        back_to(&conn, base, "after a mismatch");
    }
    // The same through startLoad: the mismatch arrives as onError.
    let err = loader
        .load_async(
            &request(DigestAlgorithm::Sha256, &wrong),
            Arc::new(NoEvents),
        )
        .unwrap()
        .join()
        .expect_err("a wrong digest, asynchronously");
    assert_eq!(err.code(), Some(ErrorCode::DigestMismatch), "{err}");
    back_to(&conn, base, "after an asynchronous mismatch");

    let stats = conn.loader.debugDump(&["stats".into()]).unwrap();
    for line in [
        "digests_sha256 = 1\n",
        "digests_fsverity = 1 (0 from the kernel)\n",
        "digest_mismatches = 3\n",
        "  DIGEST_MISMATCH = 3\n",
    ] {
        assert!(stats.contains(line), "{stats}");
    }
}

#[test]
fn malformed_digests_on_the_wire_are_invalid_arguments() {
    let service = Service::start("digest-wire", &[]);
    let conn = service.connect();
    let (path, _) = service.file("w.bin", 10_000);
    let digest = |segment: i32, algorithm: i32, len: usize| {
        Some(idl::Digest::Digest {
            segment,
            algorithm: idl::DigestAlgorithm::DigestAlgorithm(algorithm),
            value: vec![0; len],
            fromKernel: false,
        })
    };
    let with = |expected: Vec<Option<idl::Digest::Digest>>, asked: Vec<i32>| {
        let mut req = rpc::request(vec![(open(&path), 0, 0, 0)], "memfd");
        req.expectedDigests = Some(expected);
        req.digests = asked
            .into_iter()
            .map(idl::DigestAlgorithm::DigestAlgorithm)
            .collect();
        req
    };
    for (what, req) in [
        ("an unknown algorithm", with(vec![digest(0, 3, 32)], vec![])),
        ("an unknown algorithm to compute", with(vec![], vec![1, 0])),
        ("a short value", with(vec![digest(0, 1, 31)], vec![])),
        ("a long value", with(vec![digest(0, 2, 64)], vec![])),
        ("a null entry", with(vec![None], vec![])),
        ("a negative segment", with(vec![digest(-1, 1, 32)], vec![])),
        (
            "a segment beyond the request",
            with(vec![digest(1, 1, 32)], vec![]),
        ),
        (
            "two values for one segment and algorithm",
            with(vec![digest(0, 1, 32), digest(0, 1, 32)], vec![]),
        ),
    ] {
        expect_code(conn.loader.load(&req), E::INVALID_ARGUMENT, what);
    }
    // Asked twice is asked once; the result is not null when digests were asked.
    let result = conn
        .loader
        .load(&with(vec![], vec![1, 1, 2]))
        .expect("load");
    let digests = result.digests.as_ref().expect("digests");
    assert_eq!(digests.len(), 2);
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    let result = conn.loader.load(&rpc::whole(&path)).expect("load");
    assert!(result.digests.is_none(), "none asked, none sent");
    assert_eq!(result.stats.digestNs, 0);
    conn.loader.releaseBuffer(result.bufferId).unwrap();
}
