//! `load`, `heaps`, `stats` and `bench`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use dmaload::{ErrorCode, IoMode, LoadRequest, LoadedBuffer, Loader};
use dmaload_abi::Untrusted;
use ring::digest::{digest, SHA256};
use serde_json::json;

use crate::args::{BenchArgs, LoadArgs, SegmentArg};
use crate::progress::ProgressDisplay;

/// Loads at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_BAR_MIN_BYTES: u64 = 64 << 20;

pub fn run(loader: &Loader, args: &LoadArgs) -> anyhow::Result<()> {
    let mut request = LoadRequest::new();
    let mut buffer_offset = 0u64;
    let mut segments = Vec::new();
    for text in &args.segments {
        let seg = SegmentArg::parse(text).map_err(anyhow::Error::msg)?;
        let shown = Untrusted::path(&seg.path);
        let file_len = std::fs::metadata(&seg.path)
            .with_context(|| format!("{shown}"))?
            .len();
        if seg.offset > file_len {
            return Err(dmaload::Error::service(
                ErrorCode::Range,
                format!(
                    "{shown}: offset {} is past the end of the file ({file_len} bytes)",
                    seg.offset
                ),
            )
            .into());
        }
        // Resolve "to the end" here so the next segment can be placed right after this one.
        let length = if seg.length == 0 {
            file_len - seg.offset
        } else {
            seg.length
        };
        let direct = request.add_file(&seg.path, seg.offset, length, buffer_offset)?;
        segments.push(json!({
            "path": seg.path.display().to_string(),
            "file_offset": seg.offset,
            "length": length,
            "buffer_offset": buffer_offset,
            "o_direct": direct,
        }));
        buffer_offset = buffer_offset
            .checked_add(length)
            .context("segments add up to more than 2^64 bytes")?;
    }
    let data_len = buffer_offset;
    request.set_backend(args.heap.as_deref());
    request.set_io_mode(IoMode::parse(&args.mode).context("--mode")?);
    request.set_name(&args.name)?;
    request.set_shareable(args.share);
    if let Some(gather) = args.gather {
        request.set_gather_size(gather);
    }

    let started = Instant::now();
    let buffer = if args.quiet || args.json || data_len < PROGRESS_BAR_MIN_BYTES {
        loader.load(&request)?
    } else {
        let bar = Arc::new(ProgressDisplay::new(data_len));
        let pending = loader.load_async(&request, bar.clone())?;
        let outcome = pending.join();
        bar.finish();
        outcome?
    };
    let elapsed = started.elapsed();

    let checksum = if args.checksum {
        Some(sha256_of(&buffer, data_len)?)
    } else {
        None
    };
    let report = summary(
        &buffer,
        data_len,
        elapsed.as_nanos() as u64,
        checksum.as_deref(),
        segments,
    );
    // Released before the report: a failure then prints only itself.
    loader
        .release_buffer(buffer.buffer_id())
        .context("releasing the buffer's charge")?;
    if args.json {
        println!("{report}");
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// SHA-256 of the first `len` bytes, read from the returned buffer itself.
fn sha256_of(buffer: &LoadedBuffer, len: u64) -> anyhow::Result<String> {
    let sum = if len == 0 {
        digest(&SHA256, &[])
    } else {
        let mapped = buffer.map(len).context("mapping the loaded buffer")?;
        digest(&SHA256, mapped.as_bytes())
    };
    Ok(sum.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

fn summary(
    buffer: &LoadedBuffer,
    data_len: u64,
    client_ns: u64,
    sha256: Option<&str>,
    segments: Vec<serde_json::Value>,
) -> serde_json::Value {
    let s = buffer.stats();
    let throughput = if s.total_ns > 0 {
        data_len as f64 / (s.total_ns as f64 / 1e9) / (1 << 20) as f64
    } else {
        0.0
    };
    let mut report = json!({
        "size_bytes": buffer.size(),
        "data_bytes": data_len,
        "backend": buffer.backend(),
        "io_mode": buffer.io_mode().name(),
        "name": buffer.name(),
        "buffer_id": buffer.buffer_id(),
        "opened_direct": buffer.opened_direct(),
        "reuse": buffer.reuse().name(),
        "throughput_mib_s": (throughput * 10.0).round() / 10.0,
        "client_ns": client_ns,
        "stats": {
            "total_ns": s.total_ns,
            "alloc_ns": s.alloc_ns,
            "first_gather_ns": s.first_gather_ns,
            "io_ns": s.io_ns,
            "copy_ns": s.copy_ns,
            "direct_bytes": s.direct_bytes,
            "buffered_bytes": s.buffered_bytes,
            "bounced_bytes": s.bounced_bytes,
        },
        "fallbacks": s.fallbacks,
        "segments": segments,
    });
    if let Some(sum) = sha256 {
        report["sha256"] = json!(sum);
    }
    report
}

fn ms(ns: &serde_json::Value) -> f64 {
    ns.as_u64().unwrap_or(0) as f64 / 1e6
}

fn print_summary(r: &serde_json::Value) {
    let s = &r["stats"];
    println!(
        "loaded {} bytes into {} buffer {:?} (id {}) in {:.1} ms: {} MiB/s",
        r["data_bytes"],
        r["backend"].as_str().unwrap_or("?"),
        r["name"].as_str().unwrap_or(""),
        r["buffer_id"],
        ms(&s["total_ns"]),
        r["throughput_mib_s"]
    );
    println!(
        "  time: alloc {:.1} ms, first gather {:.1} ms, read {:.1} ms, copy {:.1} ms (overlapping)",
        ms(&s["alloc_ns"]),
        ms(&s["first_gather_ns"]),
        ms(&s["io_ns"]),
        ms(&s["copy_ns"])
    );
    println!(
        "  bytes: {} direct, {} buffered, {} bounced; io mode {}",
        s["direct_bytes"],
        s["buffered_bytes"],
        s["bounced_bytes"],
        r["io_mode"].as_str().unwrap_or("?")
    );
    match r["reuse"].as_str() {
        Some("coalesced") => println!("  reused: an identical load in flight (no I/O of its own)"),
        Some("shared") => println!("  reused: a live buffer of this uid (no I/O, no new memory)"),
        Some("cached") => {
            println!("  reused: a buffer the service kept warm (no I/O, no new memory)")
        }
        _ => {}
    }
    if !r["opened_direct"].as_bool().unwrap_or(true) {
        println!("  note: a file system refused O_DIRECT; that file was opened for buffered reads");
    }
    match r["fallbacks"].as_array() {
        Some(list) if !list.is_empty() => {
            for f in list {
                println!("  fallback: {}", f.as_str().unwrap_or("?"));
            }
        }
        _ => println!("  fallbacks: none"),
    }
    if let Some(sum) = r["sha256"].as_str() {
        println!("  sha256 {sum}");
    }
}

pub fn heaps(loader: &Loader, as_json: bool) -> anyhow::Result<()> {
    let heaps = loader.heaps()?;
    if as_json {
        let list: Vec<_> = heaps
            .iter()
            .map(|h| {
                json!({"name": h.name, "allowed": h.allowed, "dma_buf": h.dma_buf,
                            "max_buffer_bytes": h.max_buffer_bytes, "detail": h.detail})
            })
            .collect();
        println!("{}", json!({ "heaps": list }));
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<8} {:>16}  detail",
        "name", "allowed", "dma-buf", "max bytes"
    );
    for h in heaps {
        println!(
            "{:<16} {:<8} {:<8} {:>16}  {}",
            h.name, h.allowed, h.dma_buf, h.max_buffer_bytes, h.detail
        );
    }
    Ok(())
}

pub fn stats(loader: &Loader, as_json: bool) -> anyhow::Result<()> {
    let usage = loader.usage()?;
    if as_json {
        println!("{}", usage.to_json());
    } else {
        print!("{}", usage.to_text());
    }
    Ok(())
}

/// Drops `path`'s clean pages from the page cache, so the next read comes from the disk.
fn drop_from_page_cache(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)?;
    dmaload_abi::file::drop_cached(std::os::fd::AsFd::as_fd(&file), 0, 0)?;
    Ok(())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Loads `file` through the service (direct and buffered) and, as the baseline, reads it
/// with plain buffered `read()` into process memory, all in one run, cold cache each time.
pub fn bench(loader: &Loader, args: &BenchArgs) -> anyhow::Result<()> {
    use std::io::Read;
    let size = std::fs::metadata(&args.file)
        .with_context(|| Untrusted::path(&args.file).to_string())?
        .len();
    let runs = args.runs.max(1);
    let mut baseline = Vec::new();
    let mut direct = Vec::new();
    let mut buffered = Vec::new();
    let mut backend = String::new();
    for _ in 0..runs {
        drop_from_page_cache(&args.file)?;
        let start = Instant::now();
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::fs::File::open(&args.file)?.read_to_end(&mut bytes)?;
        baseline.push(start.elapsed().as_nanos() as u64);
        drop(bytes);

        for (mode, samples) in [
            (IoMode::Direct, &mut direct),
            (IoMode::Buffered, &mut buffered),
        ] {
            drop_from_page_cache(&args.file)?;
            let mut request = LoadRequest::new();
            if mode == IoMode::Direct {
                request.add_file(&args.file, 0, 0, 0)?;
            } else {
                let file = std::fs::File::open(&args.file)?;
                request.add_fd(std::os::fd::AsFd::as_fd(&file), 0, 0, 0)?;
            }
            request.set_io_mode(mode).set_name("dmaload-bench")?;
            let start = Instant::now();
            let buffer = loader.load(&request)?;
            samples.push(start.elapsed().as_nanos() as u64);
            backend = buffer.backend().to_string();
            loader.release_buffer(buffer.buffer_id())?;
        }
    }
    let (b, d, f) = (median(baseline), median(direct), median(buffered));
    let ratio = |x: u64| if x > 0 { b as f64 / x as f64 } else { 0.0 };
    let report = json!({
        "file": args.file.display().to_string(),
        "size_bytes": size,
        "runs": runs,
        "backend": backend,
        "baseline_buffered_read_ns": b,
        "dmaload_direct_ns": d,
        "dmaload_buffered_ns": f,
        "speedup_direct_vs_baseline": (ratio(d) * 100.0).round() / 100.0,
        "speedup_buffered_vs_baseline": (ratio(f) * 100.0).round() / 100.0,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} bytes, {runs} runs each, cold page cache, medians (client wall time):",
            size
        );
        println!(
            "  read() into process memory (baseline): {:>10.1} ms",
            b as f64 / 1e6
        );
        println!(
            "  dmaload {backend}, direct I/O:        {:>10.1} ms  ({:.2}x baseline)",
            d as f64 / 1e6,
            ratio(d)
        );
        println!(
            "  dmaload {backend}, buffered I/O:      {:>10.1} ms  ({:.2}x baseline)",
            f as f64 / 1e6,
            ratio(f)
        );
    }
    Ok(())
}
