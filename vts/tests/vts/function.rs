//! Group `function`: every backend the device offers × every I/O mode × sizes from 1 byte
//! up, checked byte for byte through a mapping of the returned fd (DMA_BUF_IOCTL_SYNC for
//! dma-bufs); several segments at buffer offsets; a ≥ 1 GiB load; backends vs /dev/dma_heap;
//! stats; buffer names; sync and async loads with monotonic progress; a version 1 client.

use std::time::{Duration, Instant};

use dmaload_vts::buffer::FdInfo;
use dmaload_vts::ensure;
use dmaload_vts::fixtures::{kernel_heaps, PatternFile, SIZE_CLASSES};
use dmaload_vts::harness::{figure, CaseResult, Group};
use std::os::fd::AsFd;

use crate::service::{self as s, IoMode, Piece, Svc};
use crate::Options;

const PAGE: u64 = 4096;

pub fn io_modes() -> [(IoMode, &'static str, bool); 3] {
    // (mode, name, open the file O_DIRECT)
    [
        (IoMode::AUTO, "auto", true),
        (IoMode::DIRECT, "direct", true),
        (IoMode::BUFFERED, "buffered", false),
    ]
}

/// The backends the service offers and allows, by name.
pub fn backends(svc: &Svc) -> Result<Vec<(String, bool, i64)>, String> {
    let list = svc
        .r#getBackends()
        .map_err(|e| format!("getBackends: {}", s::Failure::from_status(e)))?;
    Ok(list
        .into_iter()
        .filter(|b| b.r#allowed)
        .map(|b| (b.r#name, b.r#isDmaBuf, b.r#maxBufferBytes))
        .collect())
}

/// Loads `pieces` (each from its file) into `backend` and checks everything about the result.
#[allow(clippy::too_many_arguments)]
pub fn load_and_check(
    svc: &Svc,
    backend: &str,
    dma_buf: bool,
    io: IoMode,
    direct: bool,
    parts: &[(&PatternFile, u64, u64, u64)],
    name: &str,
) -> Result<Duration, String> {
    let base = s::baseline(svc)?;
    let mut segments = Vec::new();
    let mut pieces = Vec::new();
    for (file, off, len, at) in parts {
        let fd = file
            .open(direct)
            .map_err(|e| format!("open {}: {e}", file.path.display()))?;
        segments.push(s::segment(Some(fd), *off as i64, *len as i64, *at as i64));
        let len = if *len == 0 { file.size - off } else { *len };
        pieces.push(Piece {
            seed: file.seed,
            file_offset: *off,
            len,
            at: *at,
        });
    }
    let file_bytes: u64 = pieces.iter().map(|p| p.len).sum();
    let end = pieces.iter().map(|p| p.at + p.len).max().unwrap_or(0);
    let started = Instant::now();
    let result =
        s::load(svc, &s::request(segments, backend, io, name)).map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let fd = s::buffer_fd(&result)?;
    let size = result.r#sizeBytes as u64;
    ensure!(
        size >= end && size % PAGE == 0 && size < end + PAGE,
        "buffer of {size} bytes for {end} bytes of segments"
    );
    ensure!(
        result.r#backend == backend,
        "asked for {backend}, got {}",
        result.r#backend
    );
    ensure!(
        result.r#isDmaBuf == dma_buf,
        "isDmaBuf {} for {backend}",
        result.r#isDmaBuf
    );
    let synced = s::verify_content(&fd, size, &pieces)?;
    ensure!(
        synced == dma_buf,
        "DMA_BUF_IOCTL_SYNC {} on a {backend} buffer",
        if synced { "worked" } else { "failed" }
    );
    let info = FdInfo::of(fd.as_fd()).map_err(|e| format!("fdinfo: {e}"))?;
    ensure!(
        info.dma_buf == dma_buf,
        "fdinfo says dma-buf={} for {backend}",
        info.dma_buf
    );
    if dma_buf {
        ensure!(info.size == size, "fdinfo size {} != {size}", info.size);
    }
    ensure!(!info.name.is_empty(), "the buffer has no name");
    ensure!(
        result.r#name.starts_with(&info.name) || info.name.starts_with(&result.r#name),
        "the result names the buffer {:?}, the kernel {:?}",
        result.r#name,
        info.name
    );
    s::Stats::of(&result.r#stats).check(file_bytes)?;
    if io == IoMode::BUFFERED {
        ensure!(
            result.r#stats.r#bytesDirect == 0,
            "buffered mode read {} bytes direct",
            result.r#stats.r#bytesDirect
        );
    }
    svc.r#releaseBuffer(result.r#bufferId)
        .map_err(|e| format!("releaseBuffer: {}", s::Failure::from_status(e)))?;
    drop(fd);
    drop(result);
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    Ok(took)
}

pub fn run(o: &Options, svc: &Svc) -> Group {
    let mut g = Group::new("function");
    let dir = o.dir.join("function");
    let mut files = Vec::new();
    let made = g.case("fixtures: files of 1 B .. 32 MiB + 4097 B on /data", || {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (i, &size) in SIZE_CLASSES.iter().enumerate() {
            files.push(
                PatternFile::create(&dir, &format!("f-{size}.bin"), 100 + i as u64, size)
                    .map_err(|e| format!("{size}: {e}"))?,
            );
        }
        Ok(())
    });
    if !made {
        return g;
    }
    let backends = match backends(svc) {
        Ok(b) => b,
        Err(e) => {
            g.case("getBackends", || Err(e));
            return g;
        }
    };
    g.case(
        "backends listed match /dev/dma_heap, /dev/udmabuf, memfd",
        || {
            let listed: Vec<String> = svc
                .r#getBackends()
                .map_err(|e| s::Failure::from_status(e).to_string())?
                .into_iter()
                .map(|b| b.r#name)
                .collect();
            let mut heaps: Vec<String> = listed
                .iter()
                .filter_map(|n| n.strip_prefix("heap:").map(str::to_string))
                .collect();
            heaps.sort();
            ensure!(
                heaps == kernel_heaps(),
                "service lists heaps {heaps:?}, /dev/dma_heap has {:?}",
                kernel_heaps()
            );
            let udmabuf = std::path::Path::new("/dev/udmabuf").exists();
            ensure!(
                listed.iter().any(|n| n == "udmabuf") == udmabuf,
                "udmabuf listed: {}, /dev/udmabuf exists: {udmabuf}",
                !udmabuf
            );
            ensure!(
                listed.iter().any(|n| n == "memfd"),
                "memfd not listed: {listed:?}"
            );
            ensure!(
                !heaps.is_empty(),
                "the device has no dma-heap: this suite needs one"
            );
            Ok(())
        },
    );
    g.case(
        "first load (the service may open devices lazily: not leak-checked)",
        || {
            let fd = files[0].open(false).map_err(|e| e.to_string())?;
            let r = s::load(
                svc,
                &s::whole_file_request(fd, "auto", IoMode::AUTO, "vts-first"),
            )
            .map_err(|e| e.to_string())?;
            svc.r#releaseBuffer(r.r#bufferId)
                .map_err(|e| s::Failure::from_status(e).to_string())
        },
    );
    for (backend, dma_buf, _) in &backends {
        for (io, io_name, direct) in io_modes() {
            for f in &files {
                let name = format!("{backend}/{io_name}/{} B", f.size);
                g.case(&name, || {
                    load_and_check(
                        svc,
                        backend,
                        *dma_buf,
                        io,
                        direct,
                        &[(f, 0, 0, 0)],
                        "vts-function",
                    )
                    .map(|_| ())
                });
            }
        }
    }
    let (a, b) = (&files[4], &files[3]); // 65537 B and 4097 B
    for (backend, dma_buf, _) in &backends {
        g.case(
            &format!("{backend}: 4 segments at odd buffer offsets, gaps are zero"),
            || {
                let parts = [
                    (a, 4097, 10_000, 0),
                    (b, 0, 0, 3 * PAGE + 5),
                    (a, 0, 4095, (1 << 20) + 1),
                    (a, 60_000, 0, 40_000),
                ];
                load_and_check(
                    svc,
                    backend,
                    *dma_buf,
                    IoMode::AUTO,
                    true,
                    &parts,
                    "vts-segments",
                )
                .map(|_| ())
            },
        );
    }
    for (backend, dma_buf, _) in &backends {
        g.case(
            &format!("{backend}: async load, monotonic progress ending at the total"),
            || async_case(svc, backend, *dma_buf, files.last().ok_or("no file")?),
        );
    }
    g.case("buffer name shows the caller (uid/pid)", || {
        name_case(svc, &files[5])
    });
    // The frozen version 1 bindings exist in the rsbinder build; the Soong build carries the
    // one AIDL crate of the version under test.
    #[cfg(not(target_os = "android"))]
    g.case(
        "a version 1 client (the frozen AIDL) loads segments through the service",
        || v1_client_case(svc, a),
    );
    if o.big {
        g.case(
            "≥ 1 GiB load (1 GiB + 4097 B, auto backend, O_DIRECT), byte-exact",
            || {
                let f = PatternFile::create(&dir, "big.bin", 4242, (1 << 30) + 4097)
                    .map_err(|e| format!("create the 1 GiB file: {e}"))?;
                let (backend, dma_buf, _) = backends
                    .iter()
                    .find(|(n, _, _)| n.starts_with("heap:"))
                    .ok_or("no heap")?;
                let took = load_and_check(
                    svc,
                    backend,
                    *dma_buf,
                    IoMode::AUTO,
                    true,
                    &[(&f, 0, 0, 0)],
                    "vts-big",
                )?;
                figure(
                    &format!("1 GiB + 4097 B load into {backend}"),
                    format!(
                        "{:.2} s, {:.0} MB/s",
                        took.as_secs_f64(),
                        f.size as f64 / took.as_secs_f64() / 1e6
                    ),
                );
                Ok(())
            },
        );
    }
    g
}

fn async_case(svc: &Svc, backend: &str, dma_buf: bool, f: &PatternFile) -> CaseResult {
    let base = s::baseline(svc)?;
    let fd = f.open(true).map_err(|e| e.to_string())?;
    let req = s::whole_file_request(fd, backend, IoMode::AUTO, "vts-async");
    let (_handle, rec) = s::start(svc, &req).map_err(|e| e.to_string())?;
    let mut ev = rec.wait(Duration::from_secs(60))?;
    ensure!(ev.ends == 1, "{} end callbacks", ev.ends);
    if let Some((code, msg)) = &ev.error {
        return Err(format!("onError {}({code}): {msg}", s::code_name(*code)));
    }
    let done = ev.complete.take().ok_or("no onComplete")?;
    // Release first: a failed check below must not leave the buffer charged.
    svc.r#releaseBuffer(done.buffer_id)
        .map_err(|e| s::Failure::from_status(e).to_string())?;
    let total = f.size as i64;
    ensure!(!ev.progress.is_empty(), "no progress callbacks");
    let mut last = 0;
    for &(loaded, t) in &ev.progress {
        ensure!(t == total, "progress total {t} != {total}");
        ensure!(
            loaded >= last && loaded <= total,
            "progress {loaded} after {last} (total {total})"
        );
        last = loaded;
    }
    ensure!(last == total, "progress ended at {last} of {total}");
    ensure!(
        done.name.contains("vts-async"),
        "the result's name {:?} lost the requested name",
        done.name
    );
    let fd = done.fd?;
    ensure!(
        done.backend == backend && done.is_dma_buf == dma_buf,
        "got {} (dma-buf {})",
        done.backend,
        done.is_dma_buf
    );
    let pieces = [Piece {
        seed: f.seed,
        file_offset: 0,
        len: f.size,
        at: 0,
    }];
    s::verify_content(&fd, done.size as u64, &pieces)?;
    done.stats.check(f.size)?;
    drop(fd);
    drop(ev);
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    Ok(())
}

fn name_case(svc: &Svc, f: &PatternFile) -> CaseResult {
    let (backend, _, _) = backends(svc)?
        .into_iter()
        .find(|(n, d, _)| *d && n.starts_with("heap:"))
        .ok_or("no dma-heap")?;
    let fd = f.open(true).map_err(|e| e.to_string())?;
    let req = s::whole_file_request(fd, &backend, IoMode::AUTO, "weights");
    let result = s::load(svc, &req).map_err(|e| e.to_string())?;
    let buf = s::buffer_fd(&result)?;
    let info = FdInfo::of(buf.as_fd()).map_err(|e| e.to_string())?;
    let uid = nix::unistd::getuid().as_raw().to_string();
    let pid = std::process::id().to_string();
    let has = |t: &str| {
        info.name
            .split(|c: char| !c.is_ascii_digit())
            .any(|w| w == t)
    };
    let ok = has(&uid) || has(&pid);
    let _ = svc.r#releaseBuffer(result.r#bufferId);
    ensure!(
        ok,
        "dma-buf name {:?} names neither uid {uid} nor pid {pid}",
        info.name
    );
    Ok(())
}

/// A version 1 client: the frozen `vendor.dmaload` version 1 bindings, each segment with its
/// own fd (the only layout version 1 has), against the service under test.
#[cfg(not(target_os = "android"))]
fn v1_client_case(svc: &Svc, f: &PatternFile) -> dmaload_vts::harness::CaseResult {
    use dmaload_aidl::v1::aidl as v1;
    use rsbinder::ParcelFileDescriptor;
    use v1::IDmaLoader::IDmaLoader as V1;

    let base = s::baseline(svc)?;
    let endpoint = s::endpoint();
    let (old, _client): (rsbinder::Strong<dyn V1>, rsbinder::Client) =
        if let Some(path) = endpoint.strip_prefix("unix:") {
            use rsbinder::entry::{WireProfile, WireVersion};
            let uri = rsbinder::Uri::new(rsbinder::Endpoint::unix(std::path::Path::new(path)))
                .with_wire(WireProfile::Android13Plus(WireVersion::MAX));
            let client = rsbinder::Client::open_with(uri, |o, _| {
                o.fd_mode = Some(rsbinder::rpc::FileDescriptorTransportMode::Unix);
            })
            .map_err(|e| format!("connect: {e:?}"))?;
            let svc = client
                .get::<dyn V1>(s::SERVICE_NAME)
                .map_err(|e| format!("get: {e:?}"))?;
            (svc, client)
        } else {
            let client = rsbinder::Client::open(rsbinder::Uri::kernel())
                .map_err(|e| format!("open kernel binder: {e:?}"))?;
            let svc = client
                .try_get::<dyn V1>(s::SERVICE_NAME)
                .map_err(|e| format!("get: {e:?}"))?
                .ok_or("the service is not registered")?;
            (svc, client)
        };
    let version = old.getInterfaceVersion().map_err(|e| format!("{e:?}"))?;
    ensure!(version >= 2, "the service says it speaks version {version}");
    // Three segments of one file, each with an fd of its own, swapped around.
    let parts: [(u64, u64, u64); 3] = [
        (4097, 10_000, 0),
        (0, 4096, 3 * PAGE + 5),
        (60_000, 0, 40_000),
    ];
    let mut segments = Vec::new();
    let mut pieces = Vec::new();
    for (off, len, at) in parts {
        let fd = f.open(false).map_err(|e| e.to_string())?;
        segments.push(v1::FileSegment::FileSegment {
            fd: Some(ParcelFileDescriptor::new(fd)),
            fileOffset: off as i64,
            length: len as i64,
            bufferOffset: at as i64,
        });
        let len = if len == 0 { f.size - off } else { len };
        pieces.push(Piece {
            seed: f.seed,
            file_offset: off,
            len,
            at,
        });
    }
    let req = v1::LoadRequest::LoadRequest {
        segments,
        backend: "auto".into(),
        name: "vts-v1-client".into(),
        ..Default::default()
    };
    let r = old
        .load(&req)
        .map_err(|e| format!("a version 1 load: {e:?}"))?;
    let fd = r
        .buffer
        .as_ref()
        .ok_or("no buffer fd")?
        .as_ref()
        .try_clone()
        .map_err(|e| e.to_string())?;
    let checked = s::verify_content(&fd, r.sizeBytes as u64, &pieces);
    let released = old.releaseBuffer(r.bufferId);
    drop(fd);
    drop(r);
    checked?;
    released.map_err(|e| format!("releaseBuffer: {e:?}"))?;
    s::back_to_baseline(svc, &base, Duration::from_secs(2)).map(|_| ())
}
