//! dmaloadd: flags, logging (panics included), thread pool, registration. The service is in
//! `dmaload_service`.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::path::PathBuf;

use anyhow::{bail, Context};
use dmaload_service::{Config, DmaLoaderService};

const USAGE: &str = "\
usage: dmaloadd [--config FILE] [--rpc-socket PATH | --binder DEVICE] [--KEY VALUE]...
  --config FILE       key = value settings (same keys as the flags below)
  --rpc-socket PATH   serve RPC binder on a Unix socket (default /tmp/dmaload.sock on Linux)
  --binder DEVICE     serve on kernel binder (e.g. /dev/binder), registered with the
                      service manager as vendor.dmaload.IDmaLoader/default
  --print-config      print the settings in force and exit
settings (defaults from the device's memory; see `--print-config`):
  --global-cap SIZE   --caller-cap SIZE   --max-buffer SIZE   --max-loads N
  --max-loads-per-caller N   --max-segments N   --max-files N (fds in a request with one
                      fd per segment; the file table takes IDmaLoader.MAX_FILES = 64)
  --gather-size SIZE   --chunk-size SIZE
  --reader-threads N  --threads N (binder threads; default max-loads + 2)
  --worker-threads N (engine threads loads share; default: readers + populating threads)
  --io-engine pread|io_uring (default pread; io_uring falls back to pread where denied)
  --hugetlb true|false (default true: udmabuf memory from the hugetlb pool when it has room)
  --allowed-backends heap:system,udmabuf,memfd (default: all present)
  --allowed-uids 0,1000 (default: anyone the transport admits)   --socket-mode 660
warm reuse (shareable requests; live buffers are shared whatever these say):
  --cache-per-caller SIZE  released shareable buffers kept per uid (default 0: none; dma-buf
                      memory is invisible to the low-memory killer, so a device opts in)
  --cache-max-age SECONDS  how long one is kept (default 60)
  --cache-min-available SIZE  kept ones are freed while MemAvailable is below this
                      (default: twice the min_available_after setting)
";

// Android serves through the service manager only: the paths go unread there.
#[cfg_attr(feature = "android", allow(dead_code))]
enum Transport {
    Rpc(PathBuf),
    Kernel(PathBuf),
}

fn main() {
    init_logging();
    dmaload_service::panic_log::log_panics();
    if let Err(err) = try_main() {
        log::error!("dmaloadd: {err:#}");
        eprintln!("dmaloadd: {err:#}");
        std::process::exit(1);
    }
}

fn try_main() -> anyhow::Result<()> {
    let mut config = Config::from_system();
    let mut transport = default_transport();
    let mut print_config = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--print-config" => print_config = true,
            _ => {
                let key = flag
                    .strip_prefix("--")
                    .with_context(|| format!("unexpected argument {flag:?}\n{USAGE}"))?;
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value"))?;
                match key {
                    "config" => config.apply_file(&PathBuf::from(value))?,
                    "rpc-socket" => transport = Transport::Rpc(value.into()),
                    "binder" => transport = Transport::Kernel(value.into()),
                    _ => config
                        .set(key, &value)
                        .with_context(|| format!("flag {flag}"))?,
                }
            }
        }
    }
    if print_config {
        print!("{}", config.describe());
        return Ok(());
    }
    raise_fd_limit();
    let threads = config.threads;
    let socket_mode = config.socket_mode;
    let service = DmaLoaderService::new(config).context("starting the engine")?;
    serve(service, transport, threads, socket_mode)
}

/// Every file of a request arrives as an fd, installed by the transport before the service
/// sees the request (up to max_files of them, one per segment, from version 1 clients): with
/// the default soft limit (1024) such a request would fail in the kernel with EMFILE instead
/// of getting its error code from the service.
fn raise_fd_limit() {
    if let Err(e) = dmaload_abi::rlimit::raise_open_files() {
        log::warn!("cannot raise the open-file limit to its hard limit: {e}");
    }
}

#[cfg(not(feature = "android"))]
fn default_transport() -> Transport {
    Transport::Rpc(PathBuf::from("/tmp/dmaload.sock"))
}

#[cfg(not(feature = "android"))]
fn init_logging() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::max_level()
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("dmaloadd {} {}: {}", r.level(), r.target(), r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    let level = match std::env::var("DMALOAD_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(not(feature = "android"))]
fn serve(
    service: DmaLoaderService,
    transport: Transport,
    threads: u32,
    socket_mode: u32,
) -> anyhow::Result<()> {
    use rsbinder::{Endpoint, Uri};
    let name = dmaload_abi::SERVICE_INSTANCE;
    match transport {
        Transport::Rpc(path) => {
            // rsbinder takes only absolute socket paths.
            let path = std::env::current_dir()
                .map(|cwd| cwd.join(&path))
                .with_context(|| format!("socket path {}", path.display()))?;
            // A stale socket from a previous run would make bind fail.
            let _ = std::fs::remove_file(&path);
            // android-13+ wire: clients open an incoming connection on it, which the
            // asynchronous loads' callbacks (sent from load threads, outside any handler) need.
            let wire =
                rsbinder::entry::WireProfile::Android13Plus(rsbinder::entry::WireVersion::MAX);
            let guard = rsbinder::serve(Uri::new(Endpoint::unix(&path)).with_wire(wire))
                .map_err(|e| anyhow::anyhow!("RPC server on {}: {e:?}", path.display()))?
                .add(name, service.into_binder().as_binder())
                .map_err(|e| anyhow::anyhow!("adding {name}: {e:?}"))?
                .with(|o| {
                    o.threads = Some(threads);
                    o.fd_modes = Some(vec![rsbinder::rpc::FileDescriptorTransportMode::Unix]);
                })
                .spawn()
                .map_err(|e| anyhow::anyhow!("RPC server on {}: {e:?}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(socket_mode))
                .with_context(|| format!("chmod {:o} {}", socket_mode, path.display()))?;
            log::info!(
                "serving {name} on unix:{} ({threads} threads)",
                path.display()
            );
            let _guard = guard;
            loop {
                std::thread::park();
            }
        }
        Transport::Kernel(device) => {
            let endpoint = rsbinder::entry::KernelEndpoint::default()
                .with_driver(&device)
                .with_threads(threads);
            log::info!("serving {name} on {} ({threads} threads)", device.display());
            rsbinder::serve(Uri::new(Endpoint::Kernel(endpoint)))
                .map_err(|e| anyhow::anyhow!("kernel binder {}: {e:?}", device.display()))?
                .add(name, service.into_binder().as_binder())
                .map_err(|e| anyhow::anyhow!("adding {name}: {e:?}"))?
                .run()
                .map_err(|e| anyhow::anyhow!("registering/serving {name}: {e:?}"))?;
            bail!("the binder thread pool returned")
        }
    }
}

#[cfg(feature = "android")]
fn default_transport() -> Transport {
    Transport::Kernel(PathBuf::from("/dev/binder"))
}

#[cfg(feature = "android")]
fn init_logging() {
    android_logger::init_once(
        android_logger::Config::default()
            .with_tag("dmaloadd")
            .with_max_level(log::LevelFilter::Info),
    );
}

#[cfg(feature = "android")]
fn serve(
    service: DmaLoaderService,
    _transport: Transport,
    threads: u32,
    _socket_mode: u32,
) -> anyhow::Result<()> {
    let name = dmaload_abi::SERVICE_INSTANCE;
    binder::ProcessState::set_thread_pool_max_thread_count(threads);
    binder::ProcessState::start_thread_pool();
    let shell = dmaload_service::binder_stack::install_shell_command(&service);
    log::info!(
        "cmd {name}: {}",
        if shell { "served" } else { "not available" }
    );
    binder::add_service(name, service.into_binder().as_binder())
        .map_err(|e| anyhow::anyhow!("registering {name}: {e:?}"))?;
    log::info!("serving {name} ({threads} threads)");
    binder::ProcessState::join_thread_pool();
    bail!("the binder thread pool returned")
}
