//! Groups `load`, `faults` and `caps`: 8 concurrent clients (separate processes, separate
//! uids) × mixed loads; a client killed mid-load and while holding a buffer; the service
//! killed mid-load and restarted by its supervisor; requests that together exceed memory;
//! one caller at its byte cap next to another that is not.
//! Workers are this binary started again with `--worker ...`; those that stand for other
//! callers run as their own uid (`worker_as`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmaload_vts::ensure;
use dmaload_vts::fixtures::PatternFile;
use dmaload_vts::harness::{figure, Group};
use dmaload_vts::probe;

use crate::service::{self as s, ErrorCode as E, Failure, IoMode, Svc};
use crate::Options;

/// Sizes of the mixed loads: small and odd, so 8 × hundreds fit the CI budget.
const LOAD_SIZES: &[u64] = &[1, 4095, 4097, 65_537, 300_001, (1 << 20) + 7, (2 << 20) - 3];
const WORKERS: u32 = 8;
/// The faults group's kill storm: rounds × clients, each client with two slow async loads.
const STORM_ROUNDS: u32 = 12;
const STORM_CLIENTS: u32 = 4;
const STORM_LOADS: usize = 2;
/// Async loads per caller in the case of loads the engine refuses at once.
const QUICK_ASYNC: u32 = 100;
/// Uids of the `load` group's clients (10000 + worker), the `caps` group's (10100 + worker)
/// and the two callers of the per-uid cap case.
const LOAD_UID: u32 = 10_000;
const CAPS_UID: u32 = 10_100;
const CAP_HOLDER_UID: u32 = 10_200;
const CAP_NEIGHBOUR_UID: u32 = 10_201;
/// Uids of the kill storm's clients (10300 + client).
const STORM_UID: u32 = 10_300;

fn worker_cmd(args: &[String]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "dmaload-vts".into());
    let mut c = Command::new(exe);
    c.args(args);
    c
}

/// A worker that is a caller of its own: the child sets its gid and uid (dropping root's
/// supplementary groups) between fork and exec, so the fresh binary opens the binder device
/// and makes every call as `uid`; nothing binder-related crosses the exec.
pub(crate) fn worker_as(uid: u32, args: &[String]) -> Command {
    let mut c = worker_cmd(args);
    c.uid(uid).gid(uid);
    c
}

/// This process's effective uid, which the service must see as the caller's.
fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Fails unless the service sees this process as `own_uid()`.
fn check_identity(svc: &Svc) -> Result<(), String> {
    let usage = svc
        .r#getUsage()
        .map_err(|e| format!("getUsage: {}", Failure::from_status(e)))?;
    let me = own_uid();
    ensure!(
        u32::try_from(usage.r#uid).ok() == Some(me),
        "the service sees uid {}, this worker runs as uid {me}",
        usage.r#uid
    );
    println!("uid {me}");
    Ok(())
}

fn files(o: &Options) -> Result<Vec<PatternFile>, String> {
    let dir = o.dir.join("load");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    LOAD_SIZES
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            PatternFile::create(&dir, &format!("l-{size}.bin"), 500 + i as u64, size)
                .map_err(|e| e.to_string())
        })
        .collect()
}

pub fn run_load(o: &Options, svc: &Svc) -> Group {
    let mut g = Group::new("load");
    if let Err(e) = files(o) {
        {
            g.case("fixtures", || Err(e));
            return g;
        }
    };
    let base = s::baseline(svc);
    let binder_errors_before = probe::binder_ref_errors().len();
    let mut totals = (0u64, 0u64, 0u64, 0u64); // loads, cancelled, failed, bytes
    let mut wall = Duration::ZERO;
    let mut busy = 0u64;
    g.case(
        &format!(
            "{WORKERS} clients × {} mixed loads: zero unexpected failures",
            o.loads_per_client
        ),
        || {
            let started = Instant::now();
            let mut children: Vec<(u32, Child)> = Vec::new();
            for w in 0..WORKERS {
                let child = worker_as(
                    LOAD_UID + w,
                    &[
                        "--worker".into(),
                        "mixed".into(),
                        w.to_string(),
                        o.loads_per_client.to_string(),
                        o.dir.display().to_string(),
                    ],
                )
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("spawn worker {w}: {e}"))?;
                children.push((w, child));
            }
            let mut bad = Vec::new();
            let mut uids = Vec::new();
            for (w, child) in children {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout);
                uids.extend(
                    text.lines()
                        .find_map(|l| l.strip_prefix("uid "))
                        .and_then(|v| v.trim().parse::<u32>().ok()),
                );
                busy += text
                    .lines()
                    .find_map(|l| l.strip_prefix("busy-retries "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let last = text
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("worker "))
                    .unwrap_or("");
                // "worker W: loads L cancelled C failed F bytes B"
                let nums: Vec<u64> = last
                    .split_whitespace()
                    .filter_map(|t| t.parse().ok())
                    .collect();
                if nums.len() == 4 {
                    totals.0 += nums[0];
                    totals.1 += nums[1];
                    totals.2 += nums[2];
                    totals.3 += nums[3];
                }
                if !out.status.success() || nums.len() != 4 {
                    bad.push(format!(
                        "worker {w} ({}): {}",
                        out.status,
                        text.lines()
                            .filter(|l| l.contains("FAIL"))
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                }
            }
            wall = started.elapsed();
            ensure!(bad.is_empty(), "{}", bad.join("; "));
            ensure!(totals.2 == 0, "{} unexpected failures", totals.2);
            uids.sort_unstable();
            uids.dedup();
            ensure!(
                uids.len() == WORKERS as usize,
                "the service saw {} distinct caller uids ({uids:?}), not {WORKERS}",
                uids.len()
            );
            Ok(())
        },
    );
    figure(
        "load: loads completed / cancelled / unexpected failures",
        format!("{} / {} / {}", totals.0, totals.1, totals.2),
    );
    figure(
        "load: BUSY answers retried (8 uids; 4 loads per caller, 8 in the service at once)",
        busy,
    );
    if !wall.is_zero() {
        figure(
            "load: throughput (8 clients, mixed small loads, byte-exact checks included)",
            format!(
                "{:.1} loads/s, {:.1} MB/s over {:.1} s",
                (totals.0 + totals.1) as f64 / wall.as_secs_f64(),
                totals.3 as f64 / wall.as_secs_f64() / 1e6,
                wall.as_secs_f64()
            ),
        );
    }
    // Regression: async loads that ended before startLoad's reply went out made the binder
    // driver free the callback's handle early (dmaloadd's fix: service.rs `startLoad`). Loads
    // that the engine refuses at once, from 8 callers at the same time, end that early.
    g.case(
        &format!(
            "{WORKERS} callers × {QUICK_ASYNC} async loads that fail at once: each onError RANGE"
        ),
        || {
            let mut children = Vec::new();
            for w in 0..WORKERS {
                let child = worker_as(
                    LOAD_UID + w,
                    &[
                        "--worker".into(),
                        "quick-async".into(),
                        QUICK_ASYNC.to_string(),
                        o.dir.display().to_string(),
                    ],
                )
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("spawn worker {w}: {e}"))?;
                children.push(child);
            }
            let mut bad = Vec::new();
            for child in children {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    let text = String::from_utf8_lossy(&out.stdout);
                    bad.push(
                        text.lines()
                            .filter(|l| l.contains("FAIL"))
                            .take(2)
                            .collect::<Vec<_>>()
                            .join(" | "),
                    );
                }
            }
            ensure!(bad.is_empty(), "{}", bad.join("; "));
            Ok(())
        },
    );
    g.case(
        "the binder driver reports no handle refcount errors (bad handle, invalid ref)",
        || {
            let errors = probe::binder_ref_errors();
            let new = &errors[binder_errors_before.min(errors.len())..];
            ensure!(
                new.is_empty(),
                "{} binder refcount errors in the kernel log, e.g. {:?}",
                new.len(),
                new.first()
            );
            Ok(())
        },
    );
    g.case(
        "service fds, outstanding bytes, dma-bufs back to baseline",
        || {
            let base = base.clone()?;
            let took = s::back_to_baseline(svc, &base, Duration::from_secs(5))?;
            figure(
                "load: time until back to baseline",
                format!("{} ms", took.as_millis()),
            );
            Ok(())
        },
    );
    g
}

/// A worker: `--worker mixed W COUNT DIR` (as uid 10000+W), `big`, `caller`, `hold-slow`,
/// `hold-done`, `own-dump` (bad-input), `reuse-load`, `reuse-hold` (reuse).
pub fn worker(args: &[String]) -> i32 {
    WorkerLog::install();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let result = match mode {
        "mixed" => worker_mixed(args),
        "quick-async" => worker_quick_async(args),
        "hold-slow" => worker_hold_slow(args),
        "storm" => worker_storm(args),
        "hold-done" => worker_hold_done(args),
        "big" => worker_big(args),
        "caller" => worker_caller(args),
        "own-dump" => crate::bad_input::worker_own_dump(args),
        "reuse-load" => crate::reuse::worker_load(args),
        "reuse-hold" => crate::reuse::worker_hold(args),
        _ => Err(format!("unknown worker mode {mode:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("FAIL {e}");
            1
        }
    }
}

/// `--worker quick-async COUNT DIR`: COUNT async loads of a range past the end of a 1-byte
/// file, one after the other; each must end in onError RANGE.
fn worker_quick_async(args: &[String]) -> Result<(), String> {
    let count: u32 = args.get(1).and_then(|v| v.parse().ok()).ok_or("count")?;
    let one = std::path::Path::new(args.get(2).ok_or("dir")?).join("load/l-1.bin");
    let svc = s::connect(Duration::from_secs(10))?;
    check_identity(&svc)?;
    for i in 0..count {
        let file = std::fs::File::open(&one).map_err(|e| format!("{}: {e}", one.display()))?;
        let req = s::request(
            vec![s::segment(Some(file.into()), 8, 1, 0)],
            "auto",
            IoMode::AUTO,
            "vts-quick",
        );
        let (_handle, rec) = s::start(&svc, &req).map_err(|e| format!("startLoad {i}: {e}"))?;
        let mut ev = rec.wait(Duration::from_secs(30))?;
        match ev.error.take() {
            Some((code, _)) if code == E::RANGE.0 => {}
            other => {
                return Err(format!(
                    "load {i}: expected onError RANGE, got {other:?} (complete: {})",
                    ev.complete.is_some()
                ))
            }
        }
    }
    Ok(())
}

fn worker_mixed(args: &[String]) -> Result<(), String> {
    let w: u32 = args
        .get(1)
        .and_then(|v| v.parse().ok())
        .ok_or("worker index")?;
    let count: u32 = args.get(2).and_then(|v| v.parse().ok()).ok_or("count")?;
    let dir = std::path::PathBuf::from(args.get(3).ok_or("dir")?).join("load");
    let files: Vec<PatternFile> = LOAD_SIZES
        .iter()
        .enumerate()
        .map(|(i, &size)| PatternFile {
            path: dir.join(format!("l-{size}.bin")),
            seed: 500 + i as u64,
            size,
        })
        .collect();
    let svc = s::connect(Duration::from_secs(10))?;
    check_identity(&svc)?;
    let backends: Vec<String> = crate::function::backends(&svc)?
        .into_iter()
        .map(|b| b.0)
        .collect();
    let mut rng = Xorshift::new(0x9E37_79B9u64 ^ u64::from(w) << 32);
    let mut next = |n: u64| rng.below(n);
    let (mut loads, mut cancelled, mut failed, mut bytes, mut busy) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for i in 0..count {
        let f = &files[next(files.len() as u64) as usize];
        let backend = &backends[next(backends.len() as u64) as usize];
        let (io, direct) = match next(3) {
            0 => (IoMode::AUTO, true),
            1 => (IoMode::DIRECT, true),
            _ => (IoMode::BUFFERED, false),
        };
        let fd = f.open(direct).map_err(|e| format!("open: {e}"))?;
        let req = s::whole_file_request(fd, backend, io, "vts-load");
        let kind = next(10);
        let outcome: Result<Option<(std::os::fd::OwnedFd, i64, i64)>, String> = if kind < 5 {
            loop {
                match s::load(&svc, &req) {
                    Ok(r) => {
                        break s::buffer_fd(&r).map(|fd| Some((fd, r.r#sizeBytes, r.r#bufferId)))
                    }
                    // 8 clients, 8 loads at once in the service: BUSY says "retry soon".
                    Err(Failure::Code(c, _)) if c == E::BUSY.0 => {
                        busy += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => break Err(e.to_string()),
                }
            }
        } else {
            loop {
                let attempt = match s::start(&svc, &req) {
                    Ok((h, rec)) => {
                        if kind == 9 {
                            let _ = h.r#cancel();
                        }
                        let mut ev = rec.wait(Duration::from_secs(60))?;
                        match (ev.complete.take(), ev.error.take()) {
                            (Some(c), _) => {
                                c.fd.map(|fd| Some((fd, c.size, c.buffer_id)))
                                    .map_err(|e| (0, e))
                            }
                            (None, Some((code, _))) if kind == 9 && code == E::CANCELLED.0 => {
                                Ok(None)
                            }
                            (None, Some((code, m))) => {
                                Err((code, format!("{}({code}): {m}", s::code_name(code))))
                            }
                            (None, None) => Err((0, "no outcome".into())),
                        }
                    }
                    Err(Failure::Code(c, m)) => Err((c, format!("{}({c}): {m}", s::code_name(c)))),
                    Err(e) => Err((0, e.to_string())),
                };
                match attempt {
                    Err((c, _)) if c == E::BUSY.0 => {
                        busy += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    other => break other.map_err(|e| e.1),
                }
            }
        };
        match outcome {
            Ok(Some((fd, size, id))) => {
                let piece = s::Piece {
                    seed: f.seed,
                    file_offset: 0,
                    len: f.size,
                    at: 0,
                };
                if let Err(e) = s::verify_content(&fd, size as u64, &[piece]) {
                    failed += 1;
                    println!("FAIL load {i} {backend} {} B: {e}", f.size);
                }
                if let Err(e) = svc.r#releaseBuffer(id) {
                    failed += 1;
                    println!("FAIL release: {}", Failure::from_status(e));
                }
                loads += 1;
                bytes += f.size;
            }
            Ok(None) => cancelled += 1,
            Err(e) => {
                failed += 1;
                println!("FAIL load {i} {backend} {} B: {e}", f.size);
            }
        }
    }
    println!("busy-retries {busy}");
    println!("worker {w}: loads {loads} cancelled {cancelled} failed {failed} bytes {bytes}");
    if failed > 0 {
        return Err(format!("{failed} failures"));
    }
    Ok(())
}

/// A pattern file of the faults group (in `DIR/faults`).
fn faults_file(
    o_dir: &std::path::Path,
    name: &str,
    seed: u64,
    size: u64,
) -> Result<PatternFile, String> {
    let dir = o_dir.join("faults");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    PatternFile::create(&dir, name, seed, size).map_err(|e| e.to_string())
}

fn slow_file(o_dir: &std::path::Path) -> Result<PatternFile, String> {
    faults_file(o_dir, "slow.bin", 77, 256 << 20)
}

/// The kill storm's file: 64 MiB, so a load reports progress every megabyte or so.
fn storm_file(o_dir: &std::path::Path) -> Result<PatternFile, String> {
    faults_file(o_dir, "storm.bin", 78, 64 << 20)
}

fn slow_request(f: &PatternFile) -> Result<s::LoadRequest, String> {
    s::slow_request(f, "heap:system")
}

/// xorshift64: the workers' and the kill storm's deterministic choices.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1)
    }

    /// The next number below `n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `--worker hold-slow DIR`: starts a slow load, says "progress", then waits to be killed.
fn worker_hold_slow(args: &[String]) -> Result<(), String> {
    let f = slow_file(std::path::Path::new(args.get(1).ok_or("dir")?))?;
    hold_loads(&f, 1)
}

/// `--worker storm DIR`: `STORM_LOADS` loads of the storm file (the kill storm's clients, own uids).
fn worker_storm(args: &[String]) -> Result<(), String> {
    let f = storm_file(std::path::Path::new(args.get(1).ok_or("dir")?))?;
    hold_loads(&f, STORM_LOADS)
}

/// Starts `loads` slow loads of `f`, says "progress" once each has reported some, then waits
/// to be killed.
fn hold_loads(f: &PatternFile, loads: usize) -> Result<(), String> {
    let svc = s::connect(Duration::from_secs(10))?;
    let mut started = Vec::new();
    for _ in 0..loads {
        started.push(s::start(&svc, &slow_request(f)?).map_err(|e| e.to_string())?);
    }
    let reported = |rec: &s::Recorder| {
        let events = rec.events.lock().unwrap_or_else(|p| p.into_inner());
        !events.progress.is_empty()
    };
    while !started.iter().all(|(_, rec)| reported(rec)) {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("progress");
    std::thread::sleep(Duration::from_secs(120));
    Err("not killed".into())
}

/// `--worker hold-done`: loads 64 MiB into a dma-heap, keeps the fd, says "holding", waits.
fn worker_hold_done(args: &[String]) -> Result<(), String> {
    let one = std::path::Path::new(args.get(1).ok_or("dir")?).join("load/l-1.bin");
    let svc = s::connect(Duration::from_secs(10))?;
    // A 64 MiB buffer: one byte at the end (the rest zero-filled by the heap).
    let exe = std::fs::File::open(&one).map_err(|e| format!("{}: {e}", one.display()))?;
    let r = s::load(
        &svc,
        &s::request(
            vec![s::segment(Some(exe.into()), 0, 1, (64 << 20) - 1)],
            "heap:system",
            IoMode::AUTO,
            "vts-hold",
        ),
    )
    .map_err(|e| e.to_string())?;
    let _fd = s::buffer_fd(&r)?;
    println!("holding");
    std::thread::sleep(Duration::from_secs(120));
    Err("not killed".into())
}

/// `--worker big W BYTES DIR`: one load of a BYTES buffer (as uid 10100+W); prints the outcome.
fn worker_big(args: &[String]) -> Result<(), String> {
    let bytes: i64 = args.get(2).and_then(|v| v.parse().ok()).ok_or("bytes")?;
    let one = std::path::Path::new(args.get(3).ok_or("dir")?).join("load/l-1.bin");
    let exe = std::fs::File::open(&one).map_err(|e| format!("{}: {e}", one.display()))?;
    let svc = s::connect(Duration::from_secs(10))?;
    check_identity(&svc)?;
    let req = s::request(
        vec![s::segment(Some(exe.into()), 0, 1, bytes - 1)],
        "heap:system",
        IoMode::AUTO,
        "vts-big",
    );
    match s::load(&svc, &req) {
        Ok(r) => {
            println!("outcome loaded {}", r.r#sizeBytes);
            let _ = svc.r#releaseBuffer(r.r#bufferId);
        }
        Err(Failure::Code(c, _)) => println!("outcome refused {}", s::code_name(c)),
        Err(other) => println!("outcome failed {other}"),
    }
    Ok(())
}

/// `--worker caller DIR`: a caller that does what its stdin says, one answer line each:
/// `usage` → `usage charged=C cap=K`; `load BYTES` → a BYTES heap buffer (one file byte at
/// the end) kept until `release`: `loaded SIZE`, `refused CODE` or `failed ...`;
/// `release` → `released N`. Ends at EOF.
fn worker_caller(args: &[String]) -> Result<(), String> {
    let one = std::path::Path::new(args.get(1).ok_or("dir")?).join("load/l-1.bin");
    let svc = s::connect(Duration::from_secs(10))?;
    check_identity(&svc)?;
    let mut held: Vec<(std::os::fd::OwnedFd, i64)> = Vec::new();
    println!("ready");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["usage"] => {
                let u = svc
                    .r#getUsage()
                    .map_err(|e| format!("getUsage: {}", Failure::from_status(e)))?;
                println!("usage charged={} cap={}", u.r#chargedBytes, u.r#capBytes);
            }
            ["load", bytes] => {
                let bytes: i64 = bytes.parse().map_err(|_| format!("bad size {bytes}"))?;
                let file =
                    std::fs::File::open(&one).map_err(|e| format!("{}: {e}", one.display()))?;
                let req = s::request(
                    vec![s::segment(Some(file.into()), 0, 1, bytes - 1)],
                    "heap:system",
                    IoMode::AUTO,
                    "vts-caller",
                );
                match s::load(&svc, &req) {
                    Ok(r) => {
                        held.push((s::buffer_fd(&r)?, r.r#bufferId));
                        println!("loaded {}", r.r#sizeBytes);
                    }
                    Err(Failure::Code(c, _)) => println!("refused {}", s::code_name(c)),
                    Err(other) => println!("failed {other}"),
                }
            }
            ["release"] => {
                let n = held.len();
                for (fd, id) in held.drain(..) {
                    svc.r#releaseBuffer(id)
                        .map_err(|e| format!("release {id}: {}", Failure::from_status(e)))?;
                    drop(fd);
                }
                println!("released {n}");
            }
            _ => return Err(format!("unknown command {line:?}")),
        }
    }
    Ok(())
}

/// The parent's end of a `--worker caller` process running as another uid.
struct CallerProcess {
    uid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl CallerProcess {
    fn spawn(uid: u32, dir: &std::path::Path) -> Result<CallerProcess, String> {
        let mut child = worker_as(
            uid,
            &[
                "--worker".into(),
                "caller".into(),
                dir.display().to_string(),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn a caller as uid {uid}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut caller = CallerProcess {
            uid,
            child,
            stdin,
            lines,
        };
        caller.answer("ready")?;
        Ok(caller)
    }

    /// The next line that starts with `prefix` (earlier ones are its chatter).
    fn answer(&mut self, prefix: &str) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) if l.starts_with(prefix) => return Ok(l),
                Ok(l) if l.starts_with("FAIL") => {
                    return Err(format!("caller uid {}: {l}", self.uid))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "caller uid {} did not answer {prefix:?} within 60 s",
                        self.uid
                    ))
                }
            }
        }
    }

    /// Sends `command`, returns the answer line.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}").map_err(|e| format!("to caller uid {}: {e}", self.uid))?;
        let prefix = command.split_whitespace().next().unwrap_or("");
        let expected = match prefix {
            "usage" => "usage",
            "load" => "",
            _ => "released",
        };
        if expected.is_empty() {
            // A load answers loaded / refused / failed.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let l = self
                    .lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .map_err(|_| format!("caller uid {} did not answer {command:?}", self.uid))?;
                if ["loaded ", "refused ", "failed ", "FAIL"]
                    .iter()
                    .any(|p| l.starts_with(p))
                {
                    return Ok(l);
                }
            }
        }
        self.answer(expected)
    }

    /// Closes its stdin and waits for it to exit.
    fn finish(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| e.to_string())?;
        ensure!(
            status.success(),
            "caller uid {} exited with {status}",
            self.uid
        );
        Ok(())
    }
}

impl Drop for CallerProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Workers log rsbinder's warnings and errors to stderr (why a connect failed, for one).
struct WorkerLog;

impl WorkerLog {
    fn install() {
        static LOG: WorkerLog = WorkerLog;
        if log::set_logger(&LOG).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    }
}

impl log::Log for WorkerLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("vts worker {} {}: {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn spawn_and_wait_line(mut worker: Command, line: &str) -> Result<Child, String> {
    let mut child = worker
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l == line => return Ok(child),
            Ok(l) if l.starts_with("FAIL") => {
                let _ = child.kill();
                return Err(l);
            }
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                return Err(format!("worker never said {line:?}"));
            }
        }
    }
}

/// Kills `child` and measures until the service is back to `base`.
fn kill_and_time(svc: &Svc, mut child: Child, base: &s::Baseline) -> Result<Duration, String> {
    child.kill().map_err(|e| e.to_string())?;
    let killed = Instant::now();
    let _ = child.wait();
    let within = Duration::from_secs(1).saturating_sub(killed.elapsed());
    s::back_to_baseline(svc, base, within).map(|_| killed.elapsed())
}

pub fn run_faults(o: &Options, svc: &mut Svc) -> Group {
    let mut g = Group::new("faults");
    // The holding client reads a load group file: made here too, so the group runs alone.
    if let Err(e) = files(o) {
        g.case("fixtures", || Err(e));
        return g;
    }
    let dir = o.dir.display().to_string();
    g.case(
        "client killed mid-load: its buffer is freed within 1 s",
        || {
            slow_file(&o.dir)?;
            let base = s::baseline(svc)?;
            let child = spawn_and_wait_line(
                worker_cmd(&["--worker".into(), "hold-slow".into(), dir.clone()]),
                "progress",
            )?;
            let took = kill_and_time(svc, child, &base)?;
            figure(
                "faults: client killed mid-load → everything freed after",
                format!("{} ms", took.as_millis()),
            );
            Ok(())
        },
    );
    g.case(
        "clients killed at random moments while their loads report progress: same service, all freed",
        || {
            storm_file(&o.dir)?;
            let pid = s::service_pid().ok_or("no dmaloadd process")?;
            let base = s::baseline(svc)?;
            let mut rng = Xorshift::new(o.seed);
            let mut slowest = Duration::ZERO;
            for round in 0..STORM_ROUNDS {
                let children = (0..STORM_CLIENTS)
                    .map(|c| {
                        spawn_and_wait_line(
                            worker_as(STORM_UID + c, &["--worker".into(), "storm".into(), dir.clone()]),
                            "progress",
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // A different moment of the loads' progress in every round.
                std::thread::sleep(Duration::from_millis(rng.below(150)));
                let killed = Instant::now();
                for mut child in children {
                    child.kill().map_err(|e| e.to_string())?;
                    let _ = child.wait();
                }
                s::back_to_baseline(svc, &base, Duration::from_secs(2))
                    .map_err(|e| format!("round {round}: {e}"))?;
                slowest = slowest.max(killed.elapsed());
                let now = s::service_pid();
                ensure!(
                    now == Some(pid),
                    "round {round}: dmaloadd {pid} is gone (now {now:?})"
                );
            }
            figure(
                "faults: clients killed during progress callbacks",
                format!(
                    "{} clients × {STORM_LOADS} loads in {STORM_ROUNDS} rounds; all freed within \
                     {} ms; dmaloadd {pid} served throughout",
                    STORM_ROUNDS * STORM_CLIENTS,
                    slowest.as_millis()
                ),
            );
            Ok(())
        },
    );
    g.case(
        "client killed while holding a finished 64 MiB buffer: freed within 1 s",
        || {
            let base = s::baseline(svc)?;
            let child = spawn_and_wait_line(
                worker_cmd(&["--worker".into(), "hold-done".into(), dir.clone()]),
                "holding",
            )?;
            let took = kill_and_time(svc, child, &base)?;
            figure(
                "faults: client holding a buffer killed → freed after",
                format!("{} ms", took.as_millis()),
            );
            Ok(())
        },
    );
    g.case(
        "service killed mid-load: DEAD_OBJECT (no hang), restarted, serves again",
        || {
            let f = slow_file(&o.dir)?;
            let pid = s::service_pid().ok_or("no dmaloadd process")?;
            let (tx, rx) = mpsc::channel();
            let died = Arc::new(AtomicBool::new(false));
            let flag = died.clone();
            let _death = s::link_to_death(svc, move || flag.store(true, Ordering::Release))?;
            let req = slow_request(&f)?;
            let sync_svc = svc.clone();
            std::thread::spawn(move || {
                let _ = tx.send(s::load(&sync_svc, &req).map(|r| r.r#sizeBytes));
            });
            // Kill once the load runs.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let st = svc
                    .r#getServiceState()
                    .map_err(|e| Failure::from_status(e).to_string())?;
                if st.r#loadsInFlight > 0 {
                    break;
                }
                ensure!(Instant::now() < deadline, "the load never started");
                std::thread::sleep(Duration::from_millis(5));
            }
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .map_err(|e| format!("kill dmaloadd: {e}"))?;
            let killed = Instant::now();
            let outcome = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
                "the synchronous load hangs 30 s after the service died".to_string()
            })?;
            match outcome {
                Err(Failure::Transport(s::DEAD_OBJECT)) => {}
                other => return Err(format!("expected DEAD_OBJECT, got {other:?}")),
            }
            figure(
                "faults: DEAD_OBJECT after the service was killed",
                format!("{} ms", killed.elapsed().as_millis()),
            );
            let new_svc =
                s::connect(Duration::from_secs(30)).map_err(|e| format!("no restart: {e}"))?;
            let restarted = killed.elapsed();
            ensure!(died.load(Ordering::Acquire), "no death notification");
            let new_pid = s::service_pid().ok_or("no dmaloadd after the restart")?;
            ensure!(new_pid != pid, "the same pid {pid} still runs");
            *svc = new_svc;
            let fd = f.open(true).map_err(|e| e.to_string())?;
            let r = s::load(
                svc,
                &s::request(
                    vec![s::segment(Some(fd), 0, 1 << 20, 0)],
                    "auto",
                    IoMode::AUTO,
                    "vts-after",
                ),
            )
            .map_err(|e| format!("after the restart: {e}"))?;
            s::verify_content(
                &s::buffer_fd(&r)?,
                r.r#sizeBytes as u64,
                &[s::Piece {
                    seed: f.seed,
                    file_offset: 0,
                    len: 1 << 20,
                    at: 0,
                }],
            )?;
            let _ = svc.r#releaseBuffer(r.r#bufferId);
            figure(
                "faults: service serving again after the kill",
                format!("{} ms", restarted.as_millis()),
            );
            Ok(())
        },
    );
    g
}

pub fn run_caps(o: &Options, svc: &Svc) -> Group {
    let mut g = Group::new("caps");
    // The callers read the load group's files: made here too, so the group runs alone.
    if let Err(e) = files(o) {
        g.case("fixtures", || Err(e));
        return g;
    }
    g.case(
        "requests that together exceed free memory: refused, no OOM kill, same service",
        || {
            let pid = s::service_pid();
            let base = s::baseline(svc)?;
            let avail = probe::mem_available().ok_or("no MemAvailable")?;
            let cap = svc
                .r#getUsage()
                .map_err(|e| Failure::from_status(e).to_string())?
                .r#capBytes;
            // Six clients (separate uids) each ask for a third of free memory at once: together
            // twice what is free.
            let each = (avail / 3) & !0xfff;
            let mut children = Vec::new();
            for w in 0..6 {
                let c = worker_as(
                    CAPS_UID + w,
                    &[
                        "--worker".into(),
                        "big".into(),
                        w.to_string(),
                        each.to_string(),
                        o.dir.display().to_string(),
                    ],
                )
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
                children.push(c);
            }
            // Each caller is its own uid: its own cap refuses only a request over that cap.
            let mut accepted = vec!["GLOBAL_CAP", "NO_MEMORY", "BUSY", "TOO_LARGE"];
            if each as i64 > cap {
                accepted.push("CALLER_CAP");
            }
            let (mut loaded, mut refused, mut other) = (0, 0, Vec::new());
            let mut uids = Vec::new();
            for c in children {
                let out = c.wait_with_output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                uids.extend(
                    text.lines()
                        .find_map(|l| l.strip_prefix("uid "))
                        .and_then(|v| v.trim().parse::<u32>().ok()),
                );
                if text.contains("outcome loaded") {
                    loaded += 1;
                } else if accepted
                    .iter()
                    .any(|c| text.contains(&format!("outcome refused {c}")))
                {
                    refused += 1;
                } else {
                    other.push(text.trim().to_string());
                }
            }
            figure(
                "caps: 6 × 1/3 of free memory at once",
                format!(
                    "{loaded} loaded, {refused} refused ({} MiB each, {} MiB free)",
                    each >> 20,
                    avail >> 20
                ),
            );
            ensure!(other.is_empty(), "unexpected outcomes: {other:?}");
            uids.sort_unstable();
            uids.dedup();
            ensure!(
                uids.len() == 6,
                "6 callers, but the service saw uids {uids:?}"
            );
            ensure!(
                refused > 0,
                "nothing was refused although the requests exceed free memory"
            );
            let ooms = probe::oom_kills();
            ensure!(ooms.is_empty(), "OOM kills in the kernel log: {ooms:?}");
            ensure!(
                s::service_pid() == pid,
                "the service restarted (was {pid:?}, now {:?})",
                s::service_pid()
            );
            s::back_to_baseline(svc, &base, Duration::from_secs(5)).map(|_| ())
        },
    );
    g.case(
        "per-uid byte cap: a uid at its cap is refused CALLER_CAP, another uid still loads",
        || per_uid_cap(o, svc),
    );
    g.case(
        "a request over the max buffer is refused before allocation (no dma-buf appears)",
        || {
            let info = svc
                .r#getBackends()
                .map_err(|e| Failure::from_status(e).to_string())?;
            let heap = info
                .iter()
                .find(|b| b.r#name.starts_with("heap:"))
                .ok_or("no heap")?;
            let before = s::system_dma_bufs();
            let exe = std::fs::File::open(o.dir.join("load/l-1.bin")).map_err(|e| e.to_string())?;
            let req = s::request(
                vec![s::segment(Some(exe.into()), 0, 1, heap.r#maxBufferBytes)],
                &heap.r#name,
                IoMode::AUTO,
                "vts-cap",
            );
            match s::load(svc, &req) {
                Err(Failure::Code(c, _)) if c == E::TOO_LARGE.0 => {}
                other => {
                    return Err(format!(
                        "expected TOO_LARGE, got {:?}",
                        other.map(|r| r.r#sizeBytes)
                    ))
                }
            }
            ensure!(
                s::system_dma_bufs() == before,
                "dma-bufs changed: {before:?} → {:?}",
                s::system_dma_bufs()
            );
            Ok(())
        },
    );
    g
}

/// Uid A fills its byte cap with one heap buffer; one page more is CALLER_CAP for A while uid B
/// loads that page; the dump charges each uid its own bytes; once A releases, A loads again;
/// afterwards everything is back to the baseline.
fn per_uid_cap(o: &Options, svc: &Svc) -> Result<(), String> {
    const PAGE: i64 = 4096;
    let base = s::baseline(svc)?;
    let heap_max = svc
        .r#getBackends()
        .map_err(|e| Failure::from_status(e).to_string())?
        .iter()
        .find(|b| b.r#name == "heap:system")
        .map(|b| b.r#maxBufferBytes)
        .ok_or("no heap:system backend")?;
    let mut a = CallerProcess::spawn(CAP_HOLDER_UID, &o.dir)?;
    let mut b = CallerProcess::spawn(CAP_NEIGHBOUR_UID, &o.dir)?;
    let usage = a.ask("usage")?;
    let cap: i64 = usage
        .split_whitespace()
        .find_map(|t| t.strip_prefix("cap="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no cap in {usage:?}"))?;
    // The most whole pages one buffer may hold within A's cap.
    let fill = cap.min(heap_max) / PAGE * PAGE;
    let started = Instant::now();
    let got = a.ask(&format!("load {fill}"))?;
    ensure!(
        got == format!("loaded {fill}"),
        "uid {CAP_HOLDER_UID} filling its cap ({fill} of {cap} bytes): {got}"
    );
    figure(
        "caps: one caller fills its byte cap (heap buffer)",
        format!("{} MiB in {} ms", fill >> 20, started.elapsed().as_millis()),
    );
    let over = a.ask(&format!("load {}", (cap - fill) + PAGE))?;
    ensure!(
        over == "refused CALLER_CAP",
        "uid {CAP_HOLDER_UID} at its cap asked for more: {over}"
    );
    let neighbour = b.ask(&format!("load {PAGE}"))?;
    ensure!(
        neighbour == format!("loaded {PAGE}"),
        "uid {CAP_NEIGHBOUR_UID} next to a uid at its cap: {neighbour}"
    );
    let dump = s::dump_usage(svc)?;
    ensure!(
        dump.of(CAP_HOLDER_UID) == fill as u64 && dump.of(CAP_NEIGHBOUR_UID) == PAGE as u64,
        "the dump charges uid {CAP_HOLDER_UID} {} and uid {CAP_NEIGHBOUR_UID} {} bytes, \
         expected {fill} and {PAGE}",
        dump.of(CAP_HOLDER_UID),
        dump.of(CAP_NEIGHBOUR_UID)
    );
    let own = b.ask("usage")?;
    ensure!(
        own.starts_with(&format!("usage charged={PAGE} ")),
        "uid {CAP_NEIGHBOUR_UID} sees {own:?}, not its own page"
    );
    ensure!(
        a.ask("release")? == "released 1",
        "uid {CAP_HOLDER_UID} release"
    );
    ensure!(
        b.ask("release")? == "released 1",
        "uid {CAP_NEIGHBOUR_UID} release"
    );
    let again = a.ask(&format!("load {PAGE}"))?;
    ensure!(
        again == format!("loaded {PAGE}"),
        "uid {CAP_HOLDER_UID} after releasing: {again}"
    );
    ensure!(
        a.ask("release")? == "released 1",
        "uid {CAP_HOLDER_UID} release"
    );
    a.finish()?;
    b.finish()?;
    let took = s::back_to_baseline(svc, &base, Duration::from_secs(5))?;
    figure(
        "caps: two callers gone → back to baseline after",
        format!("{} ms", took.as_millis()),
    );
    Ok(())
}
