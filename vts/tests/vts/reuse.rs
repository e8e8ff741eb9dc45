//! Group `reuse`: warm reuse over kernel binder with dma-heap buffers. A shareable request of
//! the same uid gets the buffer already loaded (no I/O, no second charge), the one kept warm
//! after its release (where the device configured a cache), or waits for an identical load
//! in flight (8 requests, 1 load); another uid, another version of the file (rewritten in
//! place, truncated, renamed over), another range or backend, or a request without the flag
//! gets a buffer of its own; cached buffers leave when MemAvailable falls below the
//! service's threshold; a holder's death leaves the other holders a valid buffer. After each
//! case, once the cache let go of what it kept: the service's fds, its outstanding bytes,
//! every uid's charge and the system's dma-bufs are back to their baseline.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use dmaload_vts::ensure;
use dmaload_vts::fixtures::PatternFile;
use dmaload_vts::harness::{CaseResult, Group};

use crate::service::{self as s, idl, Failure, IoMode, LoadRequest, LoadResult, Svc};
use crate::stress::worker_as;
use crate::Options;

use idl::Reuse::Reuse;

/// The caller of another uid.
const OTHER_UID: u32 = 10_500;
/// The buffers' backend: the dma-heap every device has.
const HEAP: &str = "heap:system";

fn shareable(f: &PatternFile, backend: &str) -> Result<LoadRequest, String> {
    let fd = f
        .open(false)
        .map_err(|e| format!("{}: {e}", f.path.display()))?;
    let mut r = s::whole_file_request(fd, backend, IoMode::AUTO, "vts-reuse");
    r.r#shareable = true;
    Ok(r)
}

/// File bytes the load read.
fn read_bytes(r: &LoadResult) -> i64 {
    r.r#stats.r#bytesDirect + r.r#stats.r#bytesBuffered
}

/// The buffer holds `f` from its start, zeros after.
fn holds(r: &LoadResult, f: &PatternFile) -> CaseResult {
    let fd = s::buffer_fd(r)?;
    let piece = s::Piece {
        seed: f.seed,
        file_offset: 0,
        len: f.size,
        at: 0,
    };
    s::verify_content(&fd, r.r#sizeBytes as u64, &[piece]).map(|_| ())
}

fn load(svc: &Svc, req: &LoadRequest) -> Result<LoadResult, String> {
    s::load(svc, req).map_err(|e| e.to_string())
}

fn release(svc: &Svc, r: &LoadResult) -> CaseResult {
    svc.r#releaseBuffer(r.r#bufferId)
        .map_err(|e| format!("releaseBuffer: {}", Failure::from_status(e)))
}

fn state(svc: &Svc) -> Result<idl::ServiceState::ServiceState, String> {
    svc.r#getServiceState()
        .map_err(|e| format!("getServiceState: {}", Failure::from_status(e)))
}

fn usage(svc: &Svc) -> Result<idl::CallerUsage::CallerUsage, String> {
    svc.r#getUsage()
        .map_err(|e| format!("getUsage: {}", Failure::from_status(e)))
}

/// The cache settings in force: bytes kept per uid, their maximum age, the MemAvailable
/// threshold.
struct CacheConfig {
    per_caller: u64,
    max_age: Duration,
    min_available: u64,
}

impl CacheConfig {
    fn of(svc: &Svc) -> Result<CacheConfig, String> {
        Ok(CacheConfig {
            per_caller: s::config_value(svc, "cache_per_caller")?,
            max_age: Duration::from_secs(s::config_value(svc, "cache_max_age")?),
            min_available: s::config_value(svc, "cache_min_available")?,
        })
    }

    fn enabled(&self) -> bool {
        self.per_caller > 0 && !self.max_age.is_zero()
    }
}

/// Waits until the cache let go of everything (its age limit) and the service is back at
/// `base`.
/// Runs a case's body, whose results (and so the buffer fds this process holds) are gone
/// when it returns the baseline it took, then waits for the service and the system's
/// dma-bufs to be back at that baseline.
fn settled(
    svc: &Svc,
    cache: &CacheConfig,
    body: impl FnOnce() -> Result<s::Baseline, String>,
) -> CaseResult {
    let base = body()?;
    settle(svc, &base, cache)
}

fn settle(svc: &Svc, base: &s::Baseline, cache: &CacheConfig) -> CaseResult {
    let deadline = Instant::now() + cache.max_age + Duration::from_secs(5);
    while state(svc)?.r#cachedBuffers > 0 {
        ensure!(
            Instant::now() < deadline,
            "cached buffers older than {:?} are still kept",
            cache.max_age
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s::back_to_baseline(svc, base, Duration::from_secs(2)).map(|_| ())
}

/// `key = N` of a dump view.
fn dump_value(svc: &Svc, view: &str, key: &str) -> Result<u64, String> {
    let text = svc
        .r#debugDump(&[view.to_string()])
        .map_err(|e| format!("debugDump {view}: {}", Failure::from_status(e)))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in the {view} view: {text:?}"))
}

pub fn run(o: &Options, svc: &Svc) -> Group {
    let mut g = Group::new("reuse");
    let dir = o.dir.join("reuse");
    let setup = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|_| CacheConfig::of(svc));
    let cache = match setup {
        Ok(c) => c,
        Err(e) => {
            g.case("fixtures", || Err(e));
            return g;
        }
    };
    println!(
        "  cache: {} bytes per uid, {:?}, MemAvailable threshold {} bytes",
        cache.per_caller, cache.max_age, cache.min_available
    );
    let file = |name: &str, seed: u64, size: u64| {
        PatternFile::create(&dir, name, seed, size).map_err(|e| format!("{name}: {e}"))
    };

    g.case("the same uid: one buffer, shared, then kept warm", || {
        settled(svc, &cache, || {
            let f = file("same.bin", 901, (8 << 20) + 4097)?;
            let base = s::baseline(svc)?;
            let first = load(svc, &shareable(&f, HEAP)?)?;
            ensure!(first.r#reuse == Reuse::NONE, "first: {:?}", first.r#reuse);
            ensure!(
                read_bytes(&first) == f.size as i64,
                "the first load reads the file"
            );
            let charged = usage(svc)?.r#chargedBytes - base.charged_bytes;
            ensure!(charged == first.r#sizeBytes, "charged {charged}");
            let second = load(svc, &shareable(&f, HEAP)?)?;
            ensure!(
                second.r#reuse == Reuse::SHARED,
                "second: {:?}",
                second.r#reuse
            );
            ensure!(
                read_bytes(&second) == 0,
                "a shared buffer read {}",
                read_bytes(&second)
            );
            ensure!(second.r#bufferId != first.r#bufferId, "one id per holder");
            ensure!(second.r#isDmaBuf, "a dma-buf");
            holds(&second, &f)?;
            let u = usage(svc)?;
            ensure!(
                u.r#chargedBytes - base.charged_bytes == charged,
                "a second charge: {u:?}"
            );
            ensure!(
                state(svc)?.r#outstandingBufferBytes - base.state.1 == charged,
                "the shared bytes count once"
            );
            // Without the flag: a buffer of its own, and never a source for others.
            let own = load(
                svc,
                &s::whole_file_request(
                    f.open(false).map_err(|e| e.to_string())?,
                    HEAP,
                    IoMode::AUTO,
                    "vts-own",
                ),
            )?;
            ensure!(own.r#reuse == Reuse::NONE, "own: {:?}", own.r#reuse);
            ensure!(
                read_bytes(&own) == f.size as i64,
                "its own load reads the file"
            );
            release(svc, &own)?;
            release(svc, &first)?;
            holds(&second, &f)?;
            release(svc, &second)?;
            let third = load(svc, &shareable(&f, HEAP)?)?;
            if cache.enabled() {
                ensure!(third.r#reuse == Reuse::CACHED, "third: {:?}", third.r#reuse);
                ensure!(read_bytes(&third) == 0, "a cached buffer read bytes");
            } else {
                ensure!(
                    third.r#reuse == Reuse::NONE,
                    "no cache configured: {:?}",
                    third.r#reuse
                );
            }
            holds(&third, &f)?;
            release(svc, &third)?;
            Ok(base)
        })
    });

    g.case("another uid never gets the buffer", || {
        settled(svc, &cache, || {
            let f = file("other-uid.bin", 902, 3 << 20)?;
            let base = s::baseline(svc)?;
            let mine = load(svc, &shareable(&f, HEAP)?)?;
            let args: Vec<String> = ["--worker", "reuse-load"]
                .iter()
                .map(|a| a.to_string())
                .chain([f.path.display().to_string()])
                .collect();
            let out = worker_as(OTHER_UID, &args)
                .output()
                .map_err(|e| format!("worker: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(out.status.success(), "worker: {text}");
            let want = format!(
                "reuse {} read {} charged {}",
                Reuse::NONE.0,
                f.size,
                mine.r#sizeBytes
            );
            ensure!(text.contains(&want), "expected {want:?}: {text}");
            ensure!(
                usage(svc)?.r#chargedBytes - base.charged_bytes == mine.r#sizeBytes,
                "our charge changed"
            );
            release(svc, &mine)?;
            Ok(base)
        })
    });

    g.case(
        "another version of the file: rewritten, truncated, renamed over",
        || {
            settled(svc, &cache, || {
                let f = file("versions.bin", 903, 1 << 20)?;
                let base = s::baseline(svc)?;
                let held = load(svc, &shareable(&f, HEAP)?)?;
                // Timestamps move in clock ticks: a rewrite within one tick of the last write is
                // not seen (docs/DESIGN.md); wait a tick.
                std::thread::sleep(Duration::from_millis(50));
                let rewritten = PatternFile {
                    seed: 904,
                    ..f.clone()
                };
                let bytes = dmaload_vts::pattern::bytes(rewritten.seed, 0, f.size as usize);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .and_then(|w| w.write_all_at(&bytes, 0))
                    .map_err(|e| format!("rewrite: {e}"))?;
                let a = load(svc, &shareable(&rewritten, HEAP)?)?;
                ensure!(
                    a.r#reuse == Reuse::NONE,
                    "rewritten in place: {:?}",
                    a.r#reuse
                );
                holds(&a, &rewritten)?;
                holds(&held, &f)?;
                std::thread::sleep(Duration::from_millis(50));
                let truncated = PatternFile {
                    size: f.size / 2,
                    ..rewritten.clone()
                };
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .and_then(|w| w.set_len(truncated.size))
                    .map_err(|e| format!("truncate: {e}"))?;
                let b = load(svc, &shareable(&truncated, HEAP)?)?;
                ensure!(b.r#reuse == Reuse::NONE, "truncated: {:?}", b.r#reuse);
                holds(&b, &truncated)?;
                let replaced = file("versions.new", 905, f.size)?;
                std::fs::rename(&replaced.path, &f.path).map_err(|e| format!("rename: {e}"))?;
                let replaced = PatternFile {
                    path: f.path.clone(),
                    ..replaced
                };
                let c = load(svc, &shareable(&replaced, HEAP)?)?;
                ensure!(c.r#reuse == Reuse::NONE, "renamed over: {:?}", c.r#reuse);
                holds(&c, &replaced)?;
                let d = load(svc, &shareable(&replaced, HEAP)?)?;
                ensure!(
                    d.r#reuse == Reuse::SHARED,
                    "unchanged since: {:?}",
                    d.r#reuse
                );
                for r in [&held, &a, &b, &c, &d] {
                    release(svc, r)?;
                }
                std::fs::remove_file(&f.path).map_err(|e| e.to_string())?;
                Ok(base)
            })
        },
    );

    g.case("another range or backend", || {
        settled(svc, &cache, || {
            let f = file("keys.bin", 906, 2 << 20)?;
            let base = s::baseline(svc)?;
            let held = load(svc, &shareable(&f, HEAP)?)?;
            let mut range = shareable(&f, HEAP)?;
            range.r#segments[0].r#fileOffset = 4096;
            range.r#segments[0].r#length = 8192;
            let r = load(svc, &range)?;
            ensure!(r.r#reuse == Reuse::NONE, "another range: {:?}", r.r#reuse);
            let fd = s::buffer_fd(&r)?;
            let piece = s::Piece {
                seed: f.seed,
                file_offset: 4096,
                len: 8192,
                at: 0,
            };
            s::verify_content(&fd, r.r#sizeBytes as u64, &[piece])?;
            let mut results = vec![held, r];
            let other = if Path::new("/dev/udmabuf").exists() {
                "udmabuf"
            } else {
                "memfd"
            };
            let b = load(svc, &shareable(&f, other)?)?;
            ensure!(b.r#reuse == Reuse::NONE, "{other}: {:?}", b.r#reuse);
            holds(&b, &f)?;
            results.push(b);
            let again = load(svc, &shareable(&f, other)?)?;
            ensure!(
                again.r#reuse == Reuse::SHARED,
                "{other} again: {:?}",
                again.r#reuse
            );
            results.push(again);
            for r in &results {
                release(svc, r)?;
            }
            Ok(base)
        })
    });

    g.case("8 identical requests: 1 load, 8 buffers", || {
        settled(svc, &cache, || {
            let f = file("coalesce.bin", 907, 96 << 20)?;
            let base = s::baseline(svc)?;
            let loads = dump_value(svc, "stats", "loads_ok")?;
            let mut slow = s::slow_request(&f, HEAP)?;
            slow.r#shareable = true;
            let (_handle, first) = s::start(svc, &slow).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let ev = first.events.lock().unwrap_or_else(|p| p.into_inner());
                ensure!(ev.ends == 0, "the first load ended before the others came");
                if !ev.progress.is_empty() {
                    break;
                }
                drop(ev);
                ensure!(Instant::now() < deadline, "no progress from the first load");
                std::thread::sleep(Duration::from_millis(2));
            }
            let others: Vec<Result<LoadResult, String>> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..7)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut req = s::slow_request(&f, HEAP)?;
                            req.r#shareable = true;
                            load(svc, &req)
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|_| Err("panicked".into())))
                    .collect()
            });
            let mut ev = first.wait(Duration::from_secs(300))?;
            let done = ev
                .complete
                .take()
                .ok_or_else(|| format!("first: {:?}", ev.error))?;
            drop(ev);
            let mut ids = vec![done.buffer_id];
            let fd = done.fd?;
            let whole = [s::Piece {
                seed: f.seed,
                file_offset: 0,
                len: f.size,
                at: 0,
            }];
            s::verify_content(&fd, done.size as u64, &whole)?;
            for r in others {
                let r = r?;
                ensure!(r.r#reuse == Reuse::COALESCED, "a waiter: {:?}", r.r#reuse);
                holds(&r, &f)?;
                ids.push(r.r#bufferId);
            }
            ids.sort_unstable();
            ids.dedup();
            ensure!(ids.len() == 8, "buffer ids {ids:?}");
            let now = dump_value(svc, "stats", "loads_ok")?;
            ensure!(now == loads + 1, "{} loads read the file", now - loads);
            let charged = usage(svc)?.r#chargedBytes - base.charged_bytes;
            ensure!(
                charged == done.size,
                "charged {charged} for {} bytes",
                done.size
            );
            for id in ids {
                svc.r#releaseBuffer(id)
                    .map_err(|e| Failure::from_status(e).to_string())?;
            }
            Ok(base)
        })
    });

    g.case(
        "cached buffers leave when MemAvailable falls below the threshold",
        || {
            settled(svc, &cache, || {
                if !cache.enabled() {
                    return Err("the service keeps no cache: configure cache_per_caller".into());
                }
                let f = file("pressure.bin", 908, 16 << 20)?;
                let base = s::baseline(svc)?;
                let r = load(svc, &shareable(&f, HEAP)?)?;
                release(svc, &r)?;
                ensure!(state(svc)?.r#cachedBuffers == 1, "kept warm");
                let available = dmaload_abi::meminfo::MemInfo::read()
                    .ok_or("/proc/meminfo")?
                    .available;
                ensure!(
                    available > cache.min_available + (256 << 20),
                    "MemAvailable {available} is already near the threshold {}",
                    cache.min_available
                );
                let take = available - cache.min_available + (128 << 20);
                ensure!(
                    take + (256 << 20) < available,
                    "crossing the threshold would take {take} of {available} bytes"
                );
                let memfd = dmaload_abi::memfd::Memfd::create("vts-pressure", take)
                    .map_err(|e| format!("memfd: {e}"))?;
                let map = dmaload_abi::mmap::Mapping::map_shared(memfd.as_fd(), take as usize)
                    .map_err(|e| format!("mmap: {e}"))?;
                map.populate_write(0, take as usize)
                    .map_err(|e| format!("populate: {e}"))?;
                let deadline = Instant::now() + Duration::from_secs(10);
                let left = loop {
                    if state(svc)?.r#cachedBuffers == 0 {
                        break Ok(());
                    }
                    if Instant::now() > deadline {
                        break Err("the cached buffer stayed under memory pressure".to_string());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                drop(map);
                drop(memfd);
                left?;
                Ok(base)
            })
        },
    );

    g.case("a holder dies: the other keeps a valid buffer", || {
        settled(svc, &cache, || {
            let f = file("holders.bin", 909, 8 << 20)?;
            let base = s::baseline(svc)?;
            let args: Vec<String> = ["--worker", "reuse-hold"]
                .iter()
                .map(|a| a.to_string())
                .chain([f.path.display().to_string()])
                .collect();
            let mut child = spawn_holder(&args)?;
            let mine = load(svc, &shareable(&f, HEAP)?)?;
            let shared = mine.r#reuse == Reuse::SHARED;
            let _ = child.kill();
            let _ = child.wait();
            ensure!(shared, "ours: {:?}", mine.r#reuse);
            let deadline = Instant::now() + Duration::from_secs(2);
            while state(svc)?.r#liveBuffers > base.state.2 + 1 {
                ensure!(Instant::now() < deadline, "the dead holder's share stayed");
                std::thread::sleep(Duration::from_millis(20));
            }
            ensure!(
                usage(svc)?.r#chargedBytes - base.charged_bytes == mine.r#sizeBytes,
                "the buffer is charged once, still"
            );
            holds(&mine, &f)?;
            release(svc, &mine)?;
            Ok(base)
        })
    });
    g
}

/// Starts a `reuse-hold` worker and waits until it holds its buffer.
fn spawn_holder(args: &[String]) -> Result<std::process::Child, String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("holding") || l.starts_with("FAIL"));
    match line {
        Some(l) if l.starts_with("holding") => Ok(child),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the holder said {other:?}"))
        }
    }
}

/// `--worker reuse-load FILE`: a shareable load of FILE; prints how it was served.
pub fn worker_load(args: &[String]) -> Result<(), String> {
    let path = args.get(1).ok_or("file")?;
    let svc = s::connect(Duration::from_secs(10))?;
    let fd = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut req = s::whole_file_request(fd.into(), HEAP, IoMode::AUTO, "vts-reuse-other");
    req.r#shareable = true;
    let r = load(&svc, &req)?;
    let u = usage(&svc)?;
    println!(
        "reuse {} read {} charged {}",
        r.r#reuse.0,
        read_bytes(&r),
        u.r#chargedBytes
    );
    release(&svc, &r)
}

/// `--worker reuse-hold FILE`: a shareable load of FILE, held until killed.
pub fn worker_hold(args: &[String]) -> Result<(), String> {
    let path = args.get(1).ok_or("file")?;
    let svc = s::connect(Duration::from_secs(10))?;
    let fd = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut req = s::whole_file_request(fd.into(), HEAP, IoMode::AUTO, "vts-reuse-hold");
    req.r#shareable = true;
    let r = load(&svc, &req)?;
    let _fd = s::buffer_fd(&r)?;
    println!("holding {}", r.r#reuse.0);
    std::thread::sleep(Duration::from_secs(120));
    Err("not killed".into())
}
