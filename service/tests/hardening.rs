//! What a careful attacker tries against dmaloadd over RPC binder, and what a new user trips
//! over: many segments and many files (the file table), paths that would block an open,
//! untrusted names in dumps, errors and logs, and one uid reading another's dump. After every
//! case the service is alive and back at its baseline (fds, outstanding bytes).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "common/rpc.rs"]
mod rpc;

use dmaload::{Endpoint, ErrorCode, LoadRequest, Loader};
use dmaload_aidl::aidl as idl;
use idl::ErrorCode::ErrorCode as E;
use rpc::{buffer_bytes, expect_code, open, service_error, Conn, Service};
use rsbinder::ParcelFileDescriptor;

/// The service's own resources, which every case must leave as it found them.
fn resources(conn: &Conn) -> (i32, i64, i32) {
    let s = conn.state();
    (s.openFds, s.outstandingBufferBytes, s.liveBuffers)
}

/// Waits briefly for the service to settle back to `base` (a dropped reply closes its fds
/// asynchronously), then asserts it did.
fn back_to(conn: &Conn, base: (i32, i64, i32), what: &str) {
    for _ in 0..100 {
        if resources(conn) == base {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(resources(conn), base, "{what}: not back at the baseline");
}

/// The baseline after a first load: it opens this caller's pidfd, which stays while the
/// caller lives.
fn warm_baseline(conn: &Conn, path: &Path) -> (i32, i64, i32) {
    let warm = conn.loader.load(&rpc::whole(path)).expect("a first load");
    conn.loader.releaseBuffer(warm.bufferId).unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(50));
    resources(conn)
}

/// A version 2 request: `files` once each, segments naming them by index.
fn table_request(
    files: Vec<Option<OwnedFd>>,
    segments: &[(i32, i64, i64, i64)],
) -> idl::LoadRequest::LoadRequest {
    idl::LoadRequest::LoadRequest {
        files: Some(
            files
                .into_iter()
                .map(|f| f.map(ParcelFileDescriptor::new))
                .collect(),
        ),
        segments: segments
            .iter()
            .map(
                |&(file, file_offset, length, buffer_offset)| idl::FileSegment::FileSegment {
                    fileIndex: file,
                    fileOffset: file_offset,
                    length,
                    bufferOffset: buffer_offset,
                    ..Default::default()
                },
            )
            .collect(),
        backend: "memfd".into(),
        name: "table".into(),
        ..Default::default()
    }
}

/// `count` segments of `len` bytes of file 0, the file's pieces in reverse order.
fn reversed(count: usize, len: i64) -> Vec<(i32, i64, i64, i64)> {
    (0..count)
        .map(|i| {
            let i = i as i64;
            (0, i * len, len, (count as i64 - 1 - i) * len)
        })
        .collect()
}

fn check_reversed(got: &[u8], data: &[u8], count: usize, len: usize) {
    for i in 0..count {
        let at = (count - 1 - i) * len;
        assert_eq!(
            &got[at..at + len],
            &data[i * len..(i + 1) * len],
            "segment {i}"
        );
    }
}

#[test]
fn a_file_table_carries_thousands_of_segments_of_one_file() {
    let service = Service::start("table", &[]);
    let conn = service.connect();
    let (path, data) = service.file("weights.bin", 10_000 * 4096);
    let base = warm_baseline(&conn, &path);
    for count in [65, 10_000] {
        let req = table_request(vec![Some(open(&path))], &reversed(count, 4096));
        let result = conn
            .loader
            .load(&req)
            .unwrap_or_else(|e| panic!("{count} segments of one file: {e}"));
        check_reversed(&buffer_bytes(&result, count * 4096), &data, count, 4096);
        conn.loader.releaseBuffer(result.bufferId).unwrap();
        drop(result);
        back_to(&conn, base, &format!("{count} segments"));
    }
}

#[test]
fn file_tables_are_checked_and_leak_nothing() {
    let service = Service::start("table-limits", &["--max-segments", "100"]);
    let conn = service.connect();
    let l = &conn.loader;
    let dir = service.dir.join("many");
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = (0..64)
        .map(|i| {
            let p = dir.join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8 + 1; 4096]).unwrap();
            p
        })
        .collect();
    let (one, _) = service.file("one.bin", 1 << 20);
    let base = warm_baseline(&conn, &one);

    // 64 distinct files: the most a request carries, and what RPC binder takes in one call.
    let files = paths.iter().map(|p| Some(open(p))).collect();
    let segs: Vec<_> = (0..64).map(|i| (i, 0, 4096, i as i64 * 4096)).collect();
    let result = l.load(&table_request(files, &segs)).expect("64 files");
    let got = buffer_bytes(&result, 64 * 4096);
    for i in 0..64 {
        assert!(got[i * 4096..(i + 1) * 4096]
            .iter()
            .all(|&b| b == i as u8 + 1));
    }
    l.releaseBuffer(result.bufferId).unwrap();
    drop(result);
    back_to(&conn, base, "64 files");

    let cases: Vec<(&str, idl::LoadRequest::LoadRequest, E)> = vec![
        (
            // RPC binder carries 64 fds: the 65th entry is a null one, the count is what counts.
            "65 files",
            table_request(
                paths
                    .iter()
                    .map(|p| Some(open(p)))
                    .chain(std::iter::once(None))
                    .collect(),
                &[(0, 0, 1, 0)],
            ),
            E::TOO_MANY_FILES,
        ),
        (
            "101 segments",
            table_request(vec![Some(open(&one))], &reversed(101, 4096)),
            E::BAD_SEGMENTS,
        ),
        (
            "file index past the table",
            table_request(vec![Some(open(&one))], &[(1, 0, 1, 0)]),
            E::BAD_SEGMENTS,
        ),
        (
            "negative file index",
            table_request(vec![Some(open(&one))], &[(-2, 0, 1, 0)]),
            E::BAD_SEGMENTS,
        ),
        (
            "a file no segment reads",
            table_request(vec![Some(open(&one)), Some(open(&one))], &[(0, 0, 1, 0)]),
            E::BAD_SEGMENTS,
        ),
        (
            "a null file",
            table_request(vec![None], &[(0, 0, 1, 0)]),
            E::BAD_FD,
        ),
        (
            "a segment with an fd of its own beside a file table",
            {
                let mut r = table_request(vec![Some(open(&one))], &[(0, 0, 1, 0)]);
                r.segments[0].fd = Some(ParcelFileDescriptor::new(open(&one)));
                r
            },
            E::BAD_SEGMENTS,
        ),
        (
            "a file index without a file table",
            rpc::request(vec![(open(&one), 0, 1, 0)], "memfd").with_file_index(0),
            E::BAD_SEGMENTS,
        ),
    ];
    for (what, req, code) in cases {
        expect_code(l.load(&req), code, what);
        back_to(&conn, base, what);
    }
    drop(conn);
    drop(service);

    // One fd per segment (version 1): at most max-files segments, and still BAD_SEGMENTS (a
    // code version 1 knows); a file table is bounded by max-files too.
    let service = Service::start("fd-limits", &["--max-files", "8"]);
    let conn = service.connect();
    let (one, _) = service.file("one.bin", 1 << 20);
    let base = warm_baseline(&conn, &one);
    let per_segment = |n: i64| {
        rpc::request(
            (0..n)
                .map(|i| (open(&one), i * 8192, 4096, i * 4096))
                .collect(),
            "memfd",
        )
    };
    let result = conn
        .loader
        .load(&per_segment(8))
        .expect("8 segments, an fd each");
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    drop(result);
    expect_code(
        conn.loader.load(&per_segment(9)),
        E::BAD_SEGMENTS,
        "9 segments, an fd each",
    );
    let files = (0..9).map(|_| Some(open(&one))).collect();
    let segs: Vec<_> = (0..9).map(|i| (i, 0, 1, i as i64 * 4096)).collect();
    expect_code(
        conn.loader.load(&table_request(files, &segs)),
        E::TOO_MANY_FILES,
        "a table of 9 files",
    );
    back_to(&conn, base, "fd limits");
}

/// Test helpers on the generated request.
trait WithFileIndex {
    fn with_file_index(self, index: i32) -> Self;
}

impl WithFileIndex for idl::LoadRequest::LoadRequest {
    fn with_file_index(mut self, index: i32) -> Self {
        for s in &mut self.segments {
            s.fileIndex = index;
        }
        self
    }
}

fn client(service: &Service) -> Loader {
    Loader::connect(Some(&Endpoint::Socket(service.socket()))).expect("connect")
}

#[test]
fn the_client_library_sends_each_file_once() {
    let service = Service::start("client-table", &[]);
    let conn = service.connect();
    let loader = client(&service);
    assert_eq!(loader.interface_version(), 2);
    let (path, data) = service.file("weights.bin", 10_000 * 4096);
    let base = warm_baseline(&conn, &path);
    // 10,000 segments of one file, each added by path: the request holds one fd. (Counted
    // as the fds open on this file: other tests in this process open and close their own.)
    let mut request = LoadRequest::new();
    for i in 0..10_000u64 {
        request
            .add_file(&path, i * 4096, 4096, (9_999 - i) * 4096)
            .expect("add");
    }
    assert_eq!(request.file_count(), 1);
    assert_eq!(fds_open_on(&path), 1);
    let started = std::time::Instant::now();
    let buffer = loader.load(&request).expect("10,000 segments of one file");
    println!(
        "10,000 segments of one file: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mapped = buffer.map(10_000 * 4096).expect("map");
    check_reversed(mapped.as_bytes(), &data, 10_000, 4096);
    drop(mapped);
    loader.release_buffer(buffer.buffer_id()).expect("release");
    drop(buffer);
    drop(request);
    back_to(&conn, base, "10,000 segments through the client");

    // The 65th distinct file fails in the client, before anything is sent.
    let dir = service.dir.join("many");
    std::fs::create_dir_all(&dir).unwrap();
    let mut request = LoadRequest::new();
    for i in 0..65u64 {
        let p = dir.join(format!("f{i}"));
        std::fs::write(&p, b"x").unwrap();
        let added = request.add_file(&p, 0, 1, i * 4096);
        if i < 64 {
            added.expect("64 files fit");
        } else {
            let err = added.expect_err("the 65th file");
            assert_eq!(err.code(), Some(ErrorCode::TooManyFiles), "{err}");
            assert_eq!(err.c_code(), 18);
        }
    }
    let buffer = loader.load(&request).expect("64 files");
    loader.release_buffer(buffer.buffer_id()).unwrap();
    drop(buffer);
    drop(request);
    back_to(&conn, base, "64 files through the client");
    let stats = conn.loader.debugDump(&["stats".into()]).unwrap();
    assert!(!stats.contains("TOO_MANY_FILES"), "{stats}");
}

/// This process's fds open on `path`.
fn fds_open_on(path: &Path) -> usize {
    let path = std::fs::canonicalize(path).expect("canonical path");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| *target == path)
        .count()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_path_fails_at_once() {
    let service = Service::start("fifo", &[]);
    let fifo = service.dir.join("fifo");
    mkfifo(&fifo);
    let socket = service.socket();
    let path = fifo.clone();
    // In a thread: a regression blocks in open() and fails below instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let loader = Loader::connect(Some(&Endpoint::Socket(socket))).expect("connect");
        let mut request = LoadRequest::new();
        let _ = tx.send(request.add_file(&path, 0, 0, 0).map(|_| ()));
        // The loader stays alive until the open is over.
        drop(loader);
    });
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    if outcome.is_err() {
        // Release the blocked open (a writer appears), then fail.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let err = outcome
        .expect("add_file of a FIFO blocked in open()")
        .expect_err("a FIFO is no regular file");
    assert_eq!(err.code(), Some(ErrorCode::BadFd), "{err}");
}

/// A name with every kind of control a terminal or a log reader acts upon, and a forged
/// dump line.
const EVIL_NAME: &str = "evil\x1b[2J\x1b]0;owned\x07\r\nid=999 uid=0 pid=1 size=1 name=x\u{202e}";

fn assert_clean(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
        .collect();
    assert!(bad.is_empty(), "{what} shows raw {bad:?}: {text:?}");
}

#[test]
fn untrusted_names_are_escaped_in_dumps_errors_and_logs() {
    let mut service = Service::start_logged("names", &[]);
    let conn = service.connect();
    let (path, _) = service.file("model.bin", 8192);
    let base = warm_baseline(&conn, &path);

    let req = idl::LoadRequest::LoadRequest {
        name: EVIL_NAME.into(),
        ..rpc::whole(&path)
    };
    let result = conn.loader.load(&req).expect("a name with controls loads");
    assert_clean(&result.name, "the buffer's name");
    assert!(result.name.contains(r"evil\x1b[2J"), "{}", result.name);
    let dump = conn.loader.debugDump(&["buffers".into()]).unwrap();
    assert_clean(&dump, "the buffers view");
    assert_eq!(
        dump.lines().filter(|l| l.starts_with("id=")).count(),
        1,
        "one buffer, one line: {dump}"
    );
    assert!(dump.contains(r"\x0d\x0aid=999 uid=0"), "{dump}");
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    drop(result);

    // In an error message and the log line of a failed load.
    let bad_heap = format!("heap:{EVIL_NAME}");
    let req = idl::LoadRequest::LoadRequest {
        name: EVIL_NAME.into(),
        backend: bad_heap,
        ..rpc::whole(&path)
    };
    let status = conn.loader.load(&req).expect_err("unknown heap");
    let (code, message) = service_error(&status);
    assert_eq!(code, E::UNKNOWN_BACKEND.0, "{message}");
    assert_clean(&message, "the error message");
    assert!(message.contains(r"evil\x1b[2J"), "{message}");
    let bad_view = conn
        .loader
        .debugDump(&[EVIL_NAME.into()])
        .expect_err("a view");
    let (code, message) = service_error(&bad_view);
    assert_eq!(code, E::INVALID_ARGUMENT.0, "{message}");
    assert_clean(&message, "the unknown view's message");
    back_to(&conn, base, "names");
    std::thread::sleep(Duration::from_millis(100));
    let log = service.log();
    assert!(
        log.contains("UNKNOWN_BACKEND"),
        "the failure is logged: {log}"
    );
    assert_clean(&log, "the service's log");
    assert!(log.contains(r"evil\x1b[2J"), "{log}");
    assert!(service.alive());
}

#[test]
fn caller_strings_are_bounded() {
    let mut service = Service::start_logged("bounded", &[]);
    let conn = service.connect();
    let (path, _) = service.file("model.bin", 8192);
    let base = warm_baseline(&conn, &path);
    // An 8 MiB heap name: the answer and the log line stay small.
    let req = idl::LoadRequest::LoadRequest {
        backend: "h".repeat(8 << 20),
        ..rpc::whole(&path)
    };
    let (code, message) = service_error(&conn.loader.load(&req).expect_err("unknown heap"));
    assert_eq!(code, E::UNKNOWN_BACKEND.0);
    assert!(message.len() < 1024, "a {} byte message", message.len());
    assert!(
        message.contains("bytes)"),
        "says how much was left out: {message}"
    );
    // The name limit the header documents is the one the service enforces.
    let named = |name: String| idl::LoadRequest::LoadRequest {
        name,
        ..rpc::whole(&path)
    };
    expect_code(
        conn.loader.load(&named("n".repeat(201))),
        E::INVALID_ARGUMENT,
        "a 201-byte name",
    );
    expect_code(
        conn.loader.load(&named("a\0b".into())),
        E::INVALID_ARGUMENT,
        "a name with a NUL",
    );
    for name in ["n".repeat(200), "\x1b".repeat(200), "\u{202e}".repeat(66)] {
        let result = conn
            .loader
            .load(&named(name.clone()))
            .unwrap_or_else(|e| panic!("a {}-byte name: {e}", name.len()));
        assert!(result.name.len() <= 255, "{}", result.name);
        conn.loader.releaseBuffer(result.bufferId).unwrap();
    }
    back_to(&conn, base, "long strings");
    std::thread::sleep(Duration::from_millis(100));
    let log = service.log();
    assert!(log.len() < 64 << 10, "a {} byte log", log.len());
    assert!(service.alive());
}

#[test]
fn unknown_dump_views_are_an_error_that_lists_the_views() {
    let service = Service::start("views", &[]);
    let conn = service.connect();
    let (code, message) =
        service_error(&conn.loader.debugDump(&["nosuchview".into()]).unwrap_err());
    assert_eq!(code, E::INVALID_ARGUMENT.0, "{message}");
    for view in [
        "config", "backends", "buffers", "cache", "usage", "stats", "state",
    ] {
        assert!(message.contains(view), "{message}");
    }
    let help = conn.loader.debugDump(&["--help".into()]).unwrap();
    assert!(help.contains("buffers"), "{help}");
    // A dump's size is bounded: at most 16 views in one.
    let many: Vec<String> = (0..10_000).map(|_| "usage".to_string()).collect();
    expect_code(
        conn.loader.debugDump(&many),
        E::INVALID_ARGUMENT,
        "10,000 views",
    );
    assert!(conn.loader.debugDump(&many[..16]).is_ok());
}

/// A caller of another uid (see `dump_shows_a_caller_only_its_own_buffers`).
const OTHER_UID: u32 = 10_042;

/// The child half of `dump_shows_a_caller_only_its_own_buffers`, run as `OTHER_UID`: loads
/// the file it got as stdin, prints its dumps and whether the service-wide views were refused.
#[test]
#[ignore = "run by dump_shows_a_caller_only_its_own_buffers as another uid"]
fn child_other_uid_dumps() {
    let Ok(socket) = std::env::var("DMALOAD_E2E_CHILD_SOCKET") else {
        return;
    };
    let conn = Conn::open(Path::new(&socket));
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("stdin");
    let req = idl::LoadRequest::LoadRequest {
        name: "other-uid-buffer".into(),
        ..rpc::request(vec![(stdin, 0, 0, 0)], "memfd")
    };
    let result = conn.loader.load(&req).expect("load as another uid");
    let mut out = std::io::stdout().lock();
    writeln!(out, "UID {}", conn.loader.getUsage().unwrap().uid).unwrap();
    for args in [vec![], vec!["buffers".to_string(), "usage".to_string()]] {
        let dump = conn.loader.debugDump(&args).expect("debugDump");
        writeln!(out, "DUMP {}", dump.replace('\n', "|")).unwrap();
    }
    for view in ["config", "stats", "state"] {
        match conn.loader.debugDump(&[view.to_string()]) {
            Ok(text) => writeln!(out, "SHOWN {view} {}", text.replace('\n', "|")).unwrap(),
            Err(status) => {
                writeln!(out, "REFUSED {view} {}", status.service_specific_error()).unwrap()
            }
        }
    }
    match conn.loader.getServiceState() {
        Ok(state) => writeln!(out, "SHOWN getServiceState {state:?}").unwrap(),
        Err(status) => writeln!(
            out,
            "REFUSED getServiceState {}",
            status.service_specific_error()
        )
        .unwrap(),
    }
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    out.flush().unwrap();
}

#[test]
fn dump_shows_a_caller_only_its_own_buffers() {
    let service = Service::start("uids", &["--socket-mode", "666"]);
    let conn = service.connect();
    let (path, _) = service.file("root.bin", 8192);
    let req = idl::LoadRequest::LoadRequest {
        name: "root-secret-model".into(),
        ..rpc::whole(&path)
    };
    let mine = conn.loader.load(&req).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let output = rpc::run_child_as(OTHER_UID, "child_other_uid_dumps", &service, file);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("UID {OTHER_UID}")), "{text}");
    let dumps: Vec<&str> = text.lines().filter(|l| l.starts_with("DUMP ")).collect();
    assert_eq!(dumps.len(), 2, "{text}");
    for dump in dumps {
        assert!(dump.contains("other-uid-buffer"), "its own buffer: {dump}");
        assert!(
            !dump.contains("root-secret-model"),
            "uid 0's buffer: {dump}"
        );
        assert!(!dump.contains("uid=0 "), "uid 0's buffer: {dump}");
        assert!(!dump.contains("uid 0:"), "uid 0's usage: {dump}");
    }
    for view in ["config", "stats", "state", "getServiceState"] {
        assert!(
            text.contains(&format!("REFUSED {view} {}", E::PERMISSION_DENIED.0)),
            "{view}: {text}"
        );
    }
    // Root sees everyone.
    let all = conn.loader.debugDump(&[]).unwrap();
    assert!(all.contains("root-secret-model"), "{all}");
    assert!(
        all.contains("== config") && all.contains("== state"),
        "{all}"
    );
    conn.loader.releaseBuffer(mine.bufferId).unwrap();
}
