//! dmaloadd as the bench runs it: started by the bench with the service's defaults, reached
//! through the client library (`dmaload::Loader`) as an app reaches it: RPC binder on a Unix
//! socket on hosts, kernel binder with rsbinder's service manager (`rsb_hub`) where
//! `/dev/binder` exists (the virtual device).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dmaload::endpoint::Endpoint;
use dmaload::{IoMode, LoadRequest, Loader};
use dmaload_abi::{Untrusted, SERVICE_INSTANCE};
use dmaload_engine::BufferKind;

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
}

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
}

/// One load through the service.
pub struct ServiceLoad {
    pub elapsed: Duration,
    pub fd: OwnedFd,
    pub note: String,
}

fn spawn(program: &Path, args: &[&str]) -> Result<Child> {
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
        let (endpoint, socket) = if binder {
            // rsb_hub opens /dev/binderfs/<name>; the virtual device has the binder misc
            // device and no binderfs.
            let binderfs = Path::new("/dev/binderfs/binder");
            if !binderfs.exists() {
                std::fs::create_dir_all("/dev/binderfs").context("mkdir /dev/binderfs")?;
                std::os::unix::fs::symlink("/dev/binder", binderfs)
                    .context("symlink /dev/binderfs/binder")?;
            }
            children
                .0
                .push(spawn(&opts.service_manager, &["--insecure-allow-all"])?);
            std::thread::sleep(Duration::from_millis(300));
            children
                .0
                .push(spawn(&opts.dmaloadd, &["--binder", "/dev/binder"])?);
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
            children
                .0
                .push(spawn(&opts.dmaloadd, &["--rpc-socket", &arg])?);
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
    pub fn load_timed(&self, fd: &OwnedFd, kind: &BufferKind) -> Result<ServiceLoad> {
        load_timed(&self.loader, fd, kind)
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

/// The request an app makes for the whole file behind `fd`: the backend of `kind`, direct
/// I/O. Built before the clock starts, as the engine rows open their fd before it.
fn request(fd: &OwnedFd, kind: &BufferKind) -> Result<LoadRequest> {
    let mut req = LoadRequest::new();
    req.add_fd(fd.as_fd(), 0, 0, 0)
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    let heap = match kind {
        BufferKind::Auto => None,
        BufferKind::Heap(h) => Some(format!("heap:{h}")),
        BufferKind::Udmabuf => Some("udmabuf".to_string()),
        BufferKind::Memfd => Some("memfd".to_string()),
    };
    req.set_heap(heap.as_deref())
        .set_io_mode(IoMode::Direct)
        .set_name("dmaload-bench")
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    Ok(req)
}

/// Times one `Loader::load` of the whole file behind `fd`: from the call to the buffer fd in
/// this process. The service's charge is released right after (not timed); the fd keeps the
/// buffer.
pub fn load_timed(loader: &Loader, fd: &OwnedFd, kind: &BufferKind) -> Result<ServiceLoad> {
    let req = request(fd, kind)?;
    let start = Instant::now();
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
    let s = loaded.stats();
    let ms = |ns: u64| crate::report::ms(ns);
    let mut note = format!(
        "{} via dmaloadd: service {}, alloc {}, first gather {}, io {}, copy {}",
        loaded.backend(),
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
