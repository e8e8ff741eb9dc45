//! Group `bad-input`: every malformed request gets its specific stable code and a message,
//! the service keeps serving (a good load right after each case), and nothing leaks (the
//! service's fds, its outstanding buffer bytes, this caller's charge and the system's
//! dma-bufs are back to their baseline after each case).

use std::os::fd::OwnedFd;
use std::time::Duration;

use dmaload_vts::ensure;
use dmaload_vts::fixtures::{BadFdKind, PatternFile};
use dmaload_vts::harness::{CaseResult, Group};

use crate::service::{self as s, ErrorCode as E, Failure, IoMode, LoadRequest, Svc};
use crate::Options;

/// Checks that `req` is refused with `want` and leaves nothing behind.
fn refused(svc: &Svc, req: &LoadRequest, want: E, health: &PatternFile) -> CaseResult {
    refused_saying(svc, req, want, "", health)
}

/// [`refused`], with a message that contains `words`.
fn refused_saying(
    svc: &Svc,
    req: &LoadRequest,
    want: E,
    words: &str,
    health: &PatternFile,
) -> CaseResult {
    let base = s::baseline(svc)?;
    match s::load(svc, req) {
        Ok(r) => {
            let _ = svc.r#releaseBuffer(r.r#bufferId);
            return Err(format!(
                "loaded {} bytes; expected {}",
                r.r#sizeBytes,
                s::code_name(want.0)
            ));
        }
        Err(Failure::Code(code, msg)) => {
            ensure!(
                code == want.0,
                "got {}({code}): {msg}; expected {}",
                s::code_name(code),
                s::code_name(want.0)
            );
            ensure!(msg.len() > 10, "message {msg:?} does not say what to do");
            ensure!(
                msg.contains(words),
                "message {msg:?} does not say {words:?}"
            );
        }
        Err(other) => return Err(format!("expected {}, got {other}", s::code_name(want.0))),
    }
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    still_serving(svc, health)
}

/// A good load right after a bad one: the service keeps serving.
fn still_serving(svc: &Svc, f: &PatternFile) -> CaseResult {
    let fd = f.open(false).map_err(|e| e.to_string())?;
    let r = s::load(
        svc,
        &s::whole_file_request(fd, "auto", IoMode::AUTO, "vts-health"),
    )
    .map_err(|e| format!("the service stopped serving good requests: {e}"))?;
    svc.r#releaseBuffer(r.r#bufferId)
        .map_err(|e| Failure::from_status(e).to_string())
}

fn one(fd: Option<OwnedFd>, off: i64, len: i64, at: i64) -> LoadRequest {
    s::request(
        vec![s::segment(fd, off, len, at)],
        "auto",
        IoMode::AUTO,
        "vts-bad",
    )
}

pub fn run(o: &Options, svc: &Svc) -> Group {
    let mut g = Group::new("bad-input");
    let dir = o.dir.join("bad-input");
    let files = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            let small =
                PatternFile::create(&dir, "small.bin", 7, 10_001).map_err(|e| e.to_string())?;
            let empty_path = dir.join("empty.bin");
            std::fs::write(&empty_path, b"").map_err(|e| e.to_string())?;
            let empty = PatternFile {
                path: empty_path,
                seed: 0,
                size: 0,
            };
            Ok((small, empty))
        });
    let (small, empty) = match files {
        Ok(f) => f,
        Err(e) => {
            g.case("fixtures", || Err(e));
            return g;
        }
    };
    let rd = |f: &PatternFile| f.open(false).ok();
    let size = small.size as i64;

    for kind in BadFdKind::ALL {
        g.case(&format!("fd is a {} → BAD_FD", kind.name()), || {
            let fd = kind
                .make(&small.path)
                .map_err(|e| format!("make the fd: {e}"))?
                .ok_or("this device cannot make such an fd")?;
            if kind == BadFdKind::OPath {
                // Kernel binder refuses to carry an O_PATH fd: the transaction fails in the
                // sender and the service never sees it. Either way nothing may change.
                return o_path(svc, fd, &small);
            }
            refused(svc, &one(Some(fd), 0, 0, 0), E::BAD_FD, &small)
        });
    }
    g.case("no fd (null ParcelFileDescriptor) → BAD_FD", || {
        refused(svc, &one(None, 0, 0, 0), E::BAD_FD, &small)
    });
    g.case("fd of a deleted, truncated-to-0 file → RANGE", || {
        let p = dir.join("gone.bin");
        std::fs::write(&p, b"x").map_err(|e| e.to_string())?;
        let fd: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| e.to_string())?
            .into();
        std::fs::remove_file(&p).map_err(|e| e.to_string())?;
        nix::unistd::ftruncate(&fd, 0).map_err(|e| e.to_string())?;
        refused(svc, &one(Some(fd), 0, 0, 0), E::RANGE, &small)
    });
    let cases: Vec<(&str, LoadRequest, E)> = vec![
        (
            "range starts at EOF → RANGE",
            one(rd(&small), size, 1, 0),
            E::RANGE,
        ),
        (
            "offset past EOF, length 0 (to EOF) → RANGE",
            one(rd(&small), size + 1, 0, 0),
            E::RANGE,
        ),
        (
            "length one byte past EOF → RANGE",
            one(rd(&small), 0, size + 1, 0),
            E::RANGE,
        ),
        ("empty file → RANGE", one(rd(&empty), 0, 0, 0), E::RANGE),
        (
            "negative length → INVALID_ARGUMENT",
            one(rd(&small), 0, -1, 0),
            E::INVALID_ARGUMENT,
        ),
        (
            "negative file offset → INVALID_ARGUMENT",
            one(rd(&small), -4096, 10, 0),
            E::INVALID_ARGUMENT,
        ),
        (
            "negative buffer offset → INVALID_ARGUMENT",
            one(rd(&small), 0, 10, -1),
            E::INVALID_ARGUMENT,
        ),
        (
            "i64::MIN length → INVALID_ARGUMENT",
            one(rd(&small), 0, i64::MIN, 0),
            E::INVALID_ARGUMENT,
        ),
        (
            "offset + length overflows → RANGE",
            one(rd(&small), i64::MAX, i64::MAX, 0),
            E::RANGE,
        ),
        (
            "buffer offset + length overflows → BAD_SEGMENTS",
            one(rd(&small), 0, 100, i64::MAX - 10),
            E::BAD_SEGMENTS,
        ),
        (
            "segments overlap in the buffer → BAD_SEGMENTS",
            s::request(
                vec![
                    s::segment(rd(&small), 0, 8192, 0),
                    s::segment(rd(&small), 0, 100, 8191),
                ],
                "auto",
                IoMode::AUTO,
                "vts-bad",
            ),
            E::BAD_SEGMENTS,
        ),
        (
            "two segments at the same buffer offset → BAD_SEGMENTS",
            s::request(
                vec![
                    s::segment(rd(&small), 0, 1, 4096),
                    s::segment(rd(&small), 1, 1, 4096),
                ],
                "auto",
                IoMode::AUTO,
                "vts-bad",
            ),
            E::BAD_SEGMENTS,
        ),
        (
            "no segments → BAD_SEGMENTS",
            s::request(vec![], "auto", IoMode::AUTO, "vts-bad"),
            E::BAD_SEGMENTS,
        ),
        (
            "unknown heap heap:vts-none → UNKNOWN_BACKEND",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#backend = "heap:vts-none".into();
                r
            },
            E::UNKNOWN_BACKEND,
        ),
        (
            "unknown backend name → UNKNOWN_BACKEND",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#backend = "ion".into();
                r
            },
            E::UNKNOWN_BACKEND,
        ),
        (
            "io mode 7 → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#ioMode = IoMode(7);
                r
            },
            E::INVALID_ARGUMENT,
        ),
        (
            "name of 256 bytes → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#name = "n".repeat(256);
                r
            },
            E::INVALID_ARGUMENT,
        ),
        (
            "name with a NUL → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#name = "a\0b".into();
                r
            },
            E::INVALID_ARGUMENT,
        ),
        (
            "gather size not a page multiple → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#tunables.r#gatherSize = (1 << 20) + 1;
                r
            },
            E::INVALID_ARGUMENT,
        ),
        (
            "negative chunk size → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#tunables.r#chunkSize = -65536;
                r
            },
            E::INVALID_ARGUMENT,
        ),
        (
            "negative reader threads → INVALID_ARGUMENT",
            {
                let mut r = one(rd(&small), 0, 0, 0);
                r.r#tunables.r#readerThreads = -1;
                r
            },
            E::INVALID_ARGUMENT,
        ),
    ];
    for (name, req, want) in &cases {
        g.case(name, || refused(svc, req, *want, &small));
    }
    g.case(
        "very many segments (max + 1, one fd each) → BAD_SEGMENTS",
        || many_segments(svc, &small),
    );
    caps_cases(&mut g, svc, &small);
    g.case(
        "heap buffer at this caller's cap read direct: no room for a bounce block → CALLER_CAP",
        || working_over_cap(svc, &small),
    );
    g.case(
        "256 MiB chunks, 64 readers, 1 bounce buffer: working memory sized to the file, charged",
        || inflating_tunables(svc, &dir, &small),
    );
    g.case("releaseBuffer of an unknown id → NOT_FOUND", || match svc
        .r#releaseBuffer(0x7eed_0000_0000_0001)
    {
        Err(st) => match Failure::from_status(st) {
            Failure::Code(c, _) if c == E::NOT_FOUND.0 => Ok(()),
            other => Err(format!("expected NOT_FOUND, got {other}")),
        },
        Ok(()) => Err("releasing an unknown buffer succeeded".into()),
    });
    g.case("file truncated during the load → FILE_CHANGED", || {
        truncated_during_load(svc, &dir, &small)
    });
    g.case(
        "file replaced (renamed over) during the load → loads the original bytes",
        || replaced_during_load(svc, &dir),
    );
    g.case(
        "cancel twice → exactly one CANCELLED, the second cancel succeeds",
        || cancel_twice(svc, &dir),
    );
    g.case(
        "cancel after completion → false, the buffer stays valid",
        || cancel_after_completion(svc, &small),
    );
    g
}

fn o_path(svc: &Svc, fd: OwnedFd, small: &PatternFile) -> CaseResult {
    let base = s::baseline(svc)?;
    match s::load(svc, &one(Some(fd), 0, 0, 0)) {
        Err(Failure::Code(c, _)) if c == E::BAD_FD.0 => {}
        Err(Failure::Transport(s::FAILED_TRANSACTION)) => {}
        other => {
            return Err(format!(
                "expected BAD_FD or a refused transaction, got {:?}",
                other.map(|r| r.r#sizeBytes)
            ))
        }
    }
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    still_serving(svc, small)
}

fn many_segments(svc: &Svc, small: &PatternFile) -> CaseResult {
    let st = svc
        .r#debugDump(&[])
        .map_err(|e| Failure::from_status(e).to_string())?;
    let max: usize = st
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("max_segments")
                .map(|v| v.trim_start_matches([' ', '=', ':']).trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    // One fd per segment: binder duplicates each into the service, so a request over the
    // limit also tests that those fds are closed again.
    // This process holds max + 1 fds at once: lift its own soft limit first.
    let _ = dmaload_abi::rlimit::raise_open_files();
    let mut segs = Vec::with_capacity(max + 1);
    for i in 0..=max {
        let fd = small
            .open(false)
            .map_err(|e| format!("opening fd {i} of {}: {e}", max + 1))?;
        segs.push(s::segment(Some(fd), 0, 1, i as i64 * 4096));
    }
    let req = s::request(segs, "auto", IoMode::AUTO, "vts-many");
    match refused(svc, &req, E::BAD_SEGMENTS, small) {
        Err(e) if e.contains("transport") => Err(format!(
            "{} segments: {e} (the transaction itself failed: the service cannot receive its own limit of fds)",
            max + 1
        )),
        other => other,
    }
}

fn caps_cases(g: &mut Group, svc: &Svc, small: &PatternFile) {
    let backends = svc.r#getBackends().map(|b| {
        b.into_iter()
            .map(|b| (b.r#name, b.r#maxBufferBytes))
            .collect::<Vec<_>>()
    });
    let Ok(backends) = backends else {
        g.case("getBackends", || Err("getBackends failed".into()));
        return;
    };
    let largest = backends.iter().map(|b| b.1).max().unwrap_or(0);
    // udmabuf's own limit is lower; over it the engine falls back to another backend
    // (reported in the stats), so only the service-wide maximum is a refusal.
    for (name, max) in backends.into_iter().filter(|b| b.1 == largest) {
        // One byte placed at the cap: the buffer is one page over it. Refused before any
        // allocation (a real allocation of that size would take seconds and show in the
        // system's dma-buf totals, which the baseline check compares).
        g.case(
            &format!("{name}: buffer one page over its max ({max} B) → TOO_LARGE"),
            || {
                let mut r = one(small.open(false).ok(), 0, 1, max);
                r.r#backend = name.clone();
                refused(svc, &r, E::TOO_LARGE, small)
            },
        );
    }
    g.case(
        "buffer over this caller's cap → TOO_LARGE or CALLER_CAP",
        || {
            let u = svc
                .r#getUsage()
                .map_err(|e| Failure::from_status(e).to_string())?;
            let r = one(small.open(false).ok(), 0, 1, u.r#capBytes);
            match s::load(svc, &r) {
                Err(Failure::Code(c, _)) if c == E::TOO_LARGE.0 || c == E::CALLER_CAP.0 => Ok(()),
                Err(other) => Err(format!("got {other}")),
                Ok(res) => {
                    let _ = svc.r#releaseBuffer(res.r#bufferId);
                    Err("a buffer over the caller cap was loaded".into())
                }
            }
        },
    );
}

/// A heap buffer that fills this caller's byte cap, its one page read from an O_DIRECT fd:
/// the bounce block the read needs does not fit beside it. Refused before anything is
/// allocated (the baseline includes the system's dma-bufs).
fn working_over_cap(svc: &Svc, small: &PatternFile) -> CaseResult {
    const PAGE: i64 = 4096;
    let cap = svc
        .r#getUsage()
        .map_err(|e| Failure::from_status(e).to_string())?
        .r#capBytes;
    let heap_max = svc
        .r#getBackends()
        .map_err(|e| Failure::from_status(e).to_string())?
        .into_iter()
        .find(|b| b.r#name == "heap:system")
        .map(|b| b.r#maxBufferBytes)
        .ok_or("no heap:system backend")?;
    let fill = cap / PAGE * PAGE;
    ensure!(
        heap_max >= fill,
        "heap:system holds at most {heap_max} bytes, less than this caller's cap {cap}"
    );
    let fd = small
        .open(true)
        .map_err(|e| format!("open O_DIRECT: {e}"))?;
    let mut r = one(Some(fd), 0, PAGE, fill - PAGE);
    r.r#backend = "heap:system".into();
    refused_saying(svc, &r, E::CALLER_CAP, "working memory", small)
}

/// Tunables that asked the old ring for max(1, 64 + 1) blocks of 256 MiB for a 16 MiB file:
/// the ring's blocks are sized to the file's chunk and it holds at most one more block than
/// there are chunks; what it holds is charged while the load runs and reported.
fn inflating_tunables(svc: &Svc, dir: &std::path::Path, small: &PatternFile) -> CaseResult {
    let f = PatternFile::create(dir, "inflate.bin", 35, 16 << 20).map_err(|e| e.to_string())?;
    let base = s::baseline(svc)?;
    let fd = f.open(true).map_err(|e| format!("open O_DIRECT: {e}"))?;
    let mut r = s::whole_file_request(fd, "heap:system", IoMode::DIRECT, "vts-inflate");
    r.r#tunables.r#chunkSize = 256 << 20;
    r.r#tunables.r#readerThreads = 64;
    r.r#tunables.r#bounceBuffers = 1;
    let res = s::load(svc, &r).map_err(|e| e.to_string())?;
    let (working, size, id) = (res.r#stats.r#workingBytes, res.r#sizeBytes, res.r#bufferId);
    let fd = s::buffer_fd(&res)?;
    // The result's own fd keeps the dma-buf alive too.
    drop(res);
    let content = s::verify_content(
        &fd,
        size as u64,
        &[s::Piece {
            seed: 35,
            file_offset: 0,
            len: 16 << 20,
            at: 0,
        }],
    );
    svc.r#releaseBuffer(id)
        .map_err(|e| Failure::from_status(e).to_string())?;
    drop(fd);
    content?;
    // One chunk of 16 MiB: two blocks of 16 MiB and its alignment at most, not 512 MiB.
    ensure!(
        working > 16 << 20 && working <= 2 * ((16 << 20) + (64 << 10)),
        "working memory {working} bytes for one 16 MiB chunk"
    );
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    still_serving(svc, small)
}

fn slow_file(dir: &std::path::Path, name: &str, seed: u64) -> Result<PatternFile, String> {
    // 192 MiB read buffered in 1 MiB chunks: long enough in the device to act during it.
    PatternFile::create(dir, name, seed, 192 << 20).map_err(|e| e.to_string())
}

fn wait_progress(rec: &s::Recorder) -> CaseResult {
    for _ in 0..2000 {
        {
            let ev = rec.events.lock().unwrap_or_else(|p| p.into_inner());
            if !ev.progress.is_empty() || ev.ends > 0 {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("no progress within 10 s".into())
}

fn truncated_during_load(svc: &Svc, dir: &std::path::Path, small: &PatternFile) -> CaseResult {
    let f = slow_file(dir, "truncate-me.bin", 31)?;
    let base = s::baseline(svc)?;
    let (_h, rec) = s::start(svc, &s::slow_request(&f, "memfd")?).map_err(|e| e.to_string())?;
    wait_progress(&rec)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .map_err(|e| e.to_string())?;
    file.set_len(4096).map_err(|e| e.to_string())?;
    drop(file);
    let ev = rec.wait(Duration::from_secs(120))?;
    let outcome = match (&ev.error, &ev.complete) {
        (Some((c, _)), _) if *c == E::FILE_CHANGED.0 => Ok(()),
        (Some((c, m)), _) => Err(format!(
            "got {}({c}): {m}; expected FILE_CHANGED",
            s::code_name(*c)
        )),
        (None, Some(_)) => {
            Err("the load finished before the truncation: make the file larger".into())
        }
        (None, None) => Err("no outcome".into()),
    };
    drop(ev);
    let _ = std::fs::remove_file(&f.path);
    outcome?;
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    still_serving(svc, small)
}

fn replaced_during_load(svc: &Svc, dir: &std::path::Path) -> CaseResult {
    let f = slow_file(dir, "replace-me.bin", 32)?;
    let other = PatternFile::create(dir, "replacement.bin", 33, 4096).map_err(|e| e.to_string())?;
    let base = s::baseline(svc)?;
    let (_h, rec) = s::start(svc, &s::slow_request(&f, "memfd")?).map_err(|e| e.to_string())?;
    wait_progress(&rec)?;
    std::fs::rename(&other.path, &f.path).map_err(|e| e.to_string())?;
    let mut ev = rec.wait(Duration::from_secs(120))?;
    if let Some((c, m)) = &ev.error {
        return Err(format!(
            "{}({c}): {m}: the fd still names the original file",
            s::code_name(*c)
        ));
    }
    let done = ev.complete.take().ok_or("no result")?;
    let fd = done.fd?;
    // The caller's fd names the original inode: its bytes are what must arrive.
    s::verify_content(
        &fd,
        done.size as u64,
        &[s::Piece {
            seed: 32,
            file_offset: 0,
            len: 192 << 20,
            at: 0,
        }],
    )?;
    svc.r#releaseBuffer(done.buffer_id)
        .map_err(|e| Failure::from_status(e).to_string())?;
    drop(fd);
    drop(ev);
    s::back_to_baseline(svc, &base, Duration::from_secs(2)).map(|_| ())
}

fn cancel_twice(svc: &Svc, dir: &std::path::Path) -> CaseResult {
    let f = slow_file(dir, "cancel.bin", 34)?;
    let base = s::baseline(svc)?;
    let (h, rec) = s::start(svc, &s::slow_request(&f, "memfd")?).map_err(|e| e.to_string())?;
    wait_progress(&rec)?;
    let first = h
        .r#cancel()
        .map_err(|e| Failure::from_status(e).to_string())?;
    let second = h
        .r#cancel()
        .map_err(|e| format!("second cancel failed: {}", Failure::from_status(e)))?;
    let ev = rec.wait(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(100));
    ensure!(ev.ends == 1, "{} end callbacks", ev.ends);
    match &ev.error {
        Some((c, _)) if *c == E::CANCELLED.0 => {
            ensure!(first, "the first cancel of a running load returned false");
            // The second cancel may still see the load winding down: it only must not fail.
            let _ = second;
        }
        Some((c, m)) => {
            return Err(format!(
                "{}({c}): {m}; expected CANCELLED",
                s::code_name(*c)
            ))
        }
        None => return Err("the load completed despite the cancel".into()),
    }
    drop(ev);
    s::back_to_baseline(svc, &base, Duration::from_secs(2)).map(|_| ())
}

fn cancel_after_completion(svc: &Svc, small: &PatternFile) -> CaseResult {
    let base = s::baseline(svc)?;
    let fd = small.open(false).map_err(|e| e.to_string())?;
    let (h, rec) = s::start(
        svc,
        &s::whole_file_request(fd, "auto", IoMode::AUTO, "vts-done"),
    )
    .map_err(|e| e.to_string())?;
    let mut ev = rec.wait(Duration::from_secs(30))?;
    let done = ev
        .complete
        .take()
        .ok_or_else(|| format!("no result: {:?}", ev.error))?;
    drop(ev);
    let cancelled = h.r#cancel().map_err(|e| {
        format!(
            "cancel after completion failed: {}",
            Failure::from_status(e)
        )
    })?;
    ensure!(!cancelled, "cancel after completion returned true");
    let fd = done.fd?;
    s::verify_content(
        &fd,
        done.size as u64,
        &[s::Piece {
            seed: small.seed,
            file_offset: 0,
            len: small.size,
            at: 0,
        }],
    )?;
    svc.r#releaseBuffer(done.buffer_id)
        .map_err(|e| Failure::from_status(e).to_string())?;
    drop(fd);
    s::back_to_baseline(svc, &base, Duration::from_secs(2)).map(|_| ())
}
