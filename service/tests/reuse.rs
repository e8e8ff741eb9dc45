//! Warm reuse end to end over RPC binder: shareable requests of one uid answered with the
//! buffer already loaded, in flight or kept warm; misses for another uid, another version of
//! a file, another range or backend; eight identical requests as one load; the cache's
//! limits (size, age, MemAvailable, room for a new load); a holder's death. Real dmaloadd,
//! real files, memfd buffers (the host has no dma-heap).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod common;
#[path = "common/rpc.rs"]
mod rpc;

use common::{recorder, Event};
use dmaload_aidl::aidl as idl;
use idl::Reuse::Reuse;
use rpc::{buffer_bytes, fd_bytes, open, wait_for_state, Conn, Service};

/// A whole-file shareable request for `path` into `backend`.
fn shareable(path: &Path, backend: &str) -> idl::LoadRequest::LoadRequest {
    idl::LoadRequest::LoadRequest {
        shareable: true,
        ..rpc::request(vec![(open(path), 0, 0, 0)], backend)
    }
}

/// Bytes the load read from the file.
fn read_bytes(result: &idl::LoadResult::LoadResult) -> i64 {
    result.stats.bytesDirect + result.stats.bytesBuffered
}

/// `key = N` of a dump view.
fn dump_value(conn: &Conn, view: &str, key: &str) -> u64 {
    let text = conn.loader.debugDump(&[view.to_string()]).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {view}: {text}"))
}

/// The `evicted:` line of the `cache` view.
fn evicted(conn: &Conn) -> String {
    let text = conn.loader.debugDump(&["cache".to_string()]).unwrap();
    text.lines()
        .find(|l| l.starts_with("evicted:"))
        .unwrap_or_else(|| panic!("no evictions line: {text}"))
        .to_string()
}

/// The service's state after a first load of its own (it opens this caller's pidfd, which
/// stays while the caller lives).
fn warm_baseline(conn: &Conn, path: &Path) -> idl::ServiceState::ServiceState {
    let warm = conn.loader.load(&rpc::whole(path)).unwrap();
    conn.loader.releaseBuffer(warm.bufferId).unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(50));
    conn.state()
}

fn usage(conn: &Conn) -> idl::CallerUsage::CallerUsage {
    conn.loader.getUsage().unwrap()
}

#[test]
fn the_same_uid_gets_the_same_buffer_shared_then_cached() {
    let service = Service::start(
        "hit",
        &["--cache-per-caller", "64M", "--cache-max-age", "600"],
    );
    let conn = service.connect();
    let (path, data) = service.file("model.bin", (1 << 20) + 4097);
    let loads_before = dump_value(&conn, "stats", "loads_ok");

    let first = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(first.reuse, Reuse::NONE);
    assert_eq!(
        read_bytes(&first),
        data.len() as i64,
        "the first load reads the file"
    );
    let charged = usage(&conn).chargedBytes;
    assert_eq!(charged, first.sizeBytes);

    // A second request of the same uid: the same buffer, no I/O, no second charge.
    let second = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(second.reuse, Reuse::SHARED);
    assert_eq!(read_bytes(&second), 0, "a hit reads nothing");
    assert_ne!(
        second.bufferId, first.bufferId,
        "every holder has its own id"
    );
    assert_eq!(second.sizeBytes, first.sizeBytes);
    assert_eq!(second.name, first.name);
    assert_eq!(buffer_bytes(&second, data.len()), data);
    let u = usage(&conn);
    assert_eq!(u.chargedBytes, charged, "one piece of memory, one charge");
    assert_eq!(u.buffers, 2);
    let state = conn.state();
    assert_eq!(state.liveBuffers, 2);
    assert_eq!(
        state.outstandingBufferBytes, first.sizeBytes,
        "counted once"
    );
    let dump = conn.loader.debugDump(&["buffers".into()]).unwrap();
    assert_eq!(dump.matches("shared=entry1 ").count(), 2, "{dump}");

    // The first holder lets go: the second's buffer is intact.
    conn.loader.releaseBuffer(first.bufferId).unwrap();
    drop(first);
    assert_eq!(buffer_bytes(&second, data.len()), data);
    assert_eq!(usage(&conn).chargedBytes, charged);
    // The last one lets go: kept warm, still charged to the uid, not outstanding.
    conn.loader.releaseBuffer(second.bufferId).unwrap();
    drop(second);
    let state = conn.state();
    assert_eq!((state.liveBuffers, state.outstandingBufferBytes), (0, 0));
    assert_eq!((state.cachedBuffers, state.cachedBytes), (1, charged));
    let u = usage(&conn);
    assert_eq!(
        (u.cachedBuffers, u.cachedBytes, u.chargedBytes),
        (1, charged, charged)
    );

    // A process restart: the cached buffer, no I/O.
    let third = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(third.reuse, Reuse::CACHED);
    assert_eq!(read_bytes(&third), 0);
    assert_eq!(buffer_bytes(&third, data.len()), data);
    assert_eq!(conn.state().cachedBuffers, 0, "held again");

    // A request without the flag loads a buffer of its own, and is never shared.
    let own = conn.loader.load(&rpc::whole(&path)).unwrap();
    assert_eq!(own.reuse, Reuse::NONE);
    assert_eq!(read_bytes(&own), data.len() as i64);
    assert_eq!(usage(&conn).chargedBytes, 2 * charged);
    conn.loader.releaseBuffer(own.bufferId).unwrap();

    let u = usage(&conn);
    assert_eq!((u.reuseHits, u.reuseMisses), (2, 1));
    assert_eq!(u.reuseBytesSaved, 2 * data.len() as i64);
    assert_eq!(
        dump_value(&conn, "stats", "loads_ok"),
        loads_before + 2,
        "two loads read the file: the first shareable one and the one of its own"
    );
    let cache = conn.loader.debugDump(&["cache".into()]).unwrap();
    assert!(cache.contains("entry=1 uid=0 held by 1 "), "{cache}");
    assert!(cache.contains("uid 0: hits=2 misses=1"), "{cache}");
    conn.loader.releaseBuffer(third.bufferId).unwrap();
}

#[test]
fn without_a_cache_live_buffers_are_still_shared_and_nothing_is_kept() {
    let service = Service::start("nocache", &[]);
    let conn = service.connect();
    let (path, data) = service.file("live.bin", 300_000);
    let base = warm_baseline(&conn, &path);
    let a = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    let b = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!((a.reuse, b.reuse), (Reuse::NONE, Reuse::SHARED));
    assert_eq!(buffer_bytes(&b, data.len()), data);
    conn.loader.releaseBuffer(a.bufferId).unwrap();
    conn.loader.releaseBuffer(b.bufferId).unwrap();
    drop((a, b));
    let u = usage(&conn);
    assert_eq!(
        (u.chargedBytes, u.cachedBuffers),
        (0, 0),
        "nothing kept: {u:?}"
    );
    let c = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(
        c.reuse,
        Reuse::NONE,
        "released and not cached: loaded again"
    );
    conn.loader.releaseBuffer(c.bufferId).unwrap();
    drop(c);
    wait_for_state(&conn, Duration::from_secs(5), "back at the baseline", |s| {
        (
            s.openFds,
            s.outstandingBufferBytes,
            s.liveBuffers,
            s.cachedBuffers,
        ) == (base.openFds, 0, 0, 0)
    });
}

#[test]
fn another_range_another_backend_or_no_flag_is_a_miss() {
    let service = Service::start("keys", &["--cache-per-caller", "64M"]);
    let conn = service.connect();
    let (path, data) = service.file("keys.bin", 64 << 10);
    let held = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(held.reuse, Reuse::NONE);

    let range = idl::LoadRequest::LoadRequest {
        shareable: true,
        ..rpc::request(vec![(open(&path), 4096, 8192, 0)], "memfd")
    };
    let r = conn.loader.load(&range).unwrap();
    assert_eq!(r.reuse, Reuse::NONE, "another range");
    assert_eq!(buffer_bytes(&r, 8192), data[4096..4096 + 8192]);
    let placed = idl::LoadRequest::LoadRequest {
        shareable: true,
        ..rpc::request(vec![(open(&path), 0, 0, 4096)], "memfd")
    };
    let p = conn.loader.load(&placed).unwrap();
    assert_eq!(
        p.reuse,
        Reuse::NONE,
        "the same bytes at another buffer offset"
    );
    let auto = conn.loader.load(&shareable(&path, "auto")).unwrap();
    assert_eq!(auto.reuse, Reuse::NONE, "another backend asked for");
    let digests = idl::LoadRequest::LoadRequest {
        digests: vec![idl::DigestAlgorithm::DigestAlgorithm::SHA256],
        ..shareable(&path, "memfd")
    };
    let d = conn.loader.load(&digests).unwrap();
    assert_eq!(d.reuse, Reuse::NONE, "other digests asked for");
    // The I/O mode and the tunables do not change the bytes: a hit.
    let buffered = idl::LoadRequest::LoadRequest {
        ioMode: idl::IoMode::IoMode::BUFFERED,
        tunables: idl::Tunables::Tunables {
            chunkSize: 4096,
            ..Default::default()
        },
        ..shareable(&path, "memfd")
    };
    let again = conn.loader.load(&buffered).unwrap();
    assert_eq!(again.reuse, Reuse::SHARED);
    // Without the flag: never shared, and never a source for others.
    let own = conn.loader.load(&rpc::whole(&path)).unwrap();
    assert_eq!(own.reuse, Reuse::NONE);
    for r in [held, r, p, auto, d, again, own] {
        conn.loader.releaseBuffer(r.bufferId).unwrap();
    }
    let u = usage(&conn);
    assert_eq!((u.reuseHits, u.reuseMisses), (1, 5), "{u:?}");
}

#[test]
fn another_version_of_the_file_is_a_miss() {
    let service = Service::start(
        "versions",
        &["--cache-per-caller", "64M", "--cache-max-age", "600"],
    );
    let conn = service.connect();
    let (path, data) = service.file("w.bin", 256 << 10);
    let first = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    conn.loader.releaseBuffer(first.bufferId).unwrap();
    drop(first);
    assert_eq!(conn.state().cachedBuffers, 1);

    // Rewritten in place, same size. Timestamps move in the kernel's clock ticks: a rewrite
    // within one tick of the previous write is not seen (docs/DESIGN.md), hence the pause.
    std::thread::sleep(Duration::from_millis(50));
    let mut new = data.clone();
    new[..4096].fill(0x5a);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&new[..4096], 0).unwrap();
    drop(file);
    let rewritten = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(rewritten.reuse, Reuse::NONE, "rewritten in place");
    assert_eq!(buffer_bytes(&rewritten, new.len()), new);
    assert_eq!(
        conn.state().cachedBuffers,
        0,
        "the lookup saw the new version: the old one left the cache"
    );
    assert!(evicted(&conn).contains("changed=1"), "{}", evicted(&conn));

    // Truncated.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    let truncated = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(truncated.reuse, Reuse::NONE, "truncated");
    assert_eq!(buffer_bytes(&truncated, 100_000), new[..100_000]);

    // Renamed over: another inode at the same path.
    let other = service.dir.join("w.bin.new");
    let mut renamed = data.clone();
    renamed[5000] ^= 0xff;
    std::fs::write(&other, &renamed).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let replaced = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(replaced.reuse, Reuse::NONE, "renamed over");
    assert_eq!(buffer_bytes(&replaced, renamed.len()), renamed);

    // The file unchanged since: a hit again.
    let same = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(same.reuse, Reuse::SHARED);
    assert_eq!(buffer_bytes(&same, renamed.len()), renamed);
    for r in [rewritten, truncated, replaced, same] {
        conn.loader.releaseBuffer(r.bufferId).unwrap();
    }
}

const OTHER_UID: u32 = 10_043;

/// The child half of `another_uid_never_gets_the_buffer`, run as `OTHER_UID`: a shareable
/// load of the file it got as stdin; prints how it was served and its usage.
#[test]
#[ignore = "run by another_uid_never_gets_the_buffer as another uid"]
fn child_other_uid_loads() {
    let Ok(socket) = std::env::var("DMALOAD_E2E_CHILD_SOCKET") else {
        return;
    };
    let conn = Conn::open(Path::new(&socket));
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let req = idl::LoadRequest::LoadRequest {
        shareable: true,
        ..rpc::request(vec![(stdin, 0, 0, 0)], "memfd")
    };
    let result = conn.loader.load(&req).unwrap();
    let u = conn.loader.getUsage().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "REUSE {} READ {} CHARGED {} HITS {} SIZE {}",
        result.reuse.0,
        read_bytes(&result),
        u.chargedBytes,
        u.reuseHits,
        result.sizeBytes
    )
    .unwrap();
    let cache = conn.loader.debugDump(&["cache".into()]).unwrap();
    writeln!(out, "CACHE {}", cache.replace('\n', "|")).unwrap();
    conn.loader.releaseBuffer(result.bufferId).unwrap();
    out.flush().unwrap();
}

#[test]
fn another_uid_never_gets_the_buffer() {
    let service = Service::start(
        "uids",
        &["--socket-mode", "666", "--cache-per-caller", "64M"],
    );
    let conn = service.connect();
    let (path, data) = service.file("shared.bin", 200_000);
    let mine = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let output = rpc::run_child_as(OTHER_UID, "child_other_uid_loads", &service, file);
    let text = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "REUSE 0 READ {} CHARGED {} HITS 0 SIZE {}",
        data.len(),
        mine.sizeBytes,
        mine.sizeBytes
    );
    assert!(text.contains(&expected), "a load of its own: {text}");
    let cache = text.lines().find(|l| l.starts_with("CACHE ")).unwrap();
    assert!(
        !cache.contains("uid=0 "),
        "uid 0's entry shown to another uid: {cache}"
    );
    assert!(cache.contains(&format!("uid={OTHER_UID} ")), "{cache}");
    // Ours is untouched; the other uid's entry is its own, cached under its uid.
    assert_eq!(usage(&conn).chargedBytes, mine.sizeBytes);
    let again = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    assert_eq!(again.reuse, Reuse::SHARED);
    let all = conn.loader.debugDump(&["cache".into()]).unwrap();
    assert!(
        all.contains(&format!("uid {OTHER_UID}: hits=0 misses=1")),
        "{all}"
    );
    for r in [mine, again] {
        conn.loader.releaseBuffer(r.bufferId).unwrap();
    }
}

/// A request slowed down on purpose (the smallest reads, one reader), so others arrive
/// during it.
fn slow(path: &Path) -> idl::LoadRequest::LoadRequest {
    idl::LoadRequest::LoadRequest {
        ioMode: idl::IoMode::IoMode::BUFFERED,
        tunables: idl::Tunables::Tunables {
            chunkSize: 64 << 10,
            readerThreads: 1,
            ..Default::default()
        },
        ..shareable(path, "memfd")
    }
}

/// A file of `len` bytes whose pages are not cached: its load reads the disk.
fn cold_file(service: &Service, name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let (path, data) = service.file(name, len);
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    dmaload_abi::file::drop_cached(file.as_fd(), 0, len as u64).unwrap();
    (path, data)
}

#[test]
fn eight_identical_requests_are_one_load() {
    let service = Service::start("coalesce", &[]);
    let (path, data) = cold_file(&service, "big.bin", 192 << 20);
    let conn = service.connect();
    let loads_before = dump_value(&conn, "stats", "loads_ok");
    let conns: Vec<Conn> = (0..7).map(|_| service.connect()).collect();

    // The first starts; the other seven come while it runs: four synchronous, three
    // asynchronous (they see the load's progress too).
    let (callback, events) = recorder();
    let _handle = conn.loader.startLoad(&slow(&path), &callback).unwrap();
    match events.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Progress(done, total) => assert!(done < total, "{done}/{total}"),
        Event::Complete(..) => panic!("the first load ended before the others came"),
        Event::Error(code, message) => panic!("{code}: {message}"),
    }
    let start = Arc::new(Barrier::new(7));
    let results: Vec<(Reuse, OwnedFd, i64, usize)> = std::thread::scope(|s| {
        let threads: Vec<_> = conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let start = Arc::clone(&start);
                let path = path.clone();
                let len = data.len() as i64;
                s.spawn(move || {
                    start.wait();
                    if i < 4 {
                        let r = c.loader.load(&slow(&path)).unwrap();
                        let fd = r.buffer.as_ref().unwrap().as_ref().try_clone().unwrap();
                        return (r.reuse, fd, r.bufferId, 0);
                    }
                    let (callback, events) = recorder();
                    let _handle = c.loader.startLoad(&slow(&path), &callback).unwrap();
                    let mut reports = 0;
                    let (fd, id) = loop {
                        match events.recv_timeout(Duration::from_secs(120)).unwrap() {
                            Event::Progress(done, total) => {
                                assert!(done <= total && total == len);
                                reports += 1;
                            }
                            Event::Complete(fd, id) => break (fd.unwrap(), id),
                            Event::Error(code, message) => panic!("{code}: {message}"),
                        }
                    };
                    // Oneway calls over RPC may overtake each other: late reports count too.
                    while let Ok(Event::Progress(..)) =
                        events.recv_timeout(Duration::from_millis(200))
                    {
                        reports += 1;
                    }
                    (Reuse::COALESCED, fd, id, reports)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let first = loop {
        match events.recv_timeout(Duration::from_secs(120)).unwrap() {
            Event::Progress(..) => continue,
            Event::Complete(fd, id) => break (fd.unwrap(), id),
            Event::Error(code, message) => panic!("{code}: {message}"),
        }
    };
    for (reuse, ..) in &results[..4] {
        assert_eq!(*reuse, Reuse::COALESCED, "waited for the load in flight");
    }
    let reports: usize = results.iter().map(|r| r.3).sum();
    assert!(
        reports > 0,
        "the asynchronous waiters saw the load's progress"
    );
    let mut ids: Vec<i64> = results.iter().map(|r| r.2).collect();
    ids.push(first.1);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "every request has its own buffer id");
    for fd in results.iter().map(|r| &r.1).chain([&first.0]) {
        assert_eq!(fd_bytes(fd, data.len()), data);
    }
    assert_eq!(
        dump_value(&conn, "stats", "loads_ok"),
        loads_before + 1,
        "one load read the file"
    );
    let u = usage(&conn);
    assert_eq!((u.reuseHits, u.reuseMisses), (7, 1));
    assert_eq!(u.reuseBytesSaved, 7 * data.len() as i64);
    let state = conn.state();
    assert_eq!(state.liveBuffers, 8);
    assert_eq!(state.outstandingBufferBytes, u.chargedBytes, "one charge");
    for id in ids {
        conn.loader.releaseBuffer(id).unwrap();
    }
    assert_eq!(usage(&conn).chargedBytes, 0);
}

#[test]
fn a_cancelled_first_request_does_not_fail_the_others() {
    let service = Service::start("leader", &[]);
    let (path, data) = cold_file(&service, "lead.bin", 128 << 20);
    let conn = service.connect();
    let waiter_conn = service.connect();
    let (callback, events) = recorder();
    let handle = conn.loader.startLoad(&slow(&path), &callback).unwrap();
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(60)).unwrap(),
        Event::Progress(..)
    ));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| waiter_conn.loader.load(&slow(&path)).unwrap());
        // The waiter is registered once the cache view shows two requests for the load.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !conn
            .loader
            .debugDump(&["cache".into()])
            .unwrap()
            .contains("requests=2")
        {
            assert!(Instant::now() < deadline, "the waiter never joined");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(handle.cancel().unwrap());
        loop {
            match events.recv_timeout(Duration::from_secs(60)).unwrap() {
                Event::Progress(..) => continue,
                Event::Error(code, _) => {
                    assert_eq!(code, idl::ErrorCode::ErrorCode::CANCELLED.0);
                    break;
                }
                Event::Complete(..) => panic!("the cancelled request got a buffer"),
            }
        }
        let result = waiter.join().unwrap();
        assert_eq!(result.reuse, Reuse::COALESCED);
        assert_eq!(buffer_bytes(&result, data.len()), data);
        waiter_conn.loader.releaseBuffer(result.bufferId).unwrap();
    });
    wait_for_state(&conn, Duration::from_secs(5), "nothing left", |s| {
        (s.liveBuffers, s.outstandingBufferBytes, s.loadsInFlight) == (0, 0, 0)
    });
}

#[test]
fn the_cache_keeps_its_size_and_age() {
    let service = Service::start(
        "limits",
        &["--cache-per-caller", "3M", "--cache-max-age", "2"],
    );
    let conn = service.connect();
    let files: Vec<_> = (0..4)
        .map(|i| service.file(&format!("m{i}.bin"), 1 << 20))
        .collect();
    let base = warm_baseline(&conn, &files[0].0);
    let load_release = |path: &Path| {
        let r = conn.loader.load(&shareable(path, "memfd")).unwrap();
        conn.loader.releaseBuffer(r.bufferId).unwrap();
        r.reuse
    };
    for (path, _) in &files[..3] {
        assert_eq!(load_release(path), Reuse::NONE);
    }
    assert_eq!(conn.state().cachedBuffers, 3);
    // A fourth does not fit 3 MiB: the oldest goes.
    assert_eq!(load_release(&files[3].0), Reuse::NONE);
    let state = conn.state();
    assert_eq!((state.cachedBuffers, state.cachedBytes), (3, 3 << 20));
    assert!(evicted(&conn).contains("limit=1"), "{}", evicted(&conn));
    assert_eq!(
        load_release(&files[0].0),
        Reuse::NONE,
        "the oldest was evicted"
    );
    assert_eq!(load_release(&files[3].0), Reuse::CACHED);
    // Larger than the uid's share: never cached.
    let (big, _) = service.file("big.bin", 4 << 20);
    assert_eq!(load_release(&big), Reuse::NONE);
    assert_eq!(conn.state().cachedBytes, 3 << 20);
    // Two seconds later everything left; the service is back at its baseline.
    let started = Instant::now();
    wait_for_state(
        &conn,
        Duration::from_secs(10),
        "the cache emptied with age",
        |s| s.cachedBuffers == 0,
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(evicted(&conn).contains("age=3"), "{}", evicted(&conn));
    let u = usage(&conn);
    assert_eq!((u.chargedBytes, u.cachedBytes), (0, 0));
    wait_for_state(&conn, Duration::from_secs(5), "fds at the baseline", |s| {
        s.openFds == base.openFds
    });
}

/// MemAvailable now, from /proc/meminfo.
fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb << 10)
        .unwrap()
}

#[test]
fn cached_buffers_leave_when_memory_runs_low() {
    // The threshold sits 2 GiB below what is available now; the test then takes memory
    // until MemAvailable is below it.
    let available = mem_available();
    assert!(
        available > 4 << 30,
        "this test needs 4 GiB of available memory"
    );
    let threshold = available - (2 << 30);
    let service = Service::start(
        "memory",
        &[
            "--cache-per-caller",
            "1G",
            "--cache-max-age",
            "600",
            "--cache-min-available",
            &threshold.to_string(),
        ],
    );
    let conn = service.connect();
    let (path, _) = service.file("warm.bin", 32 << 20);
    let r = conn.loader.load(&shareable(&path, "memfd")).unwrap();
    conn.loader.releaseBuffer(r.bufferId).unwrap();
    drop(r);
    assert_eq!(conn.state().cachedBuffers, 1);
    assert_eq!(usage(&conn).chargedBytes, 32 << 20);

    let take = mem_available().saturating_sub(threshold) + (512 << 20);
    let memfd = dmaload_abi::memfd::Memfd::create("pressure", take).unwrap();
    let map = dmaload_abi::mmap::Mapping::map_shared(memfd.as_fd(), take as usize).unwrap();
    map.populate_write(0, take as usize).unwrap();
    wait_for_state(
        &conn,
        Duration::from_secs(10),
        "the cached buffer left under memory pressure",
        |s| s.cachedBuffers == 0,
    );
    drop(map);
    drop(memfd);
    assert!(evicted(&conn).contains("memory=1"), "{}", evicted(&conn));
    assert_eq!(usage(&conn).chargedBytes, 0, "its charge dropped");
}

#[test]
fn cached_buffers_make_room_for_a_new_load() {
    let service = Service::start(
        "room",
        &[
            "--cache-per-caller",
            "1G",
            "--caller-cap",
            "40M",
            "--cache-max-age",
            "600",
        ],
    );
    let conn = service.connect();
    let (a, _) = service.file("a.bin", 24 << 20);
    let (b, b_data) = service.file("b.bin", 24 << 20);
    let r = conn.loader.load(&shareable(&a, "memfd")).unwrap();
    conn.loader.releaseBuffer(r.bufferId).unwrap();
    assert_eq!(usage(&conn).chargedBytes, 24 << 20, "cached, still charged");
    // 24 + 24 MiB exceed the 40 MiB cap: the cached buffer goes, the load goes through.
    let own = conn.loader.load(&rpc::whole(&b)).unwrap();
    assert_eq!(buffer_bytes(&own, b_data.len()), b_data);
    assert_eq!(conn.state().cachedBuffers, 0);
    assert!(evicted(&conn).contains("room=1"), "{}", evicted(&conn));
    assert_eq!(usage(&conn).chargedBytes, 24 << 20);
    conn.loader.releaseBuffer(own.bufferId).unwrap();
}

/// The child half of `a_dead_holder_leaves_the_others_a_valid_buffer`: a shareable load of
/// the file, then death without a release.
#[test]
#[ignore = "run by a_dead_holder_leaves_the_others_a_valid_buffer as a separate process"]
fn child_holder_that_dies() {
    let Ok(socket) = std::env::var("DMALOAD_E2E_CHILD_SOCKET") else {
        return;
    };
    let file = std::env::var("DMALOAD_E2E_CHILD_FILE").unwrap();
    let conn = Conn::open(Path::new(&socket));
    let result = conn
        .loader
        .load(&shareable(Path::new(&file), "memfd"))
        .unwrap();
    println!("LOADED {}", result.reuse.0);
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::process::exit(0); // no releaseBuffer: as if it crashed
}

fn dying_holder(service: &Service, file: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holder_that_dies",
            "--ignored",
            "--nocapture",
        ])
        .env("DMALOAD_E2E_CHILD_SOCKET", service.socket())
        .env("DMALOAD_E2E_CHILD_FILE", file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("LOADED"))
        .expect("the child loaded");
    (child, line)
}

#[test]
fn a_dead_holder_leaves_the_others_a_valid_buffer() {
    let service = Service::start("holders", &[]);
    let conn = service.connect();
    let (path, data) = service.file("held.bin", 8 << 20);
    for child_first in [true, false] {
        let (child, mine) = if child_first {
            // The child loads it and dies; this process holds it as SHARED.
            let (child, line) = dying_holder(&service, &path);
            assert_eq!(line, format!("LOADED {}", Reuse::NONE.0));
            let mine = conn.loader.load(&shareable(&path, "memfd")).unwrap();
            assert_eq!(mine.reuse, Reuse::SHARED);
            (child, mine)
        } else {
            let mine = conn.loader.load(&shareable(&path, "memfd")).unwrap();
            assert_eq!(mine.reuse, Reuse::NONE);
            let (child, line) = dying_holder(&service, &path);
            assert_eq!(line, format!("LOADED {}", Reuse::SHARED.0));
            (child, mine)
        };
        let mut child = child;
        assert!(child.wait().unwrap().success());
        wait_for_state(
            &conn,
            Duration::from_secs(10),
            "the dead holder's share was never dropped",
            |s| s.liveBuffers == 1,
        );
        let state = conn.state();
        assert_eq!(
            state.outstandingBufferBytes, mine.sizeBytes,
            "still held: {state:?}"
        );
        assert_eq!(usage(&conn).chargedBytes, mine.sizeBytes);
        assert_eq!(
            buffer_bytes(&mine, data.len()),
            data,
            "the survivor's buffer"
        );
        conn.loader.releaseBuffer(mine.bufferId).unwrap();
        assert_eq!(usage(&conn).chargedBytes, 0);
    }
}

#[test]
fn the_client_library_asks_for_sharing_and_reports_it() {
    let service = Service::start("client", &["--cache-per-caller", "16M"]);
    let (path, data) = service.file("lib.bin", 123_457);
    let endpoint = dmaload::Endpoint::Socket(service.socket());
    let loader = dmaload::Loader::connect(Some(&endpoint)).unwrap();
    let mut request = dmaload::LoadRequest::new();
    request.add_file(&path, 0, 0, 0).unwrap();
    request.set_backend(Some("memfd")).set_shareable(true);
    let first = loader.load(&request).unwrap();
    let second = loader.load(&request).unwrap();
    assert_eq!(first.reuse(), dmaload::Reuse::None);
    assert_eq!(second.reuse(), dmaload::Reuse::Shared);
    assert_eq!(
        second.stats().direct_bytes + second.stats().buffered_bytes,
        0
    );
    assert_eq!(second.map(data.len() as u64).unwrap().as_bytes(), &data[..]);
    loader.release_buffer(first.buffer_id()).unwrap();
    loader.release_buffer(second.buffer_id()).unwrap();
    let cached = loader.load(&request).unwrap();
    assert_eq!(cached.reuse(), dmaload::Reuse::Cached);
    loader.release_buffer(cached.buffer_id()).unwrap();
    let usage = loader.usage().unwrap();
    let counter = |name: &str| {
        usage
            .counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name}: {usage:?}"))
    };
    assert_eq!(counter("reuse_hits"), 2);
    assert_eq!(counter("reuse_misses"), 1);
    assert_eq!(counter("reuse_bytes_saved"), 2 * data.len() as i64);
    assert_eq!(counter("cached_buffers"), 1);
}
