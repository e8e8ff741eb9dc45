//! dmaload-bench: the seed's table reproduced side by side in one run. For each file size:
//! the floors (allocation alone, raw O_DIRECT read), the seed's schemes, and dmaload with
//! each backend and auto; cold cache before every run; medians; page-cache growth and the
//! process's peak RSS; ratios against the physical limit and against `normal`.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod concurrent;
mod plot;
mod report;
mod schemes;
mod service;
mod system;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dmaload_abi::memfd::{HugetlbPages, HUGETLB_PAGE};
use dmaload_abi::meminfo::MemInfo;
use dmaload_abi::system::cpu_count;
use dmaload_engine::{Backend, BackendChoice, Engine, EngineConfig, IoEngine};

use concurrent::Concurrent;
pub use report::Row;
use schemes::{Bench, Engines, FloorMemory, Scheme, Variant};
use service::{Service, ServiceOptions, Transport};

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
    /// `auto,udmabuf+shmem,heap:system+io_uring`) for the dmaload rows (in-process, through
    /// the service, concurrent); floors and baselines are always kept.
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Keep the test files afterwards.
    #[arg(long)]
    pub keep_files: bool,
    /// Verify the buffer content of every scheme's first run against the file.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verify: bool,
    /// File sizes of the concurrent rows (each client loads its own file of this size).
    #[arg(long, value_delimiter = ',', default_value = "256M")]
    pub concurrent_sizes: Vec<String>,
    /// Clients loading at once in the concurrent rows.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// dmaloadd for the rows through the service (`dmaload_service`, `dmaload_warm`,
    /// `dmaload_concurrent`; default: beside this program, else in $DMALOAD_GUEST_BIN_DIR).
    #[arg(long)]
    pub dmaloadd: Option<PathBuf>,
    /// The service manager for kernel binder (rsbinder's `rsb_hub`; same default places).
    #[arg(long)]
    pub service_manager: Option<PathBuf>,
    /// How to reach dmaloadd: kernel binder where /dev/binder exists (auto), or RPC binder
    /// on a Unix socket.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,
}

/// The threads dmaload works with by default on this machine (the engine's rule for
/// `Tunables` left at 0): readers, and populating (memfd, udmabuf) or copying (dma-heap)
/// threads.
fn default_threads() -> (usize, usize) {
    let cpus = cpu_count() as usize;
    ((2 * cpus).clamp(2, 8), cpus.clamp(1, 4))
}

/// Loads up to this size run on the load's own thread alone (the engine's rule).
const INLINE_MAX: u64 = 2 << 20;

fn wanted(args: &Args, name: &str) -> bool {
    args.schemes.is_empty() || args.schemes.iter().any(|n| n == name)
}

fn wanted_backend(args: &Args, backend: &str) -> bool {
    args.backends.is_empty() || args.backends.iter().any(|b| b == backend)
}

/// Creates (or reuses) a test file of `size` bytes with non-repeating content; `client` > 0
/// names another file of that size (with other content) for the concurrent rows.
fn test_file(dir: &Path, size: u64, client: usize) -> Result<PathBuf> {
    let path = if client == 0 {
        dir.join(format!("dmaload-bench-{size}.bin"))
    } else {
        dir.join(format!("dmaload-bench-{size}-c{client}.bin"))
    };
    if std::fs::metadata(&path)
        .map(|m| m.len() == size)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let mut x: u64 = (size | 1) ^ ((client as u64) << 40);
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
    // The threads dmaload would use for this size: loads up to 2 MiB run on their own
    // thread; no more readers than 8 MiB reads.
    let (readers, populators) = if size <= INLINE_MAX {
        (1, 1)
    } else {
        let (readers, populators) = default_threads();
        (readers.min(size.div_ceil(8 << 20) as usize), populators)
    };
    // hugetlb memory where the kernel has it for the buffer: the engine's rule (buffers above
    // the inline size; the pool's free pages first, else surplus pages on demand).
    let pages = HugetlbPages::read();
    let needed = size.div_ceil(HUGETLB_PAGE);
    let hugetlb_size = udmabuf_fits && size > HUGETLB_PAGE;
    let pool_fits = hugetlb_size && pages.pool_free() >= needed;
    let surplus_fits =
        hugetlb_size && !pool_fits && pages.pool_free() + pages.surplus_room() >= needed;
    let floor = |memory| Scheme::AllocFloor {
        memory,
        threads: populators,
    };
    let mut list = vec![floor(FloorMemory::Shmem)];
    if pool_fits {
        list.push(floor(FloorMemory::HugetlbPool));
    }
    if surplus_fits {
        list.push(floor(FloorMemory::HugetlbSurplus));
    }
    if let Some(h) = &main_heap {
        list.push(floor(FloorMemory::Heap(h.clone())));
        list.push(Scheme::HeapFloor {
            heap: h.clone(),
            threads: populators,
        });
    }
    list.push(Scheme::DirectFloor { threads: readers });
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
    let mut kinds = vec![BackendChoice::Memfd];
    if udmabuf_fits {
        kinds.push(BackendChoice::Udmabuf);
    }
    kinds.extend(heaps.iter().map(|h| BackendChoice::Heap(h.clone())));
    kinds.push(BackendChoice::Auto);
    for kind in &kinds {
        list.push(Scheme::Dmaload {
            kind: kind.clone(),
            variant: Variant::Default,
        });
        list.push(Scheme::Dmaload {
            kind: kind.clone(),
            variant: Variant::IoUring,
        });
        if (pool_fits || surplus_fits)
            && matches!(kind, BackendChoice::Udmabuf | BackendChoice::Auto)
        {
            list.push(Scheme::Dmaload {
                kind: kind.clone(),
                variant: Variant::NoHugetlb,
            });
        }
    }
    for kind in kinds {
        list.push(Scheme::DmaloadService { kind });
    }
    list.push(Scheme::DmaloadWarm);
    list.retain(|s| wanted(args, s.name()));
    list.retain(|s| {
        !matches!(
            s,
            Scheme::Dmaload { .. } | Scheme::DmaloadService { .. } | Scheme::DmaloadWarm
        ) || wanted_backend(args, &s.backend())
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
    let parse = |list: &[String]| -> Result<Vec<u64>> {
        list.iter()
            .map(|s| dmaload_abi::parse_size(s).map_err(anyhow::Error::from))
            .collect()
    };
    let sizes = parse(&args.sizes)?;
    let concurrent_sizes = if wanted(args, "dmaload_concurrent") && args.clients > 0 {
        parse(&args.concurrent_sizes)?
    } else {
        Vec::new()
    };
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)?;
    let mem = MemInfo::read().context("/proc/meminfo")?;
    // The benchmark is the only client: let it use what the machine has.
    let mut config = EngineConfig::for_memory(mem);
    config.global_cap_bytes = mem.available;
    config.per_caller_cap_bytes = mem.available;
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
    // dmaloadd with its own defaults (the device's configuration), for the rows through it;
    // for dmaload_warm it also keeps released shareable buffers (twice the largest size).
    let warm = wanted(args, "dmaload_warm");
    let service =
        if !concurrent_sizes.is_empty() || warm || wanted(args, "dmaload_service") {
            let largest = sizes.iter().copied().max().unwrap_or(0);
            let options = ServiceOptions {
                dmaloadd: args
                    .dmaloadd
                    .clone()
                    .unwrap_or_else(|| ServiceOptions::default_program("dmaloadd")),
                service_manager: args
                    .service_manager
                    .clone()
                    .unwrap_or_else(|| ServiceOptions::default_program("rsb_hub")),
                transport: args.transport,
                dir: std::env::temp_dir(),
                warm_cache_bytes: warm.then(|| largest.saturating_mul(2).max(64 << 20)),
            };
            Some(Service::start(&options).context(
                "the rows through dmaloadd need the service; leave them out with --schemes",
            )?)
        } else {
            None
        };
    let bench = Bench {
        engines: &engines,
        heap_dir: engine.config().dma_heap_dir.clone(),
        udmabuf: engine.config().udmabuf_device.clone(),
        service: service.as_ref(),
    };
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let (readers, populators) = default_threads();
    writeln!(
        out,
        "dmaload-bench on {} ({} MiB RAM, {} CPUs; floors with {populators} populating/copying \
         and {readers} reading threads, as dmaload)",
        args.dir.display(),
        mem.total >> 20,
        cpu_count()
    )?;
    for b in engine.backends() {
        writeln!(out, "  backend {:<14} {}", b.backend.name(), b.detail)?;
    }
    let pages = HugetlbPages::read();
    writeln!(
        out,
        "  hugetlb 2 MiB pages: {} free in the pool ({} reserved), {} surplus of {} allowed",
        pages.free, pages.reserved, pages.surplus, pages.overcommit
    )?;
    if let Some(service) = &service {
        writeln!(out, "  dmaloadd over {} binder", service.transport())?;
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
        let path = test_file(&args.dir, size, 0)?;
        // Runs go round-robin over the schemes, so slow drifts of the machine (other
        // work, thermal, host caches) spread over all schemes alike.
        let schemes = schemes_for(engine, size, args);
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); schemes.len()];
        let mut growth = vec![0u64; schemes.len()];
        let mut peak = vec![0u64; schemes.len()];
        let mut notes = vec![String::new(); schemes.len()];
        let mut memory = vec![String::new(); schemes.len()];
        let mut failed = vec![false; schemes.len()];
        for run in 0..args.runs {
            for (i, scheme) in schemes.iter().enumerate() {
                if failed[i] {
                    continue;
                }
                cold &= system::drop_caches();
                let file = File::open(&path)?;
                let before = system::cached_bytes(std::os::fd::AsFd::as_fd(&file), size);
                let daemon = service.as_ref().filter(|_| scheme.needs_service());
                match daemon {
                    Some(d) => d.reset_peak_rss(),
                    None => system::reset_peak_rss(),
                }
                let result = match bench.run(scheme, &path, size) {
                    Ok(r) => r,
                    Err(e) => {
                        notes[i] = format!("failed: {e:#}");
                        failed[i] = true;
                        continue;
                    }
                };
                peak[i] = peak[i].max(match daemon {
                    Some(d) => d.peak_rss(),
                    None => system::peak_rss(),
                });
                let after = system::cached_bytes(std::os::fd::AsFd::as_fd(&file), size);
                growth[i] = growth[i].max(after.saturating_sub(before));
                samples[i].push(result.elapsed);
                if run == 0 {
                    notes[i] = result.note.clone().unwrap_or_default();
                    memory[i] = result.memory.clone().unwrap_or_default();
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
            let row = Row::new(scheme, size, &samples[i], growth[i], peak[i], &memory[i]);
            let note = if note.is_empty() {
                String::new()
            } else {
                format!("  [{note}]")
            };
            writeln!(out, "  {}{note}", row.line())?;
            rows.push(row);
        }
        if !args.keep_files {
            std::fs::remove_file(&path).ok();
        }
    }
    if let Some(service) = &service {
        for &size in &concurrent_sizes {
            cold &= run_concurrent(args, service, size, &mut out, &mut rows)?;
        }
    }
    if !cold {
        writeln!(
            out,
            "WARNING: could not drop caches (not root?): runs were not cold"
        )?;
    }
    report::print_tables(&mut out, &rows)?;
    if let Some(plot) = &args.plot {
        plot::write(&rows, plot)?;
        writeln!(out, "wrote {}", plot.display())?;
    }
    if args.json {
        println!("{}", report::to_json(&rows));
    }
    Ok(())
}

/// The concurrent rows of one file size: `--clients` clients through dmaloadd, each with its
/// own connection and file, beside the raw direct read of the same files at once, runs
/// alternating. Returns whether every run started cold.
fn run_concurrent(
    args: &Args,
    service: &Service,
    size: u64,
    out: &mut dyn Write,
    rows: &mut Vec<Row>,
) -> Result<bool> {
    let clients = args.clients;
    let avail = MemInfo::read().map(|m| m.available).unwrap_or(0);
    if size.saturating_mul(clients as u64) + (512 << 20) > avail {
        writeln!(
            out,
            "skipping {clients} concurrent clients of {} MiB: {} MiB available",
            size >> 20,
            avail >> 20
        )?;
        return Ok(true);
    }
    let files = (0..clients)
        .map(|i| test_file(&args.dir, size, i))
        .collect::<Result<Vec<_>>>()?;
    let loaders = (0..clients)
        .map(|_| service.connect())
        .collect::<Result<Vec<_>>>()?;
    let (readers, _) = default_threads();
    let mut schemes = vec![(
        "direct_floor",
        format!("{readers} threads per file"),
        readers,
        Concurrent::DirectFloor { threads: readers },
    )];
    for backend in ["auto"] {
        if wanted_backend(args, backend) {
            schemes.push((
                "dmaload_concurrent",
                backend.to_string(),
                0,
                Concurrent::Service {
                    kind: BackendChoice::Auto,
                },
            ));
        }
    }
    let mut rounds = vec![Vec::new(); schemes.len()];
    let mut peak = vec![0u64; schemes.len()];
    let mut cold = true;
    for run in 0..args.runs {
        for (i, (name, backend, _, scheme)) in schemes.iter().enumerate() {
            cold &= system::drop_caches();
            service.reset_peak_rss();
            let (round, buffers) = concurrent::run(scheme, &files, size, &loaders)
                .with_context(|| format!("{name} {backend} with {clients} clients"))?;
            peak[i] = peak[i].max(service.peak_rss());
            if run == 0 && args.verify {
                for (fd, path) in buffers.iter().zip(&files) {
                    if let Some(fd) = fd {
                        schemes::verify(fd, size as usize, path)
                            .with_context(|| format!("{name} {backend} content check"))?;
                    }
                }
            }
            rounds[i].push(round);
        }
    }
    for (i, (name, backend, threads, _)) in schemes.iter().enumerate() {
        let row = Row::concurrent(name, backend.clone(), *threads, size, &rounds[i], peak[i]);
        writeln!(out, "  {}", row.line())?;
        rows.push(row);
    }
    if !args.keep_files {
        for path in &files {
            std::fs::remove_file(path).ok();
        }
    }
    Ok(cold)
}
