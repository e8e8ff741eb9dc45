//! The schemes that go through dmaloadd: a private service on an RPC binder socket (kernel
//! binder needs a registered service), reached with the client library as an app would.
//! `dmaload_service` is a cold shareable load of a file version the service has not seen;
//! `dmaload_warm` the reload of that version once its buffer was released and kept warm
//! (warm reuse: a new fd to the same buffer, no I/O). The clock covers the client's call,
//! from the request to the buffer fd in hand.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use dmaload::{Endpoint, LoadRequest, LoadedBuffer, Loader, Reuse};
use dmaload_abi::meminfo::MemInfo;

/// A private dmaloadd and a connection to it.
pub struct ServiceBench {
    child: Child,
    loader: Loader,
    socket: PathBuf,
    /// Bumps every file's modification time to a version the service has not seen.
    version: Cell<u64>,
}

impl ServiceBench {
    /// Starts `dmaloadd` on a socket in `dir`, allowed what this machine has, keeping released
    /// shareable buffers warm (up to `cache_bytes` per uid, for an hour).
    pub fn start(dmaloadd: &Path, dir: &Path, cache_bytes: u64) -> Result<ServiceBench> {
        let socket = dir.join(format!("dmaload-bench-{}.sock", std::process::id()));
        let available = MemInfo::read().context("/proc/meminfo")?.available;
        let cap = available.to_string();
        let mut child = Command::new(dmaloadd)
            .arg("--rpc-socket")
            .arg(&socket)
            .args([
                "--global-cap",
                &cap,
                "--caller-cap",
                &cap,
                "--max-buffer",
                &cap,
            ])
            .args(["--min-available-after", &(128u64 << 20).to_string()])
            .args(["--cache-per-caller", &cache_bytes.to_string()])
            .args(["--cache-max-age", "3600", "--cache-min-available", "0"])
            .env("DMALOAD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", dmaloadd.display()))?;
        match connect(&socket, &mut child) {
            Ok(loader) => Ok(ServiceBench {
                child,
                loader,
                socket,
                version: Cell::new(0),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Gives `path` a modification time the service has not seen: its next shareable load
    /// is a miss (and the lookup frees the buffer kept for the previous version).
    fn new_version(&self, path: &Path) -> Result<()> {
        self.version.set(self.version.get() + 1);
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + self.version.get());
        std::fs::File::options()
            .write(true)
            .open(path)?
            .set_modified(when)?;
        Ok(())
    }

    fn request(path: &Path) -> Result<LoadRequest> {
        let mut request = LoadRequest::new();
        request.add_file(path, 0, 0, 0)?;
        request.set_name("dmaload-bench")?.set_shareable(true);
        Ok(request)
    }

    /// One shareable load, timed from the call to the buffer in hand; its charge is
    /// released at once (the fd stays valid), so the service keeps the buffer warm.
    fn timed_load(&self, request: &LoadRequest) -> Result<(Duration, LoadedBuffer)> {
        let start = Instant::now();
        let buffer = self.loader.load(request)?;
        let elapsed = start.elapsed();
        self.loader.release_buffer(buffer.buffer_id())?;
        Ok((elapsed, buffer))
    }

    /// `dmaload_service`: a cold load of a new version of `path`.
    pub fn cold(&self, path: &Path) -> Result<(Duration, LoadedBuffer)> {
        self.new_version(path)?;
        let (elapsed, buffer) = self.timed_load(&Self::request(path)?)?;
        if buffer.reuse() != Reuse::None {
            bail!("a new file version was {:?}", buffer.reuse());
        }
        Ok((elapsed, buffer))
    }

    /// `dmaload_warm`: a new version of `path` loaded (not timed) and released, then loaded
    /// again: the timed reload is the buffer kept warm.
    pub fn warm(&self, path: &Path) -> Result<(Duration, LoadedBuffer)> {
        let (_, first) = self.cold(path)?;
        drop(first);
        let (elapsed, buffer) = self.timed_load(&Self::request(path)?)?;
        if buffer.reuse() != Reuse::Cached {
            bail!(
                "the reload was {:?}, not the buffer kept warm",
                buffer.reuse()
            );
        }
        Ok((elapsed, buffer))
    }
}

impl Drop for ServiceBench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Connects to the dmaloadd `child` once it answers on `socket`.
fn connect(socket: &Path, child: &mut Child) -> Result<Loader> {
    let endpoint = Endpoint::Socket(socket.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Loader::connect(Some(&endpoint)) {
            Ok(loader) => return Ok(loader),
            Err(e) if Instant::now() > deadline => bail!("dmaloadd on {}: {e}", socket.display()),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("dmaloadd exited: {status}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
