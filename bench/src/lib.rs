//! dmaload-bench: the seed's table reproduced side by side in one run. For each file size:
//! the floors (allocation alone, raw O_DIRECT read), the seed's schemes, and dmaload with
//! each backend and auto; cold cache before every run; medians; page-cache growth and the
//! process's peak RSS; ratios against the physical limit and against `normal`.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod plot;
mod report;
mod schemes;
mod system;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dmaload_abi::memfd::{hugetlb_pages_free, HUGETLB_PAGE};
use dmaload_abi::meminfo::MemInfo;
use dmaload_abi::system::cpu_count;
use dmaload_engine::{
    Backend, BufferKind, DigestAlgorithm, Engine, EngineConfig, IoEngine, Tunables,
};

pub use report::Row;
use schemes::{Bench, Engines, Scheme, Variant};

#[derive(Parser, Debug)]
#[command(
    name = "dmaload-bench",
    about = "dmaload vs the seed's schemes, side by side"
)]
pub struct Args {
    /// File sizes: 512K, 8M, 256M, 1G, 3G (K/M/G/T are binary units; see dmaload_abi::size).
    #[arg(long, value_delimiter = ',', default_value = "512K,8M,256M,1G,3G")]
    pub sizes: Vec<String>,
    /// Runs per scheme and size (median reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Directory on the file system to test (test files are created there).
    #[arg(long, default_value = "/var/tmp")]
    pub dir: PathBuf,
    /// Print one JSON array of rows on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write a PNG plot of physical limit ÷ time per scheme.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Plot rows from a JSON file written earlier with --json (e.g. from the virtual
    /// device) instead of measuring.
    #[arg(long)]
    pub plot_from: Option<PathBuf>,
    /// Only these schemes (comma separated names as in the JSON).
    #[arg(long, value_delimiter = ',')]
    pub schemes: Vec<String>,
    /// Only these backends (comma separated, as in the JSON's `backend`, e.g.
    /// `auto,udmabuf+shmem,heap:system+io_uring`; floors and baselines are always kept).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Keep the test files afterwards.
    #[arg(long)]
    pub keep_files: bool,
    /// Verify the buffer content of every scheme's first run against the file.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify: bool,
}

/// Creates (or reuses) a test file of `size` bytes with non-repeating content.
fn test_file(dir: &Path, size: u64) -> Result<PathBuf> {
    let path = dir.join(format!("dmaload-bench-{size}.bin"));
    if std::fs::metadata(&path)
        .map(|m| m.len() == size)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let mut x: u64 = size | 1;
    let mut block = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(path)
}

fn schemes_for(engine: &Engine, size: u64, args: &Args) -> Vec<Scheme> {
    let backends = engine.backends();
    let heaps: Vec<String> = backends
        .iter()
        .filter_map(|b| match &b.backend {
            Backend::Heap(h) => Some(h.clone()),
            _ => None,
        })
        .collect();
    let main_heap = heaps
        .iter()
        .find(|h| *h == "system")
        .or(heaps.first())
        .cloned();
    let udmabuf = backends.iter().find(|b| b.backend == Backend::Udmabuf);
    let udmabuf_fits = udmabuf.is_some_and(|b| size <= b.max_buffer_bytes);
    let threads = Tunables::default().reader_threads;
    let threads = if threads == 0 {
        (2 * cpu_count()).clamp(2, 8)
    } else {
        threads
    };
    // With a hugetlb pool that can take the buffer, udmabuf uses it: compare with shmem.
    // The engine's rule: buffers above the inline size, whole in the pool's free pages.
    let hugetlb_fits =
        udmabuf_fits && size > HUGETLB_PAGE && hugetlb_pages_free() >= size.div_ceil(HUGETLB_PAGE);
    let mut list = vec![Scheme::AllocFloor { heap: None }];
    if hugetlb_fits {
        list.push(Scheme::AllocFloorHugetlb);
    }
    if let Some(h) = &main_heap {
        list.push(Scheme::AllocFloor {
            heap: Some(h.clone()),
        });
    }
    list.push(Scheme::DirectFloor {
        threads: threads as usize,
    });
    list.push(Scheme::Normal {
        heap: main_heap.clone(),
    });
    if udmabuf_fits {
        list.push(Scheme::UdmabufBuffered);
        list.push(Scheme::UdmabufDirect);
    }
    if let Some(h) = &main_heap {
        list.push(Scheme::HeapBounce { heap: h.clone() });
    }
    let mut kinds = vec![BufferKind::Memfd];
    if udmabuf_fits {
        kinds.push(BufferKind::Udmabuf);
    }
    kinds.extend(heaps.iter().map(|h| BufferKind::Heap(h.clone())));
    kinds.push(BufferKind::Auto);
    for kind in kinds {
        list.push(Scheme::Dmaload {
            kind: kind.clone(),
            variant: Variant::Default,
        });
        list.push(Scheme::Dmaload {
            kind: kind.clone(),
            variant: Variant::IoUring,
        });
        for algorithm in DigestAlgorithm::ALL {
            list.push(Scheme::Dmaload {
                kind: kind.clone(),
                variant: Variant::Digest(algorithm),
            });
        }
        if hugetlb_fits && matches!(kind, BufferKind::Udmabuf | BufferKind::Auto) {
            list.push(Scheme::Dmaload {
                kind,
                variant: Variant::NoHugetlb,
            });
        }
    }
    list.retain(|s| args.schemes.is_empty() || args.schemes.iter().any(|n| n == s.name()));
    list.retain(|s| {
        !matches!(s, Scheme::Dmaload { .. })
            || args.backends.is_empty()
            || args.backends.iter().any(|b| *b == s.backend())
    });
    list
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(input) = &args.plot_from {
        let rows = report::read_json(input)?;
        let out = args
            .plot
            .clone()
            .unwrap_or_else(|| input.with_extension("png"));
        plot::write(&rows, &out)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    let mut sizes = Vec::new();
    for s in &args.sizes {
        sizes.push(dmaload_abi::parse_size(s)?);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)?;
    let mem = MemInfo::read().context("/proc/meminfo")?;
    // The benchmark is the only client: let it use what the machine has.
    let mut config = EngineConfig::for_memory(mem);
    config.global_cap_bytes = mem.available;
    config.per_owner_cap_bytes = mem.available;
    config.max_buffer_bytes = mem.available;
    config.min_available_after_bytes = 128 << 20;
    let make = |io_engine: IoEngine, hugetlb: bool| {
        let mut config = config.clone();
        config.io_engine = io_engine;
        config.hugetlb = hugetlb;
        Engine::new(config).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let engines = Engines {
        default: make(IoEngine::Pread, true)?,
        io_uring: make(IoEngine::IoUring, true)?,
        no_hugetlb: make(IoEngine::Pread, false)?,
    };
    let engine = &engines.default;
    let bench = Bench {
        engines: &engines,
        heap_dir: engine.config().dma_heap_dir.clone(),
        udmabuf: engine.config().udmabuf_device.clone(),
    };
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    writeln!(
        out,
        "dmaload-bench on {} ({} MiB RAM, {} CPUs)",
        args.dir.display(),
        mem.total >> 20,
        cpu_count()
    )?;
    for b in engine.backends() {
        writeln!(out, "  backend {:<14} {}", b.backend.name(), b.detail)?;
    }
    let mut rows = Vec::new();
    let mut cold = true;
    for &size in &sizes {
        // The buffered baselines need the buffer and the file's page cache at once.
        let avail = MemInfo::read().map(|m| m.available).unwrap_or(0);
        if size.saturating_mul(2) + (256 << 20) > avail {
            writeln!(
                out,
                "skipping {} MiB: needs ~2x its size of available memory ({} MiB)",
                size >> 20,
                avail >> 20
            )?;
            continue;
        }
        let path = test_file(&args.dir, size)?;
        // Runs go round-robin over the schemes, so slow drifts of the machine (other
        // work, thermal, host caches) spread over all schemes alike.
        let schemes = schemes_for(engine, size, args);
        let mut samples: Vec<Vec<std::time::Duration>> = vec![Vec::new(); schemes.len()];
        let mut growth = vec![0u64; schemes.len()];
        let mut peak = vec![0u64; schemes.len()];
        let mut notes = vec![String::new(); schemes.len()];
        let mut failed = vec![false; schemes.len()];
        // With digest rows: one core's SHA-256 over `size` bytes, each run (the sha256 bound).
        let digests = schemes.iter().any(|s| s.digest() != "none");
        let mut sha256_samples = Vec::new();
        for run in 0..args.runs {
            if digests {
                sha256_samples.push(schemes::sha256_one_core(size));
            }
            for (i, scheme) in schemes.iter().enumerate() {
                if failed[i] {
                    continue;
                }
                cold &= system::drop_caches();
                let file = File::open(&path)?;
                let before = system::cached_bytes(std::os::fd::AsFd::as_fd(&file), size);
                system::reset_peak_rss();
                let result = match bench.run(scheme, &path, size) {
                    Ok(r) => r,
                    Err(e) => {
                        notes[i] = format!("failed: {e:#}");
                        failed[i] = true;
                        continue;
                    }
                };
                peak[i] = peak[i].max(system::peak_rss());
                let after = system::cached_bytes(std::os::fd::AsFd::as_fd(&file), size);
                growth[i] = growth[i].max(after.saturating_sub(before));
                samples[i].push(result.elapsed);
                if run == 0 {
                    if let Some(stats) = &result.stats {
                        notes[i] = report::describe_stats(result.backend_used.as_deref(), stats);
                    }
                    if args.verify {
                        if let Some((fd, len)) = &result.buffer {
                            schemes::verify(fd, *len, &path).with_context(|| {
                                format!("{} {} content check", scheme.name(), scheme.backend())
                            })?;
                        }
                    }
                }
            }
        }
        for (i, scheme) in schemes.iter().enumerate() {
            let note = &notes[i];
            if samples[i].is_empty() {
                writeln!(
                    out,
                    "  {:<16} {:<12} {note}",
                    scheme.name(),
                    scheme.backend()
                )?;
                continue;
            }
            let row = Row::new(scheme, size, &samples[i], growth[i], peak[i]);
            let note = if note.is_empty() {
                String::new()
            } else {
                format!("  [{note}]")
            };
            writeln!(out, "  {}{note}", row.line())?;
            rows.push(row);
        }
        if !sha256_samples.is_empty() {
            let row = Row::sha256_floor(size, &sha256_samples);
            writeln!(out, "  {}", row.line())?;
            rows.push(row);
        }
        if !args.keep_files {
            std::fs::remove_file(&path).ok();
        }
    }
    if !cold {
        writeln!(
            out,
            "WARNING: could not drop caches (not root?): runs were not cold"
        )?;
    }
    report::print_tables(&mut out, &rows)?;
    report::print_digest_costs(&mut out, &rows)?;
    if let Some(plot) = &args.plot {
        plot::write(&rows, plot)?;
        writeln!(out, "wrote {}", plot.display())?;
    }
    if args.json {
        println!("{}", report::to_json(&rows));
    }
    Ok(())
}
