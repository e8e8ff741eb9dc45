//! dmaloadd end to end over RPC binder on a Unix socket: a real dmaloadd process, real files,
//! real fds crossing the socket. Host buffers are memfds (no dma-heaps here); the virtual
//! device runs the same service over kernel binder with dma-heaps.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
#[path = "common/rpc.rs"]
mod rpc;

use common::{recorder, Event};
use dmaload_aidl::aidl as idl;
use rpc::{
    buffer_bytes, expect_code, fd_bytes, open, request, service_error, wait_for_state, whole, Conn,
    Service,
};

#[test]
fn load_returns_the_file_bytes() {
    let service = Service::start("bytes", &[]);
    let conn = service.connect();
    let (path, data) = service.file("model.bin", 3 * 1024 * 1024 + 123);
    let result = conn.loader.load(&whole(&path)).unwrap();
    assert!(result.sizeBytes as usize >= data.len() && result.sizeBytes % 4096 == 0);
    assert_eq!(result.backend, "memfd");
    assert!(!result.isDmaBuf);
    assert_eq!(buffer_bytes(&result, data.len()), data);
    assert!(
        result.name.contains("e2e") && result.name.contains("uid"),
        "{}",
        result.name
    );

    // Two segments of the same file, swapped in the buffer.
    let half = 1 << 20;
    let req = request(
        vec![
            (open(&path), 0, half as i64, half as i64),
            (open(&path), half as i64, half as i64, 0),
        ],
        "memfd",
    );
    let swapped = conn.loader.load(&req).unwrap();
    let got = buffer_bytes(&swapped, 2 * half);
    assert_eq!(&got[..half], &data[half..2 * half]);
    assert_eq!(&got[half..], &data[..half]);

    let usage = conn.loader.getUsage().unwrap();
    assert_eq!(usage.buffers, 2);
    assert!(usage.chargedBytes >= result.sizeBytes + swapped.sizeBytes);
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    conn.loader.releaseBuffer(swapped.bufferId).unwrap();
    assert_eq!(conn.loader.getUsage().unwrap().chargedBytes, 0);
    let dump = conn
        .loader
        .debugDump(&["buffers".into(), "stats".into()])
        .unwrap();
    assert!(dump.contains("loads_ok = 2"), "{dump}");
    assert!(conn
        .loader
        .getBackends()
        .unwrap()
        .iter()
        .any(|b| b.name == "memfd" && b.allowed));
}

#[test]
fn async_load_reports_progress_and_completes_and_cancels() {
    let service = Service::start("async", &[]);
    let conn = service.connect();
    let (path, data) = service.file("async.bin", 24 << 20);
    let (callback, events) = recorder();
    let req = idl::LoadRequest::LoadRequest {
        tunables: idl::Tunables::Tunables {
            chunkSize: 1 << 20,
            ..Default::default()
        },
        ..whole(&path)
    };
    let _handle = conn.loader.startLoad(&req, &callback).unwrap();
    let mut last = -1;
    let (result, id) = loop {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("a callback")
        {
            Event::Progress(done, total) => {
                // The service sends reports in order; oneway calls over rsbinder RPC may be
                // dispatched on several client threads and overtake each other (kernel binder
                // keeps them ordered; the client library only ever shows the maximum).
                assert!(
                    done > 0 && done <= total && total == data.len() as i64,
                    "{done}/{total}"
                );
                last = last.max(done);
            }
            Event::Complete(r, id) => break (r, id),
            Event::Error(code, msg) => panic!("onError({code}, {msg})"),
        }
    };
    assert!(last > 0, "at least one progress report");
    assert_eq!(
        fd_bytes(result.as_ref().expect("a buffer fd"), data.len()),
        data
    );
    // The id the callback carried is the buffer's: releasing it drops the charge.
    conn.loader.releaseBuffer(id).unwrap();
    assert_eq!(conn.loader.getUsage().unwrap().chargedBytes, 0);

    // Cancel a long load right away: onError(CANCELLED), and nothing survives.
    let baseline = conn.state();
    let big = service.sparse("big.bin", 2 << 30);
    let (callback, events) = recorder();
    let handle = conn.loader.startLoad(&whole(&big), &callback).unwrap();
    assert!(handle.cancel().unwrap(), "the load was still running");
    loop {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("a callback")
        {
            Event::Progress(..) => continue,
            Event::Error(code, msg) => {
                assert_eq!(code, idl::ErrorCode::ErrorCode::CANCELLED.0, "{msg}");
                break;
            }
            Event::Complete(..) => panic!("a cancelled load completed"),
        }
    }
    assert!(
        !handle.cancel().unwrap(),
        "cancelling twice is harmless and says it is over"
    );
    let after = conn.state();
    assert_eq!(
        after.outstandingBufferBytes,
        baseline.outstandingBufferBytes
    );
    assert_eq!(after.loadsInFlight, 0);
}

/// The child half of `client_death_frees_memory`: loads, says so, and exits holding the buffer.
#[test]
#[ignore = "run by client_death_frees_memory as a separate process"]
fn child_client_that_dies() {
    let Ok(socket) = std::env::var("DMALOAD_E2E_CHILD_SOCKET") else {
        return;
    };
    let file = std::env::var("DMALOAD_E2E_CHILD_FILE").unwrap();
    let conn = Conn::open(Path::new(&socket));
    if std::env::var("DMALOAD_E2E_CHILD_ASYNC").is_ok() {
        let (callback, _events) = recorder();
        let _handle = conn
            .loader
            .startLoad(&whole(Path::new(&file)), &callback)
            .unwrap();
        println!("STARTED");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::process::exit(0); // dies with its load running
    }
    let result = conn.loader.load(&whole(Path::new(&file))).unwrap();
    println!("LOADED {}", result.sizeBytes);
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::process::exit(0); // no releaseBuffer, no close: as if it crashed
}

/// Runs `child_client_that_dies` in a new process against `service`, loading `file`
/// (asynchronously with `async_load`); returns the child and its stdout.
fn spawn_child_client(
    service: &Service,
    file: &std::path::Path,
    async_load: bool,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_client_that_dies",
            "--ignored",
            "--nocapture",
        ])
        .env("DMALOAD_E2E_CHILD_SOCKET", service.socket())
        .env("DMALOAD_E2E_CHILD_FILE", file)
        .stdout(Stdio::piped());
    if async_load {
        command.env("DMALOAD_E2E_CHILD_ASYNC", "1");
    }
    let mut child = command.spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

#[test]
fn client_death_frees_memory() {
    let service = Service::start("death", &[]);
    let conn = service.connect();
    let baseline = conn.state();
    let (path, _) = service.file("death.bin", 8 << 20);
    let (mut child, stdout) = spawn_child_client(&service, &path, false);
    let loaded = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("LOADED"));
    assert!(loaded.is_some(), "the child loaded a buffer");
    let held = conn.state();
    assert!(
        held.outstandingBufferBytes >= baseline.outstandingBufferBytes + (8 << 20),
        "{held:?}"
    );
    assert!(child.wait().unwrap().success());
    wait_for_state(
        &conn,
        Duration::from_secs(10),
        "the dead client's charge was never dropped",
        |now| {
            now.outstandingBufferBytes == baseline.outstandingBufferBytes
                && now.liveBuffers == baseline.liveBuffers
        },
    );
    let dump = conn.loader.debugDump(&["state".into()]).unwrap();
    assert!(dump.contains("reaped_processes = 1"), "{dump}");
}

#[test]
fn every_reachable_error_code_comes_through_the_aidl() {
    use idl::ErrorCode::ErrorCode as E;
    let service = Service::start(
        "errors",
        &[
            "--max-buffer",
            "4M",
            "--caller-cap",
            "6M",
            "--global-cap",
            "16M",
        ],
    );
    let conn = service.connect();
    let (path, _) = service.file("small.bin", 1 << 20);
    let (big, _) = service.file("big.bin", 5 << 20);
    // Warm up: the first load opens this caller's pidfd, which stays while the caller lives.
    let warm = conn.loader.load(&whole(&path)).unwrap();
    conn.loader.releaseBuffer(warm.bufferId).unwrap();
    let baseline = conn.state();
    let l = &conn.loader;

    expect_code(
        l.load(&request(vec![(open(&path), -1, 0, 0)], "memfd")),
        E::INVALID_ARGUMENT,
        "negative offset",
    );
    let no_fd = idl::LoadRequest::LoadRequest {
        segments: vec![idl::FileSegment::FileSegment::default()],
        backend: "memfd".into(),
        ..Default::default()
    };
    expect_code(l.load(&no_fd), E::BAD_FD, "segment without fd");
    let dir_fd: OwnedFd = std::fs::File::open(&service.dir).unwrap().into();
    expect_code(
        l.load(&request(vec![(dir_fd, 0, 0, 0)], "memfd")),
        E::BAD_FD,
        "directory fd",
    );
    expect_code(
        l.load(&request(vec![(open(&path), 2 << 20, 4096, 0)], "memfd")),
        E::RANGE,
        "past EOF",
    );
    expect_code(
        l.load(&request(vec![], "memfd")),
        E::BAD_SEGMENTS,
        "no segments",
    );
    expect_code(
        l.load(&request(
            vec![(open(&path), 0, 8192, 0), (open(&path), 0, 8192, 4096)],
            "memfd",
        )),
        E::BAD_SEGMENTS,
        "overlapping segments",
    );
    expect_code(
        l.load(&request(vec![(open(&path), 0, 0, 0)], "nosuchheap")),
        E::UNKNOWN_BACKEND,
        "unknown heap",
    );
    expect_code(l.load(&whole(&big)), E::TOO_LARGE, "over max buffer");
    let first = l
        .load(&request(vec![(open(&big), 0, 4 << 20, 0)], "memfd"))
        .unwrap();
    expect_code(
        l.load(&request(vec![(open(&big), 0, 3 << 20, 0)], "memfd")),
        E::CALLER_CAP,
        "over caller cap",
    );
    expect_code(
        l.releaseBuffer(first.bufferId + 1000),
        E::NOT_FOUND,
        "unknown buffer id",
    );
    l.releaseBuffer(first.bufferId).unwrap();
    expect_code(
        l.releaseBuffer(first.bufferId),
        E::NOT_FOUND,
        "released twice",
    );
    let bad_io = idl::LoadRequest::LoadRequest {
        ioMode: idl::IoMode::IoMode(9),
        ..whole(&path)
    };
    expect_code(l.load(&bad_io), E::INVALID_ARGUMENT, "unknown io mode");
    let bad_tunable = idl::LoadRequest::LoadRequest {
        tunables: idl::Tunables::Tunables {
            readerThreads: -2,
            ..Default::default()
        },
        ..whole(&path)
    };
    expect_code(
        l.load(&bad_tunable),
        E::INVALID_ARGUMENT,
        "negative tunable",
    );
    // Bad input leaked nothing.
    let after = conn.state();
    assert_eq!(
        (after.openFds, after.outstandingBufferBytes),
        (baseline.openFds, baseline.outstandingBufferBytes)
    );
    drop(conn);
    drop(service);

    let disabled = Service::start("disabled", &["--allowed-backends", "udmabuf"]);
    let (path, _) = disabled.file("small.bin", 1 << 20);
    expect_code(
        disabled.connect().loader.load(&whole(&path)),
        E::BACKEND_NOT_ALLOWED,
        "memfd disabled",
    );
    drop(disabled);

    let global = Service::start(
        "global",
        &[
            "--global-cap",
            "2M",
            "--caller-cap",
            "8M",
            "--max-buffer",
            "8M",
        ],
    );
    let (path, _) = global.file("three.bin", 3 << 20);
    expect_code(
        global.connect().loader.load(&whole(&path)),
        E::GLOBAL_CAP,
        "over global cap",
    );
    drop(global);

    let nomem = Service::start("nomem", &["--min-available-after", "1048576G"]);
    let (path, _) = nomem.file("small.bin", 1 << 20);
    expect_code(
        nomem.connect().loader.load(&whole(&path)),
        E::NO_MEMORY,
        "memory the kernel must keep",
    );
    drop(nomem);

    let refused = Service::start("refused", &["--allowed-uids", "4242"]);
    let conn = refused.connect();
    expect_code(
        conn.loader.getUsage(),
        E::PERMISSION_DENIED,
        "uid not allowed",
    );
    let dump = refused.connect().loader.debugDump(&[]);
    expect_code(dump, E::PERMISSION_DENIED, "uid not allowed, dump");
    drop(conn);
    drop(refused);

    let busy = Service::start("busy", &["--max-loads", "1"]);
    let conn = busy.connect();
    let sparse = busy.sparse("busy.bin", 2 << 30);
    let (small, _) = busy.file("small.bin", 1 << 20);
    let (callback, events) = recorder();
    let handle = conn.loader.startLoad(&whole(&sparse), &callback).unwrap();
    // Its first progress report means it holds the only load slot.
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(60)),
        Ok(Event::Progress(..))
    ));
    expect_code(
        conn.loader.load(&whole(&small)),
        E::BUSY,
        "second load over max-loads 1",
    );
    handle.cancel().unwrap();
    let cancelled = loop {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("a callback")
        {
            Event::Progress(..) => continue,
            Event::Error(code, _) => break code,
            Event::Complete(..) => panic!("completed although cancelled"),
        }
    };
    assert_eq!(cancelled, E::CANCELLED.0);

    // FILE_CHANGED: the file is cut short while it loads.
    let shrinking = busy.sparse("shrink.bin", 2 << 30);
    let (callback, events) = recorder();
    let whole_length = request(vec![(open(&shrinking), 0, 2 << 30, 0)], "memfd");
    let _h = conn.loader.startLoad(&whole_length, &callback).unwrap();
    // Cut it once the load is under way (its first progress report).
    match events
        .recv_timeout(Duration::from_secs(60))
        .expect("a callback")
    {
        Event::Progress(..) => {}
        Event::Error(code, msg) => panic!("onError({code}, {msg}) before any progress"),
        Event::Complete(..) => panic!("2 GiB loaded before any progress report"),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shrinking)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let code = loop {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("a callback")
        {
            Event::Progress(..) => continue,
            Event::Error(code, _) => break code,
            Event::Complete(..) => panic!("a file truncated during its load loaded completely"),
        }
    };
    assert_eq!(code, E::FILE_CHANGED.0);
}

/// An O_DIRECT fd (the service tests' files are on the build disk, which has direct I/O).
fn open_direct(path: &Path) -> OwnedFd {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap()
        .into()
}

/// A direct load from file offset 1 into buffer offset 0: file and buffer offsets differ in
/// alignment, so each reader streams its 1 MiB chunks through a 1 MiB bounce block.
fn misaligned(path: &Path) -> idl::LoadRequest::LoadRequest {
    idl::LoadRequest::LoadRequest {
        tunables: idl::Tunables::Tunables {
            chunkSize: 1 << 20,
            readerThreads: 4,
            ..Default::default()
        },
        ioMode: idl::IoMode::IoMode::DIRECT,
        ..request(vec![(open_direct(path), 1, 0, 0)], "memfd")
    }
}

#[test]
fn working_memory_is_charged_reported_and_back_to_zero() {
    use idl::ErrorCode::ErrorCode as E;
    let service = Service::start("working", &[]);
    let conn = service.connect();
    let (path, data) = service.file("model.bin", (8 << 20) + 5);
    let result = conn.loader.load(&misaligned(&path)).unwrap();
    let working = result.stats.workingBytes;
    assert!(
        (1 << 20..=4 << 20).contains(&working) && working % (1 << 20) == 0,
        "one 1 MiB block per reader: {:?}",
        result.stats
    );
    assert_eq!(buffer_bytes(&result, data.len() - 1), data[1..]);
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    assert_eq!(conn.loader.getUsage().unwrap().workingBytes, 0);
    assert_eq!(conn.state().workingBytes, 0);

    // While a load runs its working memory is charged to its caller and shown in the dump.
    let sparse = service.sparse("long.bin", 2 << 30);
    let (callback, events) = recorder();
    let handle = conn
        .loader
        .startLoad(&misaligned(&sparse), &callback)
        .unwrap();
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(60)),
        Ok(Event::Progress(..))
    ));
    let usage = conn.loader.getUsage().unwrap();
    let state = conn.state();
    let dump = conn.loader.debugDump(&["usage".into()]).unwrap();
    handle.cancel().unwrap();
    assert_eq!(usage.loadsInFlight, 1, "{usage:?}");
    assert!(usage.workingBytes >= 1 << 20, "{usage:?}");
    assert_eq!(state.workingBytes, usage.workingBytes);
    // The caller's own line, though it holds no buffer yet: only a load in flight.
    let uid = rpc::effective_uid();
    assert!(
        dump.lines().any(|l| l.starts_with(&format!("uid {uid}: "))
            && l.contains("loads_in_flight=1")
            && l.contains(&format!("working={}", usage.workingBytes))),
        "{dump}"
    );
    while !matches!(
        events.recv_timeout(Duration::from_secs(60)),
        Ok(Event::Error(..)) | Err(_)
    ) {}
    wait_for_state(
        &conn,
        Duration::from_secs(10),
        "the load's working memory",
        |now| now.loadsInFlight == 0 && now.workingBytes == 0,
    );
    drop(conn);
    drop(service);

    // The buffer is 8 MiB + 4 KiB. With 2.5 MiB more the caller's cap fits two readers'
    // blocks: the load runs with fewer readers and says so.
    let roomy = Service::start("working-shrunk", &["--caller-cap", "10756K"]);
    let (path, data) = roomy.file("model.bin", (8 << 20) + 5);
    let conn = roomy.connect();
    let result = conn.loader.load(&misaligned(&path)).unwrap();
    assert_eq!(result.stats.workingBytes, 2 << 20, "{:?}", result.stats);
    assert!(
        result
            .stats
            .fallbacks
            .iter()
            .any(|f| f.starts_with("WorkingMemory")),
        "{:?}",
        result.stats.fallbacks
    );
    assert_eq!(buffer_bytes(&result, data.len() - 1), data[1..]);
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    drop(conn);
    drop(roomy);

    // With 512 KiB more not even one block fits: refused before anything is allocated.
    let tight = Service::start("working-refused", &["--caller-cap", "8708K"]);
    let (path, _) = tight.file("model.bin", (8 << 20) + 5);
    let conn = tight.connect();
    let warm = conn.loader.load(&whole(&path)).unwrap();
    conn.loader.releaseBuffer(warm.bufferId).unwrap();
    let baseline = conn.state();
    let status = conn
        .loader
        .load(&misaligned(&path))
        .expect_err("over the cap");
    let (code, message) = service_error(&status);
    assert_eq!(code, E::CALLER_CAP.0, "{message}");
    assert!(message.contains("working memory"), "{message}");
    let after = conn.state();
    assert_eq!(
        (
            after.openFds,
            after.outstandingBufferBytes,
            after.workingBytes
        ),
        (baseline.openFds, baseline.outstandingBufferBytes, 0)
    );
    assert_eq!(conn.loader.getUsage().unwrap().chargedBytes, 0);
}

#[test]
fn the_reaper_sleeps_while_nobody_comes_or_goes() {
    let service = Service::start("reaper-idle", &[]);
    let conn = service.connect();
    let (path, _) = service.file("small.bin", 1 << 20);
    let r = conn.loader.load(&whole(&path)).unwrap();
    conn.loader.releaseBuffer(r.bufferId).unwrap();
    let wakeups = |conn: &Conn| -> u64 {
        let dump = conn.loader.debugDump(&["state".into()]).unwrap();
        dump.lines()
            .find_map(|l| l.strip_prefix("reaper_wakeups = "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no reaper_wakeups in {dump}"))
    };
    let before = wakeups(&conn);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        wakeups(&conn),
        before,
        "the reaper woke while no caller came or went"
    );
}

#[test]
fn eight_concurrent_clients() {
    let service = Service::start(
        "eight",
        &["--max-loads", "8", "--max-loads-per-caller", "8"],
    );
    let (path, data) = service.file("shared.bin", 4 << 20);
    let socket = service.socket();
    std::thread::scope(|s| {
        for i in 0..8 {
            let (socket, path, data) = (&socket, &path, &data);
            s.spawn(move || {
                let conn = Conn::open(socket);
                for _ in 0..3 {
                    let r = conn
                        .loader
                        .load(&whole(path))
                        .unwrap_or_else(|e| panic!("client {i}: {e}"));
                    assert_eq!(&buffer_bytes(&r, data.len()), data, "client {i}");
                    conn.loader.releaseBuffer(r.bufferId).unwrap();
                }
            });
        }
    });
    let conn = service.connect();
    assert_eq!(conn.state().outstandingBufferBytes, 0);
    assert!(conn
        .loader
        .debugDump(&["stats".into()])
        .unwrap()
        .contains("loads_ok = 24"));
}

#[test]
fn client_death_cancels_its_async_load() {
    let service = Service::start("async-death", &[]);
    let conn = service.connect();
    let baseline = conn.state();
    let big = service.sparse("long.bin", 4 << 30);
    let (mut child, stdout) = spawn_child_client(&service, &big, true);
    assert!(
        stdout.lines().map_while(Result::ok).any(|l| l == "STARTED"),
        "the child started a load"
    );
    assert!(child.wait().unwrap().success());
    wait_for_state(
        &conn,
        Duration::from_secs(30),
        "the dead client's load kept running",
        |now| {
            now.loadsInFlight == 0 && now.outstandingBufferBytes == baseline.outstandingBufferBytes
        },
    );
    let stats = conn.loader.debugDump(&["stats".into()]).unwrap();
    assert!(
        stats.contains("CANCELLED = 1"),
        "the load was cancelled, not finished: {stats}"
    );
}
