//! Digests in the `function` group: every backend × I/O mode, whole files and segments at
//! odd offsets, the service's SHA-256 and fs-verity digests equal the references (the
//! device's `sha256sum` and `fsverity digest` where it has them, which the virtual device
//! must, and always an in-process computation over the expected bytes); a file with fs-verity
//! on reports the kernel's measurement (`fromKernel`), equal to `fsverity digest`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dmaload_abi::digest::{parse_hex, to_hex, DIGEST_BYTES};
use dmaload_vts::ensure;
use dmaload_vts::fixtures::PatternFile;
use dmaload_vts::harness::{figure, CaseResult, Group};
use dmaload_vts::pattern;

use crate::service::{self as s, idl, IoMode, LoadRequest, LoadResult, Svc};

pub type Value = [u8; DIGEST_BYTES];

/// The AIDL's algorithms, with the references' names.
pub const ALGORITHMS: [(idl::DigestAlgorithm::DigestAlgorithm, &str); 2] = [
    (idl::DigestAlgorithm::DigestAlgorithm::SHA256, "sha256"),
    (
        idl::DigestAlgorithm::DigestAlgorithm::FSVERITY_SHA256,
        "fsverity",
    ),
];

/// The device's tool for `fsverity`/`sha256sum`: required in the virtual device, which has
/// them (vts/vm/lib.sh); elsewhere used where present.
fn tool_digest(tool: &str, args: &[&str], path: &Path) -> Result<Option<Value>, String> {
    let out = match Command::new(tool).args(args).arg(path).output() {
        Ok(out) => out,
        Err(e) if std::env::var_os("DMALOAD_GUEST").is_some() => {
            return Err(format!(
                "{tool}: {e} (the virtual device has it: vts/vm/lib.sh)"
            ))
        }
        Err(_) => return Ok(None),
    };
    ensure!(out.status.success(), "{tool} {}: {out:?}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().next().unwrap_or_default();
    let value = parse_hex(word.rsplit(':').next().unwrap_or_default())
        .ok_or_else(|| format!("{tool} printed {text:?}"))?;
    Ok(Some(value))
}

/// The digests of `len` bytes of `f` from `offset`: computed here over the expected bytes,
/// and checked against the device's tools (on a copy of the bytes) where they run.
pub fn reference(f: &PatternFile, offset: u64, len: u64) -> Result<[Value; 2], String> {
    let bytes = pattern::bytes(f.seed, offset, len as usize);
    let computed = [
        dmaload_engine::digest::sha256(&bytes),
        dmaload_engine::digest::fsverity(&bytes),
    ];
    let copy = f.path.with_extension(format!("ref-{offset}-{len}"));
    std::fs::write(&copy, &bytes).map_err(|e| format!("write {}: {e}", copy.display()))?;
    let tools = [
        tool_digest("sha256sum", &[], &copy)?,
        tool_digest("fsverity", &["digest"], &copy)?,
    ];
    std::fs::remove_file(&copy).ok();
    for ((tool, value), (_, name)) in tools.iter().zip(&computed).zip(ALGORITHMS) {
        if let Some(tool) = tool {
            ensure!(
                tool == value,
                "{name}: the tool says {}, the reference {}",
                to_hex(tool),
                to_hex(value)
            );
        }
    }
    Ok(computed)
}

/// `req` asking for both digests of every segment.
pub fn with_digests(mut req: LoadRequest) -> LoadRequest {
    req.r#digests = ALGORITHMS.iter().map(|(a, _)| *a).collect();
    req
}

/// The result's digest of `segment` by `algorithm`: (value, fromKernel).
pub fn digest_of(
    result: &LoadResult,
    segment: i32,
    algorithm: idl::DigestAlgorithm::DigestAlgorithm,
) -> Result<(Value, bool), String> {
    let d = result
        .r#digests
        .iter()
        .flatten()
        .flatten()
        .find(|d| d.r#segment == segment && d.r#algorithm == algorithm)
        .ok_or_else(|| format!("no digest {} of segment {segment}", algorithm.0))?;
    let value: Value = d
        .r#value
        .as_slice()
        .try_into()
        .map_err(|_| format!("a digest of {} bytes", d.r#value.len()))?;
    Ok((value, d.r#fromKernel))
}

/// Loads `parts` (file, offset, length, buffer offset) into `backend` with both digests and
/// checks each against its reference; the service is back at its baseline after.
fn digests_case(
    svc: &Svc,
    backend: &str,
    io: IoMode,
    direct: bool,
    parts: &[(&PatternFile, u64, u64, u64)],
) -> CaseResult {
    let base = s::baseline(svc)?;
    let mut segments = Vec::new();
    let mut want = Vec::new();
    for (f, off, len, at) in parts {
        let fd = f.open(direct).map_err(|e| e.to_string())?;
        segments.push(s::segment(Some(fd), *off as i64, *len as i64, *at as i64));
        let len = if *len == 0 { f.size - off } else { *len };
        want.push(reference(f, *off, len)?);
    }
    let req = with_digests(s::request(segments, backend, io, "vts-digests"));
    let result = s::load(svc, &req).map_err(|e| e.to_string())?;
    let count = result.r#digests.as_ref().map_or(0, Vec::len);
    ensure!(count == 2 * parts.len(), "{count} digests");
    for (i, values) in want.iter().enumerate() {
        for ((algorithm, name), value) in ALGORITHMS.iter().zip(values) {
            let (got, kernel) = digest_of(&result, i as i32, *algorithm)?;
            ensure!(
                !kernel,
                "segment {i}: {name} from the kernel on a file without verity"
            );
            ensure!(
                got == *value,
                "segment {i}: {name} {} but the bytes have {}",
                to_hex(&got),
                to_hex(value)
            );
        }
    }
    ensure!(result.r#stats.r#digestNs > 0, "no digest time reported");
    svc.r#releaseBuffer(result.r#bufferId)
        .map_err(|e| s::Failure::from_status(e).to_string())?;
    drop(result);
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    Ok(())
}

/// Makes `name` in `dir` a file of `size` pattern bytes with fs-verity on, through the
/// device's `fsverity enable` (the ioctl where the tool is missing).
fn verity_file(dir: &Path, name: &str, seed: u64, size: u64) -> Result<PatternFile, String> {
    let path = dir.join(name);
    // A verity file is read-only for good: made afresh every run.
    let _ = std::fs::remove_file(&path);
    pattern::write_file(&path, seed, size).map_err(|e| format!("write: {e}"))?;
    match Command::new("fsverity").arg("enable").arg(&path).output() {
        Ok(out) => ensure!(out.status.success(), "fsverity enable: {out:?}"),
        Err(e) if std::env::var_os("DMALOAD_GUEST").is_some() => {
            return Err(format!("fsverity: {e} (the virtual device has it)"))
        }
        Err(_) => {
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            dmaload_abi::verity::enable(std::os::fd::AsFd::as_fd(&file))
                .map_err(|e| format!("FS_IOC_ENABLE_VERITY: {e}"))?;
        }
    }
    Ok(PatternFile { path, seed, size })
}

/// A verity file loaded whole into `backend`: the kernel's measurement, equal to the
/// reference (`fsverity digest`), and SHA-256 computed beside it.
fn verity_case(svc: &Svc, backend: &str, f: &PatternFile) -> CaseResult {
    let base = s::baseline(svc)?;
    let [sha, verity] = reference(f, 0, f.size)?;
    let measured = tool_digest("fsverity", &["measure"], &f.path)?;
    if let Some(measured) = measured {
        ensure!(
            measured == verity,
            "fsverity measure differs from fsverity digest"
        );
    }
    let fd = f.open(true).map_err(|e| e.to_string())?;
    let req = with_digests(s::whole_file_request(
        fd,
        backend,
        IoMode::AUTO,
        "vts-verity",
    ));
    let result = s::load(svc, &req).map_err(|e| e.to_string())?;
    let (got, kernel) = digest_of(&result, 0, ALGORITHMS[1].0)?;
    ensure!(
        kernel,
        "fromKernel is false for a whole file with fs-verity on"
    );
    ensure!(
        got == verity,
        "the kernel's measurement {} differs from fsverity digest {}",
        to_hex(&got),
        to_hex(&verity)
    );
    let (got, _) = digest_of(&result, 0, ALGORITHMS[0].0)?;
    ensure!(
        got == sha,
        "sha256 {} differs from {}",
        to_hex(&got),
        to_hex(&sha)
    );
    svc.r#releaseBuffer(result.r#bufferId)
        .map_err(|e| s::Failure::from_status(e).to_string())?;
    drop(result);
    s::back_to_baseline(svc, &base, Duration::from_secs(2))?;
    Ok(())
}

/// The digest cases of the `function` group.
pub fn cases(
    g: &mut Group,
    svc: &Svc,
    dir: &Path,
    files: &[PatternFile],
    backends: &[(String, bool, i64)],
) {
    // 1 B, 4095 B, 4097 B, 1 MiB + 3 B, 32 MiB + 4097 B: a partial block, one block and a
    // byte, groups of 512 KiB, gathers.
    let whole = [&files[0], &files[2], &files[3], &files[5], &files[7]];
    for (backend, _, _) in backends {
        for (io, io_name, direct) in crate::function::io_modes() {
            g.case(
                &format!("{backend}/{io_name}: digests of whole files equal sha256sum and fsverity digest"),
                || {
                    for f in whole {
                        digests_case(svc, backend, io, direct, &[(f, 0, 0, 0)])
                            .map_err(|e| format!("{} B: {e}", f.size))?;
                    }
                    Ok(())
                },
            );
        }
        let (a, b) = (&files[5], &files[4]);
        g.case(
            &format!("{backend}: digests of segments at odd offsets are over their own bytes"),
            || {
                let parts = [
                    (a, 4097, 600_001, 3),
                    (b, 0, 0, (1 << 20) + 1),
                    (a, (1 << 20) - 1, 0, (2 << 20) - 5),
                ];
                digests_case(svc, backend, IoMode::AUTO, true, &parts)
            },
        );
    }
    let verity = match verity_file(dir, "verity.bin", 777, (4 << 20) + 3) {
        Ok(f) => f,
        Err(e) => {
            g.case("a file with fs-verity on", || Err(e));
            return;
        }
    };
    let tool = Command::new("fsverity")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    figure(
        "fs-verity reference",
        if tool {
            "fsverity digest (the device's tool) and the in-process computation"
        } else {
            "the in-process computation (no fsverity tool on this device)"
        },
    );
    for (backend, _, _) in backends {
        g.case(
            &format!("{backend}: a file with fs-verity on reports the kernel's measurement (fromKernel), equal to fsverity digest"),
            || verity_case(svc, backend, &verity),
        );
    }
}
