//! dmaloadd as the bench runs it: started by the bench with the service's defaults, reached
//! through the client library (`dmaload::Loader`) as an app reaches it: RPC binder on a Unix
//! socket on hosts, kernel binder with rsbinder's service manager (`rsb_hub`) where
//! `/dev/binder` exists (the virtual device).
//!
//! `dmaload_service` is a cold load of the whole file through the service; `dmaload_warm`
//! the reload of a shareable file version whose buffer the service kept warm after its
//! release (warm reuse: a new fd to the same buffer, no I/O). The clock covers the client's
//! call, from the request to the buffer fd in hand.

use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use dmaload::endpoint::Endpoint;
use dmaload::{IoMode, LoadRequest, LoadedBuffer, Loader, Reuse};
use dmaload_abi::{Untrusted, SERVICE_INSTANCE};
use dmaload_engine::BackendChoice;

/// How the bench reaches dmaloadd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Kernel binder where `/dev/binder` exists, else RPC.
    Auto,
    /// RPC binder on a Unix socket.
    Rpc,
    /// Kernel binder, registered with `rsb_hub`.
    Binder,
}

/// Where the service's programs are and how to reach it.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    pub dmaloadd: PathBuf,
    pub service_manager: PathBuf,
    pub transport: Transport,
    /// Directory for the RPC socket (short: socket paths are limited to 107 bytes).
    pub dir: PathBuf,
    /// For `dmaload_warm`: released shareable buffers the service keeps per uid (off, as
    /// the service's default, when `None`).
    pub warm_cache_bytes: Option<u64>,
}

/// How long the service keeps a released shareable buffer for `dmaload_warm`: long enough
/// for the reload that follows its release, short enough that it is gone (waited for,
/// untimed) before the next row runs, so no other row shares memory with a kept buffer.
const WARM_MAX_AGE: Duration = Duration::from_secs(1);

impl ServiceOptions {
    /// A program next to the bench's own executable, else in `$DMALOAD_GUEST_BIN_DIR`
    /// (the virtual device's binaries).
    pub fn default_program(name: &str) -> PathBuf {
        let beside = std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name(name));
        if let Some(path) = beside.filter(|p| p.exists()) {
            return path;
        }
        match std::env::var_os("DMALOAD_GUEST_BIN_DIR") {
            Some(dir) => Path::new(&dir).join(name),
            None => PathBuf::from(name),
        }
    }
}

/// A running dmaloadd (and its service manager), stopped on drop.
pub struct Service {
    children: Vec<Child>,
    daemon_pid: u32,
    endpoint: Endpoint,
    loader: Loader,
    socket: Option<PathBuf>,
    /// Bumps a file's modification time to a version the service has not seen.
    version: Cell<u64>,
}

/// One load through the service.
pub struct ServiceLoad {
    pub elapsed: Duration,
    pub fd: OwnedFd,
    pub note: String,
}

fn spawn(program: &Path, args: &[String]) -> Result<Child> {
    Command::new(program)
        .args(args)
        // Warnings would interleave with the bench's table (e.g. the client library's probe
        // of the socket before it connects shows as a failed handshake).
        .env("DMALOAD_LOG", "error")
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with `cargo build -p dmaload-service` next to the \
                 bench, or name it with --dmaloadd / --service-manager)",
                Untrusted::path(program)
            )
        })
}

/// Stops children in reverse order of their start.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Service {
    /// Starts dmaloadd with its defaults and connects the bench's own client to it.
    pub fn start(opts: &ServiceOptions) -> Result<Service> {
        let binder = match opts.transport {
            Transport::Auto => Path::new("/dev/binder").exists(),
            Transport::Rpc => false,
            Transport::Binder => true,
        };
        let mut children = Children(Vec::new());
        let mut daemon_args: Vec<String> = Vec::new();
        if let Some(bytes) = opts.warm_cache_bytes {
            // No eviction for want of memory: the bench itself is what uses it up.
            daemon_args.extend(
                [
                    "--cache-per-caller",
                    &bytes.to_string(),
                    "--cache-max-age",
                    &WARM_MAX_AGE.as_secs().to_string(),
                    "--cache-min-available",
                    "0",
                ]
                .map(String::from),
            );
        }
        let daemon_args = |first: &[&str]| -> Vec<String> {
            first
                .iter()
                .map(|s| s.to_string())
                .chain(daemon_args.iter().cloned())
                .collect()
        };
        let (endpoint, socket) = if binder {
            // rsb_hub opens /dev/binderfs/<name>; the virtual device has the binder misc
            // device and no binderfs.
            let binderfs = Path::new("/dev/binderfs/binder");
            if !binderfs.exists() {
                std::fs::create_dir_all("/dev/binderfs").context("mkdir /dev/binderfs")?;
                std::os::unix::fs::symlink("/dev/binder", binderfs)
                    .context("symlink /dev/binderfs/binder")?;
            }
            children.0.push(spawn(
                &opts.service_manager,
                &["--insecure-allow-all".to_string()],
            )?);
            std::thread::sleep(Duration::from_millis(300));
            children.0.push(spawn(
                &opts.dmaloadd,
                &daemon_args(&["--binder", "/dev/binder"]),
            )?);
            let endpoint = Endpoint::Binder {
                instance: SERVICE_INSTANCE.to_string(),
            };
            (endpoint, None)
        } else {
            // rsbinder takes only absolute socket paths.
            let dir = std::env::current_dir()?.join(&opts.dir);
            let socket = dir.join(format!("dmaload-bench-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&socket);
            let arg = socket.to_string_lossy().into_owned();
            children.0.push(spawn(
                &opts.dmaloadd,
                &daemon_args(&["--rpc-socket", &arg]),
            )?);
            (Endpoint::Socket(socket.clone()), Some(socket))
        };
        let daemon_pid = children.0.last().map(Child::id).unwrap_or(0);
        let loader = connect(&endpoint, &mut children.0)?;
        Ok(Service {
            children: std::mem::take(&mut children.0),
            daemon_pid,
            endpoint,
            loader,
            socket,
            version: Cell::new(0),
        })
    }

    /// `rpc` or `binder`.
    pub fn transport(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Binder { .. } => "binder",
            Endpoint::Socket(_) => "rpc",
        }
    }

    /// Another client connection (a client of its own, as another app would have).
    pub fn connect(&self) -> Result<Loader> {
        Loader::connect(Some(&self.endpoint))
            .map_err(|e| anyhow::anyhow!("connecting to dmaloadd: {e}"))
    }

    /// Loads the whole file behind `fd` (O_DIRECT) through the bench's own connection.
    pub fn load_timed(&self, fd: &OwnedFd, kind: &BackendChoice) -> Result<ServiceLoad> {
        load_timed(&self.loader, fd, kind)
    }

    /// `dmaload_warm`: a new version of `path` loaded shareable (untimed) and released, then
    /// loaded again: the timed reload is the buffer the service kept warm. Afterwards waits
    /// (untimed) until the service has let the kept buffer go.
    pub fn warm(&self, path: &Path) -> Result<ServiceLoad> {
        self.new_version(path)?;
        let request = shareable_request(path)?;
        let (_, first) = self.shareable_load(&request)?;
        if first.reuse() != Reuse::None {
            bail!("a new file version was {:?}, not loaded", first.reuse());
        }
        drop(first);
        let (elapsed, mut buffer) = self.shareable_load(&request)?;
        if buffer.reuse() != Reuse::Cached {
            bail!(
                "the reload was {:?}, not the buffer kept warm",
                buffer.reuse()
            );
        }
        let fd = buffer
            .take_fd()
            .context("the service's reply held no buffer fd")?;
        let note = format!(
            "{} via dmaloadd, reuse {}",
            buffer.backend(),
            buffer.reuse().name()
        );
        std::thread::sleep(WARM_MAX_AGE + Duration::from_millis(500));
        Ok(ServiceLoad { elapsed, fd, note })
    }

    /// One shareable load, timed from the call to the buffer in hand; its charge is released
    /// at once (the fd stays valid), so the service keeps the buffer warm.
    fn shareable_load(&self, request: &LoadRequest) -> Result<(Duration, LoadedBuffer)> {
        let start = Instant::now();
        let buffer = self
            .loader
            .load(request)
            .map_err(|e| anyhow::anyhow!("shareable load through dmaloadd: {e}"))?;
        let elapsed = start.elapsed();
        self.loader
            .release_buffer(buffer.buffer_id())
            .map_err(|e| anyhow::anyhow!("releaseBuffer: {e}"))?;
        Ok((elapsed, buffer))
    }

    /// Gives `path` a modification time the service has not seen: its next shareable load
    /// is a miss (and the lookup frees a buffer kept for an earlier version).
    fn new_version(&self, path: &Path) -> Result<()> {
        self.version.set(self.version.get() + 1);
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + self.version.get());
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(when))
            .with_context(|| format!("new modification time of {}", Untrusted::path(path)))
    }

    /// The daemon's peak RSS (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        crate::system::peak_rss_of(&format!("/proc/{}", self.daemon_pid))
    }

    /// Resets the daemon's peak RSS to its current RSS.
    pub fn reset_peak_rss(&self) {
        crate::system::reset_peak_rss_of(&format!("/proc/{}", self.daemon_pid));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(Children(std::mem::take(&mut self.children)));
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Waits for the service to answer (it registers or binds its socket after starting).
fn connect(endpoint: &Endpoint, children: &mut [Child]) -> Result<Loader> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Loader::connect(Some(endpoint)) {
            Ok(loader) => return Ok(loader),
            Err(e) => {
                for child in children.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("a service process exited ({status}) before dmaloadd answered: {e}");
                    }
                }
                if Instant::now() > deadline {
                    bail!("dmaloadd did not answer on {endpoint} within 30 s: {e}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A shareable request for the whole file at `path` (the service opens it: a file version
/// is its identity).
fn shareable_request(path: &Path) -> Result<LoadRequest> {
    let mut req = LoadRequest::new();
    req.add_file(path, 0, 0, 0)
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    req.set_name("dmaload-bench")
        .map_err(|e| anyhow::anyhow!("request: {e}"))?
        .set_shareable(true);
    Ok(req)
}

/// The request an app makes for the whole file behind `fd`: the backend of `kind`, direct
/// I/O. Built on the clock: an app builds one per load (the client checks the fd's flags
/// and file), while the file is opened before it, as every row opens its file before it.
fn request(fd: &OwnedFd, kind: &BackendChoice) -> Result<LoadRequest> {
    let mut req = LoadRequest::new();
    req.add_fd(fd.as_fd(), 0, 0, 0)
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    let heap = match kind {
        BackendChoice::Auto => None,
        BackendChoice::Heap(h) => Some(format!("heap:{h}")),
        BackendChoice::Udmabuf => Some("udmabuf".to_string()),
        BackendChoice::Memfd => Some("memfd".to_string()),
    };
    req.set_backend(heap.as_deref())
        .set_io_mode(IoMode::Direct)
        .set_name("dmaload-bench")
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    Ok(req)
}

/// Times what an app with a connected `Loader` pays per load of the whole file behind `fd`:
/// building the request and `Loader::load`, up to the buffer fd in this process. The
/// service's charge is released right after (not timed, as `normal` does not time freeing
/// its buffer); the fd keeps the buffer.
pub fn load_timed(loader: &Loader, fd: &OwnedFd, kind: &BackendChoice) -> Result<ServiceLoad> {
    let start = Instant::now();
    let req = request(fd, kind)?;
    let mut loaded = loader
        .load(&req)
        .map_err(|e| anyhow::anyhow!("load through dmaloadd: {e}"))?;
    let elapsed = start.elapsed();
    let fd = loaded
        .take_fd()
        .context("the service's reply held no buffer fd")?;
    loader
        .release_buffer(loaded.buffer_id())
        .map_err(|e| anyhow::anyhow!("releaseBuffer: {e}"))?;
    // The transport's share of a load: a call that does next to no work in the service,
    // after the load (before it, it would warm the path the load takes), shown in the note.
    let call = Instant::now();
    loader
        .usage()
        .map_err(|e| anyhow::anyhow!("getUsage: {e}"))?;
    let round_trip = call.elapsed();
    let s = loaded.stats();
    let ms = |ns: u64| crate::report::ms(ns);
    let mut note = format!(
        "{} via dmaloadd: round trip {}, service {}, alloc {}, first gather {}, io {}, copy {}",
        loaded.backend(),
        crate::report::ms(round_trip.as_nanos() as u64),
        ms(s.total_ns),
        ms(s.alloc_ns),
        ms(s.first_gather_ns),
        ms(s.io_ns),
        ms(s.copy_ns)
    );
    for f in &s.fallbacks {
        note.push_str(&format!("; fallback {f}"));
    }
    Ok(ServiceLoad { elapsed, fd, note })
}
