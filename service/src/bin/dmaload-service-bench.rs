//! Service overhead: the same file loaded (a) through dmaloadd over binder, (b) by the engine
//! in this process, (c) the "normal" way (allocate, mmap, buffered read), side by side in one
//! run, cold page cache before every load. Prints medians and the ratios to "normal".
//!
//!   dmaload-service-bench [--sizes 512K,8M] [--runs 7] [--dir DIR] [--backend memfd]
//!
//! Linux hosts use RPC binder on a Unix socket (dmaloadd is started from this binary's
//! directory); build both with `--release` for meaningful figures.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dmaload_abi::file::drop_cached;
use dmaload_abi::memfd::Memfd;
use dmaload_abi::mmap::Mapping;
use dmaload_abi::{parse_size, SERVICE_INSTANCE};
use dmaload_aidl::{aidl as idl, IDmaLoader::IDmaLoader};
use dmaload_engine::{
    BackendChoice, Caller, CancelToken, Engine, EngineConfig, LoadRequest, NoProgress,
};
use rsbinder::{ParcelFileDescriptor, Strong};

fn main() -> anyhow::Result<()> {
    let mut sizes = vec![512 << 10, 8 << 20];
    let mut runs = 7usize;
    let mut dir = std::env::temp_dir();
    let mut backend = "memfd".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!(
                "usage: dmaload-service-bench [--sizes 512K,8M] [--runs 7] [--dir DIR] \
                 [--backend memfd]\n\
                 Loads each size through dmaloadd (binder), the engine in-process and the \
                 \"normal\" way, side by side, cold cache; prints medians and ratios."
            );
            return Ok(());
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => sizes = value.split(',').map(parse_size).collect::<Result<_, _>>()?,
            "--runs" => runs = value.parse()?,
            "--dir" => dir = value.into(),
            "--backend" => backend = value,
            _ => bail!("unknown flag {flag}; see the source header for usage"),
        }
    }
    let work = std::env::current_dir()?
        .join(dir)
        .join(format!("dmaload-service-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&work, &sizes, runs, &backend);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(work: &Path, sizes: &[u64], runs: usize, backend: &str) -> anyhow::Result<()> {
    let socket = work.join("sock");
    let daemon_path = std::env::current_exe()?.with_file_name("dmaloadd");
    let mut daemon = std::process::Command::new(&daemon_path)
        .arg("--rpc-socket")
        .arg(&socket)
        .env("DMALOAD_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", daemon_path.display()))?;
    let outcome = (|| {
        let loader = connect(&socket)?;
        let engine = Engine::new(EngineConfig::from_system())?;
        println!("backend {backend}, {runs} runs each, median ms, cold page cache");
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>15} {:>15}",
            "size", "normal", "engine", "binder", "binder/normal", "binder/engine"
        );
        for &size in sizes {
            let path = work.join(format!("file-{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data)?;
            let (mut normal, mut inproc, mut binder) = (Vec::new(), Vec::new(), Vec::new());
            // Interleaved, so drift on the machine hits every scheme alike.
            for _ in 0..runs {
                normal.push(timed(&path, |p| load_normal(p, size))?);
                inproc.push(timed(&path, |p| load_engine(&engine, p, backend))?);
                binder.push(timed(&path, |p| load_binder(&loader, p, backend))?);
            }
            let (n, e, b) = (
                median(&mut normal),
                median(&mut inproc),
                median(&mut binder),
            );
            println!(
                "{:>8} {:>10.3} {:>10.3} {:>10.3} {:>15.2} {:>15.2}",
                human(size),
                ms(n),
                ms(e),
                ms(b),
                b.as_secs_f64() / n.as_secs_f64(),
                b.as_secs_f64() / e.as_secs_f64()
            );
        }
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    outcome
}

fn connect(socket: &Path) -> anyhow::Result<Strong<dyn IDmaLoader>> {
    use rsbinder::entry::{WireProfile, WireVersion};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let uri = rsbinder::Uri::new(rsbinder::Endpoint::unix(socket))
            .with_wire(WireProfile::Android13Plus(WireVersion::MAX));
        let opened = rsbinder::Client::open_with(uri, |o, _| {
            o.fd_mode = Some(rsbinder::rpc::FileDescriptorTransportMode::Unix);
        })
        .and_then(|c| c.get::<dyn IDmaLoader>(SERVICE_INSTANCE));
        match opened {
            Ok(loader) => return Ok(loader),
            Err(e) if Instant::now() > deadline => bail!("dmaloadd on {}: {e:?}", socket.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Drops the file's cached pages, then times `load`.
fn timed(
    path: &Path,
    load: impl FnOnce(&Path) -> anyhow::Result<OwnedFd>,
) -> anyhow::Result<Duration> {
    let file = std::fs::File::open(path)?;
    drop_cached(file.as_fd(), 0, file.metadata()?.len())?;
    let start = Instant::now();
    let buffer = load(path)?;
    let elapsed = start.elapsed();
    drop(buffer);
    Ok(elapsed)
}

fn open_direct(path: &Path) -> anyhow::Result<OwnedFd> {
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    // File systems without O_DIRECT (tmpfs): the service reads buffered and says so.
    Ok(direct.or_else(|_| std::fs::File::open(path))?.into())
}

/// The usual way: allocate, map, buffered read() into the mapping.
fn load_normal(path: &Path, size: u64) -> anyhow::Result<OwnedFd> {
    let memfd = Memfd::create("normal", size.next_multiple_of(4096))?;
    let mut map = Mapping::map_shared(memfd.as_fd(), memfd.size() as usize)?;
    let dst = &mut map.as_mut_slice()[..size as usize];
    std::fs::File::open(path)?.read_exact(dst)?;
    drop(map);
    Ok(memfd.into_fd())
}

fn load_engine(engine: &Engine, path: &Path, backend: &str) -> anyhow::Result<OwnedFd> {
    let req = LoadRequest::whole_file(open_direct(path)?, "bench")
        .with_backend(BackendChoice::parse(backend));
    let loaded = engine.load(Caller::new(0), req, &CancelToken::new(), &NoProgress)?;
    Ok(loaded.fd)
}

fn load_binder(
    loader: &Strong<dyn IDmaLoader>,
    path: &Path,
    backend: &str,
) -> anyhow::Result<OwnedFd> {
    let req = idl::LoadRequest::LoadRequest {
        segments: vec![idl::FileSegment::FileSegment {
            fd: Some(ParcelFileDescriptor::new(open_direct(path)?)),
            ..Default::default()
        }],
        backend: backend.into(),
        name: "bench".into(),
        ..Default::default()
    };
    let result = loader
        .load(&req)
        .map_err(|s| anyhow::anyhow!("load: {s}"))?;
    loader
        .releaseBuffer(result.bufferId)
        .map_err(|s| anyhow::anyhow!("releaseBuffer: {s}"))?;
    let fd = result.buffer.context("no buffer fd")?;
    Ok(fd.as_ref().try_clone()?)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn human(size: u64) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}M", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{}K", s >> 10),
        s => s.to_string(),
    }
}
