//! The service under test, seen through its stable AIDL interface only (as a vendor's VTS
//! would): connection over kernel binder (or an RPC socket), request builders, and the
//! leak probes every case ends with.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// The binder stack (rsbinder on Linux, libbinder_rs under Soong) through the client crate's
// one switch; the AIDL types are the generated ones of either stack.
use dmaload_client::binder_stack::{
    self as stack, BinderResult, CallError, Interface, ParcelFileDescriptor, Status, Strong,
};
pub use dmaload_client::binder_stack::{idl, StatusCode, DEAD_OBJECT, FAILED_TRANSACTION};
use dmaload_vts::buffer::ReadView;
use dmaload_vts::fixtures::PatternFile;
use dmaload_vts::{pattern, probe};
pub use idl::{
    ErrorCode::ErrorCode, FileSegment::FileSegment, IoMode::IoMode, LoadRequest::LoadRequest,
    LoadResult::LoadResult, LoadStats::LoadStats, Tunables::Tunables,
};
use idl::{IDmaLoader::IDmaLoader, ILoadCallback, ILoadHandle::ILoadHandle};

pub const SERVICE_NAME: &str = dmaload_abi::SERVICE_INSTANCE;

/// How a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A service-specific error: the stable code and its message.
    Code(i32, String),
    /// The transport failed (DEAD_OBJECT when the service died).
    Transport(StatusCode),
    Other(String),
}

impl Failure {
    pub fn from_status(status: Status) -> Failure {
        match stack::call_error(&status) {
            CallError::ServiceSpecific { code, message } => Failure::Code(code, message),
            CallError::Transport(code) => Failure::Transport(code),
            CallError::Exception(text) => Failure::Other(text),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Code(c, m) => write!(f, "{}({c}): {m}", code_name(*c)),
            Failure::Transport(s) => write!(f, "transport {s:?}"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

pub fn code_name(code: i32) -> &'static str {
    dmaload_abi::ErrorCode::from_code(code).map_or("UNKNOWN", |c| c.name())
}

pub type Svc = Strong<dyn IDmaLoader>;

/// Where the service answers: `DMALOAD_VTS_ENDPOINT` = `binder` (default) or `unix:<path>`.
pub fn endpoint() -> String {
    std::env::var("DMALOAD_VTS_ENDPOINT").unwrap_or_else(|_| "binder".to_string())
}

/// Connects, waiting up to `wait` for the service to be registered.
pub fn connect(wait: Duration) -> Result<Svc, String> {
    let deadline = Instant::now() + wait;
    let ep = endpoint();
    loop {
        let attempt: Result<Option<Svc>, String> = if let Some(path) = ep.strip_prefix("unix:") {
            stack::connect_socket(path.as_ref(), SERVICE_NAME)
                .map(|(svc, _session)| Some(svc))
                .map_err(|e| format!("{e:?}"))
        } else {
            stack::check_service(SERVICE_NAME).map_err(|e| format!("{e:?}"))
        };
        match attempt {
            Ok(Some(svc)) => {
                // A registration of a service that just died answers DEAD_OBJECT: retry.
                if svc.r#getUsage().is_ok() {
                    return Ok(svc);
                }
            }
            Ok(None) => {}
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot reach {SERVICE_NAME} on {ep}: {e}"))
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{SERVICE_NAME} is not registered on {ep} after {wait:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client library (libdmaload's Rust API) connected where the suite's calls go.
pub fn client() -> Result<dmaload_client::Loader, String> {
    let endpoint = dmaload_client::Endpoint::parse(&endpoint()).map_err(|e| e.to_string())?;
    dmaload_client::Loader::connect(Some(&endpoint)).map_err(|e| format!("connect: {e}"))
}

/// The pid of the running `dmaloadd` (root can read every /proc entry in the device).
pub fn service_pid() -> Option<u32> {
    let mut found = None;
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dmaloadd") {
            found = Some(found.map_or(pid, |p: u32| p.max(pid)));
        }
    }
    found
}

/// dma-bufs alive in the whole system (debugfs `dma_buf/bufinfo`: "Total N objects, M bytes").
pub fn system_dma_bufs() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo").ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("Total "))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

/// What must come back after every case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub service_pid: Option<u32>,
    pub service_fds: Option<usize>,
    pub charged_bytes: i64,
    pub buffers: i32,
    pub loads_in_flight: i32,
    pub dma_bufs: Option<(u64, u64)>,
    /// The service's own view (`getServiceState`): open fds, outstanding buffer bytes, live
    /// buffers, loads in flight.
    pub state: (i32, i64, i32, i32),
    /// Every caller's charges, from the `usage` dump view.
    pub charges: DumpUsage,
}

/// The `usage` view of the service's dump (`debugDump usage`): what every uid holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpUsage {
    /// uid → charged bytes, for every uid holding a buffer.
    pub by_uid: Vec<(u32, u64)>,
    /// Service total: charged bytes, charges, loads in flight.
    pub total: (u64, u64, u64),
}

/// `uid 10001: charged=4096 charges=1 loads_in_flight=0` / `total: charged=... charges=...
/// loads_in_flight=... global_cap=...` lines.
pub fn dump_usage(svc: &Svc) -> Result<DumpUsage, String> {
    let text = svc
        .r#debugDump(&["usage".to_string()])
        .map_err(|s| format!("debugDump usage: {}", Failure::from_status(s)))?;
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let mut usage = DumpUsage::default();
    let mut total = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("uid ") {
            let uid = rest.split(':').next().and_then(|u| u.parse().ok());
            let charged = field(line, "charged=");
            if let (Some(uid), Some(charged)) = (uid, charged) {
                usage.by_uid.push((uid, charged));
            }
        } else if line.starts_with("total:") {
            total = Some((
                field(line, "charged=").ok_or("total without charged=")?,
                field(line, "charges=").ok_or("total without charges=")?,
                field(line, "loads_in_flight=").ok_or("total without loads_in_flight=")?,
            ));
        }
    }
    usage.total = total.ok_or_else(|| format!("no total line in the usage view: {text:?}"))?;
    Ok(usage)
}

impl DumpUsage {
    /// Bytes charged to `uid` (0 when it holds nothing).
    pub fn of(&self, uid: u32) -> u64 {
        self.by_uid
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or(0, |(_, b)| *b)
    }
}

/// A baseline once the service has settled (two samples 50 ms apart agree): a case must not
/// start from the tail of the previous one.
pub fn baseline(svc: &Svc) -> Result<Baseline, String> {
    let mut last = sample(svc)?;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = sample(svc)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn sample(svc: &Svc) -> Result<Baseline, String> {
    let usage = svc
        .r#getUsage()
        .map_err(|s| format!("getUsage: {}", Failure::from_status(s)))?;
    let st = svc
        .r#getServiceState()
        .map_err(|s| format!("getServiceState: {}", Failure::from_status(s)))?;
    let pid = service_pid();
    Ok(Baseline {
        state: (
            st.r#openFds,
            st.r#outstandingBufferBytes,
            st.r#liveBuffers,
            st.r#loadsInFlight,
        ),
        service_pid: pid,
        service_fds: pid.and_then(|p| probe::open_fds(p).ok()),
        charged_bytes: usage.r#chargedBytes,
        buffers: usage.r#buffers,
        loads_in_flight: usage.r#loadsInFlight,
        dma_bufs: system_dma_bufs(),
        charges: dump_usage(svc)?,
    })
}

/// Waits (up to `within`) until the service's fds, this caller's charge and the system's
/// dma-bufs are back to `base`; returns how long it took.
pub fn back_to_baseline(svc: &Svc, base: &Baseline, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let now = sample(svc)?;
        if now == *base {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= within {
            return Err(format!(
                "not back to baseline after {within:?}: before {base:?}, now {now:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn segment(
    fd: Option<OwnedFd>,
    file_offset: i64,
    length: i64,
    buffer_offset: i64,
) -> FileSegment {
    FileSegment {
        r#fd: fd.map(ParcelFileDescriptor::new),
        r#fileOffset: file_offset,
        length,
        r#bufferOffset: buffer_offset,
        ..Default::default()
    }
}

pub fn request(segments: Vec<FileSegment>, backend: &str, io: IoMode, name: &str) -> LoadRequest {
    LoadRequest {
        segments,
        r#backend: backend.to_string(),
        r#ioMode: io,
        r#name: name.to_string(),
        r#tunables: Tunables::default(),
        ..Default::default()
    }
}

/// A segment of file `file` of the request's file table (`LoadRequest.files`).
pub fn indexed(file: i32, file_offset: i64, length: i64, buffer_offset: i64) -> FileSegment {
    FileSegment {
        r#fileIndex: file,
        r#fileOffset: file_offset,
        length,
        r#bufferOffset: buffer_offset,
        ..Default::default()
    }
}

/// A request with a file table: each of `files` sent once, `segments` naming them by index.
pub fn table_request(
    files: Vec<Option<OwnedFd>>,
    segments: Vec<FileSegment>,
    backend: &str,
    name: &str,
) -> LoadRequest {
    LoadRequest {
        r#files: Some(
            files
                .into_iter()
                .map(|f| f.map(ParcelFileDescriptor::new))
                .collect(),
        ),
        ..request(segments, backend, IoMode::AUTO, name)
    }
}

/// A value of the service's `config` view (`max_segments`, `max_files`, ...).
pub fn config_value(svc: &Svc, key: &str) -> Result<u64, String> {
    let text = svc
        .r#debugDump(&["config".to_string()])
        .map_err(|e| format!("debugDump config: {}", Failure::from_status(e)))?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no {key} in the config view: {text:?}"))
}

/// The service's `dumpsys` text for `args` (`DUMP_TRANSACTION`, through a pipe).
pub fn dumpsys(svc: &Svc, args: &[String]) -> Result<String, String> {
    use std::io::Read;
    let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    stack::dump_to(svc, write, args).map_err(|e| format!("dump transaction: {e:?}"))?;
    let mut text = String::new();
    fs::File::from(read)
        .read_to_string(&mut text)
        .map_err(|e| format!("read the dump: {e}"))?;
    Ok(text)
}

/// A request for the whole file behind `fd` at the start of the buffer.
pub fn whole_file_request(fd: OwnedFd, backend: &str, io: IoMode, name: &str) -> LoadRequest {
    request(vec![segment(Some(fd), 0, 0, 0)], backend, io, name)
}

/// A slow whole-file load of `f`: buffered, 1 MiB chunks, one reader (long enough in the
/// device to act while it runs).
pub fn slow_request(f: &PatternFile, backend: &str) -> Result<LoadRequest, String> {
    let fd = f.open(false).map_err(|e| e.to_string())?;
    let mut r = whole_file_request(fd, backend, IoMode::BUFFERED, "vts-slow");
    r.r#tunables.r#chunkSize = 1 << 20;
    r.r#tunables.r#readerThreads = 1;
    Ok(r)
}

pub fn load(svc: &Svc, req: &LoadRequest) -> Result<LoadResult, Failure> {
    svc.r#load(req).map_err(Failure::from_status)
}

/// The buffer fd of a result (our own duplicate).
pub fn buffer_fd(result: &LoadResult) -> Result<OwnedFd, String> {
    result
        .r#buffer
        .as_ref()
        .ok_or("the result has no buffer fd")?
        .as_ref()
        .try_clone()
        .map_err(|e| format!("dup the buffer fd: {e}"))
}

/// One piece of expected content: file `seed` bytes at `file_offset` placed at `at`.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub seed: u64,
    pub file_offset: u64,
    pub len: u64,
    pub at: u64,
}

/// Maps the buffer (with `DMA_BUF_IOCTL_SYNC` for dma-bufs) and checks every piece byte for
/// byte and zeros elsewhere; returns whether the mapping was a synced dma-buf.
pub fn verify_content(fd: &OwnedFd, size: u64, pieces: &[Piece]) -> Result<bool, String> {
    let view = ReadView::map(fd.as_fd(), size as usize).map_err(|e| format!("map: {e}"))?;
    let bytes = view.as_bytes();
    let mut sorted = pieces.to_vec();
    sorted.sort_by_key(|p| p.at);
    let mut cursor = 0u64;
    for p in &sorted {
        let gap = &bytes[cursor as usize..p.at as usize];
        if let Some(i) = gap.iter().position(|&b| b != 0) {
            return Err(format!(
                "byte {} lies in no segment but is {:#x}",
                cursor + i as u64,
                gap[i]
            ));
        }
        let got = &bytes[p.at as usize..(p.at + p.len) as usize];
        if let Some(i) = pattern::first_mismatch(p.seed, p.file_offset, got) {
            return Err(format!(
                "buffer byte {} differs from file byte {}",
                p.at + i as u64,
                p.file_offset + i as u64
            ));
        }
        cursor = p.at + p.len;
    }
    if let Some(i) = bytes[cursor as usize..].iter().position(|&b| b != 0) {
        return Err(format!("tail byte {} is not zero", cursor + i as u64));
    }
    Ok(view.synced())
}

/// What `onComplete` delivered (the buffer fd duplicated out of the parcel).
#[derive(Debug)]
pub struct Completed {
    pub fd: Result<OwnedFd, String>,
    pub size: i64,
    pub buffer_id: i64,
    pub backend: String,
    pub name: String,
    pub is_dma_buf: bool,
    pub stats: Stats,
}

/// A copy of the wire `LoadStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub alloc_ns: i64,
    pub first_gather_ns: i64,
    pub io_ns: i64,
    pub copy_ns: i64,
    pub total_ns: i64,
    pub bytes_direct: i64,
    pub bytes_buffered: i64,
    pub bytes_bounced: i64,
    pub fallbacks: Vec<String>,
}

impl Stats {
    pub fn of(s: &LoadStats) -> Stats {
        Stats {
            alloc_ns: s.r#allocNs,
            first_gather_ns: s.r#firstGatherNs,
            io_ns: s.r#ioNs,
            copy_ns: s.r#copyNs,
            total_ns: s.r#totalNs,
            bytes_direct: s.r#bytesDirect,
            bytes_buffered: s.r#bytesBuffered,
            bytes_bounced: s.r#bytesBounced,
            fallbacks: s.r#fallbacks.clone(),
        }
    }

    /// Bytes add up to what was asked for; times are non-negative, each within the total.
    pub fn check(&self, file_bytes: u64) -> Result<(), String> {
        let times = [
            ("alloc", self.alloc_ns),
            ("first_gather", self.first_gather_ns),
            ("io", self.io_ns),
            ("copy", self.copy_ns),
        ];
        if self.total_ns <= 0 {
            return Err(format!("total time {} ns is not positive", self.total_ns));
        }
        for (name, t) in times {
            if t < 0 || t > self.total_ns {
                return Err(format!(
                    "{name} time {t} ns outside 0..=total {} ns",
                    self.total_ns
                ));
            }
        }
        if self.first_gather_ns > 0 && self.alloc_ns > 0 && self.first_gather_ns > self.total_ns {
            return Err("first gather after the end".into());
        }
        let read = self.bytes_direct + self.bytes_buffered;
        if self.bytes_direct < 0 || self.bytes_buffered < 0 || read as u64 != file_bytes {
            return Err(format!(
                "direct {} + buffered {} bytes != {file_bytes} bytes loaded",
                self.bytes_direct, self.bytes_buffered
            ));
        }
        if self.bytes_bounced < 0 || self.bytes_bounced as u64 > file_bytes {
            return Err(format!(
                "{} bytes bounced of {file_bytes}",
                self.bytes_bounced
            ));
        }
        Ok(())
    }
}

/// Events of one asynchronous load.
#[derive(Debug, Default)]
pub struct Events {
    pub progress: Vec<(i64, i64)>,
    pub complete: Option<Completed>,
    pub error: Option<(i32, String)>,
    pub ends: u32,
}

/// The suite's `ILoadCallback`: records everything, wakes waiters at the end.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Events>,
    done: Condvar,
}

impl Recorder {
    pub fn wait(&self, within: Duration) -> Result<std::sync::MutexGuard<'_, Events>, String> {
        let deadline = Instant::now() + within;
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        while ev.ends == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no completion callback within {within:?}"));
            }
            ev = self
                .done
                .wait_timeout(ev, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(ev)
    }
}

struct CallbackBridge(Arc<Recorder>);

impl Interface for CallbackBridge {}

impl ILoadCallback::ILoadCallback for CallbackBridge {
    fn r#onProgress(&self, loaded: i64, total: i64) -> BinderResult<()> {
        let mut ev = self.0.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.progress.push((loaded, total));
        Ok(())
    }

    fn r#onComplete(&self, result: &LoadResult) -> BinderResult<()> {
        let mut ev = self.0.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.complete = Some(Completed {
            fd: buffer_fd(result),
            size: result.r#sizeBytes,
            buffer_id: result.r#bufferId,
            backend: result.r#backend.clone(),
            name: result.r#name.clone(),
            is_dma_buf: result.r#isDmaBuf,
            stats: Stats::of(&result.r#stats),
        });
        ev.ends += 1;
        self.0.done.notify_all();
        Ok(())
    }

    fn r#onError(&self, code: i32, message: &str) -> BinderResult<()> {
        let mut ev = self.0.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.error = Some((code, message.to_string()));
        ev.ends += 1;
        self.0.done.notify_all();
        Ok(())
    }
}

/// Calls `on_death` when the service's process dies; dropping the link ends the watch.
pub fn link_to_death(
    svc: &Svc,
    on_death: impl Fn() + Send + Sync + 'static,
) -> Result<stack::DeathLink, String> {
    stack::link_to_death(svc, on_death).map_err(|e| format!("link_to_death: {e:?}"))
}

/// Starts an asynchronous load; the recorder hears its events.
pub fn start(
    svc: &Svc,
    req: &LoadRequest,
) -> Result<(Strong<dyn ILoadHandle>, Arc<Recorder>), Failure> {
    let recorder = Arc::new(Recorder::default());
    let callback = stack::new_load_callback(CallbackBridge(recorder.clone()));
    let handle = svc
        .r#startLoad(req, &callback)
        .map_err(Failure::from_status)?;
    Ok((handle, recorder))
}
