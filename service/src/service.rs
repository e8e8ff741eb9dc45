//! The one implementation of `IDmaLoader`: caller identity and access, request conversion,
//! the engine call, buffer registration. Business code returns `LoadError`; the trait methods
//! turn it into a binder status through `binder_stack::status_from` and nowhere else.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use dmaload_abi::text::MARKER_MAX_BYTES;
use dmaload_abi::Untrusted;
use dmaload_engine::{
    BackendChoice, CancelToken, Charge, Engine, ErrorCode, IoMode, LoadError, LoadRequest,
    LoadedBuffer, Progress, Segment, Tunables,
};

use crate::binder_stack::{self as stack, idl, BinderResult, ParcelFileDescriptor, Strong};
use crate::buffers::{Caller, Hold, LiveBuffers};
use crate::config::Config;
use crate::counters::Counters;
use crate::dump::Viewer;
use crate::progress_relay::ProgressRelay;
use crate::reuse::{Keeper, Reuse, Want};

/// The service object behind `vendor.dmaload.IDmaLoader/default`.
#[derive(Clone)]
pub struct DmaLoaderService {
    inner: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    config: Config,
    buffers: Arc<LiveBuffers>,
    counters: Counters,
    /// Shareable buffers and their cache (warm reuse).
    reuse: Arc<Reuse>,
    _keeper: Keeper,
}

impl DmaLoaderService {
    /// Creates the engine from `config` and starts the reaper of dead callers' charges.
    pub fn new(config: Config) -> Result<DmaLoaderService, LoadError> {
        let engine = Engine::new(config.engine.clone())?;
        let buffers = LiveBuffers::new();
        buffers.spawn_reaper().map_err(|e| {
            LoadError::new(ErrorCode::Internal, format!("starting the reaper: {e}"))
        })?;
        let reuse = Reuse::new(
            config.reuse.clone(),
            config.cache_min_available_bytes(),
            config.engine.max_concurrent_loads as usize,
        );
        let keeper = reuse.spawn_keeper().map_err(|e| {
            LoadError::new(
                ErrorCode::Internal,
                format!("starting the cache keeper: {e}"),
            )
        })?;
        let inner = Shared {
            engine,
            config,
            buffers,
            counters: Counters::default(),
            reuse,
            _keeper: keeper,
        };
        Ok(DmaLoaderService {
            inner: Arc::new(inner),
        })
    }

    /// The binder object to register.
    pub fn into_binder(self) -> Strong<dyn idl::IDmaLoader::IDmaLoader> {
        stack::new_loader_binder(self)
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn buffers(&self) -> &LiveBuffers {
        &self.inner.buffers
    }
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }
    pub fn reuse(&self) -> &Arc<Reuse> {
        &self.inner.reuse
    }

    /// The dump views in `args` as the caller `uid` may see them (`dumpsys` and `cmd`: the
    /// text says why when there are none; `debugDump` returns the error instead).
    pub fn dump_text(&self, uid: u32, args: &[String]) -> String {
        let viewer = Viewer { uid };
        if !viewer.sees_everyone() && !self.inner.config.allows_uid(uid) {
            return format!("error: uid {uid} may not use dmaload (allowed_uids)\n");
        }
        crate::dump::render_text(self, viewer, args)
    }

    /// The caller of the current transaction, if it may call at all.
    fn admit(&self) -> Result<Caller, LoadError> {
        let caller = Caller {
            uid: stack::calling_uid(),
            pid: stack::calling_pid(),
        };
        if self.inner.config.allows_uid(caller.uid) {
            return Ok(caller);
        }
        log::warn!(
            "refused caller uid {} pid {}: not in allowed_uids",
            caller.uid,
            caller.pid
        );
        self.inner.counters.failed(ErrorCode::PermissionDenied);
        Err(LoadError::new(
            ErrorCode::PermissionDenied,
            format!(
                "uid {} may not use dmaload: the service configuration's allowed_uids does not \
                 list it; ask the device owner to add it",
                caller.uid
            ),
        ))
    }

    /// Runs one load for `caller` and registers the buffer; the fd leaves only from here. A
    /// shareable request (`share`) goes through warm reuse (`reuse.rs`).
    fn run_load(
        &self,
        caller: Caller,
        request: LoadRequest,
        share: Option<Want>,
        cancel: &CancelToken,
        progress: &dyn Progress,
    ) -> Result<idl::LoadResult::LoadResult, LoadError> {
        let started = Instant::now();
        let _watch = self.inner.buffers.watch_load(caller, cancel);
        match share {
            Some(want) => self.run_shareable(caller, request, want, cancel, progress, started),
            None => self.run_own(caller, request, cancel, progress, started),
        }
    }

    /// A load whose buffer is the caller's own.
    pub(crate) fn run_own(
        &self,
        caller: Caller,
        request: LoadRequest,
        cancel: &CancelToken,
        progress: &dyn Progress,
        started: Instant,
    ) -> Result<idl::LoadResult::LoadResult, LoadError> {
        let name = request.name.clone();
        match self.load_making_room(caller.uid, request, cancel, progress) {
            Ok(loaded) => {
                self.inner.counters.loaded(loaded.size, started.elapsed());
                Ok(self.hand_out(caller, name, loaded))
            }
            Err(err) => Err(self.load_failed(caller, &name, err)),
        }
    }

    /// Counts and logs a failed request; returns its error.
    pub(crate) fn load_failed(&self, caller: Caller, name: &str, err: LoadError) -> LoadError {
        self.inner.counters.failed(err.code);
        log::info!(
            "load '{}' for uid {} pid {} failed: {err}",
            Untrusted::str(name),
            caller.uid,
            caller.pid
        );
        err
    }

    fn hand_out(
        &self,
        caller: Caller,
        name: String,
        loaded: LoadedBuffer,
    ) -> idl::LoadResult::LoadResult {
        let size = loaded.size;
        let (mut result, charge) = self.loaded_result(name, loaded);
        result.bufferId = self.inner.buffers.insert(
            caller,
            result.name.clone(),
            size,
            result.backend.clone(),
            Hold::Own(charge),
        );
        result
    }

    /// The result of a load (its bufferId still 0) and the buffer's charge.
    pub(crate) fn loaded_result(
        &self,
        name: String,
        loaded: LoadedBuffer,
    ) -> (idl::LoadResult::LoadResult, Charge) {
        let LoadedBuffer {
            fd,
            size,
            backend,
            stats,
            charge,
        } = loaded;
        let backend_name = backend.name();
        let result = idl::LoadResult::LoadResult {
            buffer: Some(ParcelFileDescriptor::new(fd)),
            sizeBytes: clamp_i64(size),
            bufferId: 0,
            backend: backend_name,
            isDmaBuf: backend.is_dma_buf(),
            name,
            stats: idl::LoadStats::LoadStats {
                allocNs: nanos(stats.alloc),
                firstGatherNs: nanos(stats.first_gather),
                ioNs: nanos(stats.io),
                copyNs: nanos(stats.copy),
                totalNs: nanos(stats.total),
                bytesDirect: clamp_i64(stats.bytes_direct),
                bytesBuffered: clamp_i64(stats.bytes_buffered),
                bytesBounced: clamp_i64(stats.bytes_bounced),
                workingBytes: clamp_i64(stats.working_bytes),
                fallbacks: stats
                    .fallbacks
                    .iter()
                    .map(|f| format!("{:?}: {}", f.kind, f.reason))
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        (result, charge)
    }

    fn check<T>(&self, r: Result<T, LoadError>) -> BinderResult<T> {
        r.map_err(|err| {
            if err.code != ErrorCode::PermissionDenied {
                log::debug!("returning {err}");
            }
            stack::status_from(&err)
        })
    }
}

/// Most distinct files one request may name in its file table (`IDmaLoader.MAX_FILES`): what
/// every binder transport carries in one transaction (RPC binder: 64 fds).
pub const MAX_FILES: usize = idl::IDmaLoader::MAX_FILES as usize;
/// Longest caller-given buffer name (`IDmaLoader.MAX_NAME_BYTES`); the service prefixes it.
pub const MAX_NAME_BYTES: usize = idl::IDmaLoader::MAX_NAME_BYTES as usize;
/// The prefix the service gives every buffer name: the caller's uid.
const NAME_PREFIX_MAX_BYTES: usize = "dmaload:uid4294967295:".len();

/// Converts the wire request into the engine's, duplicating the caller's fds (the parcel
/// keeps its own). Two layouts: the file table (version 2: distinct files in `files`,
/// segments name theirs by `fileIndex`) and one fd per segment (version 1, `files` empty; at
/// most `max_fd_segments` segments). The buffer's name carries the caller's uid.
pub fn engine_request(
    caller: Caller,
    wire: &idl::LoadRequest::LoadRequest,
    max_fd_segments: usize,
) -> Result<LoadRequest, LoadError> {
    let name = buffer_name(caller, &wire.name)?;
    let table = wire.files.as_deref().unwrap_or_default();
    let (files, segments) = if table.is_empty() {
        fd_per_segment(&wire.segments, max_fd_segments)?
    } else {
        file_table(table, &wire.segments)?
    };
    let io_mode = match wire.ioMode {
        idl::IoMode::IoMode::AUTO => IoMode::Auto,
        idl::IoMode::IoMode::DIRECT => IoMode::Direct,
        idl::IoMode::IoMode::BUFFERED => IoMode::Buffered,
        other => {
            return Err(LoadError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "ioMode {} is not AUTO(0), DIRECT(1) or BUFFERED(2)",
                    other.0
                ),
            ))
        }
    };
    let t = &wire.tunables;
    let tunables = Tunables {
        gather_size: tunable(t.gatherSize, "gatherSize")?,
        chunk_size: tunable(t.chunkSize, "chunkSize")?,
        reader_threads: tunable32(t.readerThreads, "readerThreads")?,
        populate_threads: tunable32(t.populateThreads, "populateThreads")?,
        bounce_buffers: tunable32(t.bounceBuffers, "bounceBuffers")?,
    };
    Ok(LoadRequest {
        files,
        segments,
        backend: BackendChoice::parse(&wire.backend),
        io_mode,
        name,
        tunables,
    })
}

/// The name the buffer carries (dma-buf and memfd names, the dump, the result): the caller's
/// uid, then the caller's name escaped, so no control character reaches the kernel's lists
/// (debugfs `bufinfo`, `/proc/*/fdinfo`) or a dump. A printable name stays as it is.
fn buffer_name(caller: Caller, name: &str) -> Result<String, LoadError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(LoadError::new(
            ErrorCode::InvalidArgument,
            format!(
                "name is {} bytes; at most {MAX_NAME_BYTES} are allowed \
                 (IDmaLoader.MAX_NAME_BYTES)",
                name.len()
            ),
        ));
    }
    if name.contains('\0') {
        return Err(LoadError::new(
            ErrorCode::InvalidArgument,
            "name contains a NUL character; pass a name without one",
        ));
    }
    if name.is_empty() {
        return Ok(format!("dmaload:uid{}", caller.uid));
    }
    // Escaped text can be longer than the name: the engine's limit still holds it.
    let room = LoadRequest::MAX_NAME_BYTES - NAME_PREFIX_MAX_BYTES - MARKER_MAX_BYTES;
    let shown = Untrusted::str(name).limit(room);
    Ok(format!("dmaload:uid{}:{shown}", caller.uid))
}

/// The file-table layout: each distinct file once, segments name theirs by index.
fn file_table(
    table: &[Option<ParcelFileDescriptor>],
    wire: &[idl::FileSegment::FileSegment],
) -> Result<(Vec<OwnedFd>, Vec<Segment>), LoadError> {
    if table.len() > MAX_FILES {
        return Err(LoadError::new(
            ErrorCode::TooManyFiles,
            format!(
                "the request names {} files; at most {MAX_FILES} (IDmaLoader.MAX_FILES) fit one \
                 request: split the load",
                table.len()
            ),
        ));
    }
    let mut segments = Vec::with_capacity(wire.len());
    for (i, seg) in wire.iter().enumerate() {
        if seg.fd.is_some() {
            return Err(LoadError::new(
                ErrorCode::BadSegments,
                format!(
                    "segment {i} carries an fd although the request has a file table \
                     (LoadRequest.files): name its file with fileIndex and leave fd null, or \
                     send no files and one fd per segment"
                ),
            ));
        }
        let file = usize::try_from(seg.fileIndex)
            .ok()
            .filter(|&f| f < table.len())
            .ok_or_else(|| {
                LoadError::new(
                    ErrorCode::BadSegments,
                    format!(
                        "segment {i}: fileIndex {} is not an index into LoadRequest.files \
                         ({} files)",
                        seg.fileIndex,
                        table.len()
                    ),
                )
            })?;
        segments.push(segment(i, seg, file)?);
    }
    let mut files = Vec::with_capacity(table.len());
    for (i, pfd) in table.iter().enumerate() {
        let Some(pfd) = pfd else {
            return Err(LoadError::new(
                ErrorCode::BadFd,
                format!("file {i} is null: pass a regular file opened for reading"),
            ));
        };
        files.push(duplicate(pfd, format_args!("file {i}"))?);
    }
    Ok((files, segments))
}

/// The version 1 layout: every segment carries its own fd (file `i` is segment `i`'s).
fn fd_per_segment(
    wire: &[idl::FileSegment::FileSegment],
    max_fd_segments: usize,
) -> Result<(Vec<OwnedFd>, Vec<Segment>), LoadError> {
    if wire.len() > max_fd_segments {
        return Err(LoadError::new(
            ErrorCode::BadSegments,
            format!(
                "{} segments, each with an fd of its own, exceed the limit of {max_fd_segments}; \
                 send each distinct file once in LoadRequest.files (version 2) or split the load",
                wire.len()
            ),
        ));
    }
    let mut files = Vec::with_capacity(wire.len());
    let mut segments = Vec::with_capacity(wire.len());
    for (i, seg) in wire.iter().enumerate() {
        if seg.fileIndex != -1 {
            return Err(LoadError::new(
                ErrorCode::BadSegments,
                format!(
                    "segment {i} names file {} but the request has no file table \
                     (LoadRequest.files)",
                    seg.fileIndex
                ),
            ));
        }
        let Some(pfd) = &seg.fd else {
            return Err(LoadError::new(
                ErrorCode::BadFd,
                format!("segment {i} has no fd: pass a regular file opened for reading"),
            ));
        };
        files.push(duplicate(pfd, format_args!("segment {i}"))?);
        segments.push(segment(i, seg, i)?);
    }
    Ok((files, segments))
}

fn duplicate(
    pfd: &ParcelFileDescriptor,
    what: std::fmt::Arguments<'_>,
) -> Result<OwnedFd, LoadError> {
    pfd.as_ref().try_clone().map_err(|e| {
        LoadError::new(
            ErrorCode::BadFd,
            format!("{what}: cannot duplicate its fd: {e}"),
        )
    })
}

fn segment(
    i: usize,
    seg: &idl::FileSegment::FileSegment,
    file: usize,
) -> Result<Segment, LoadError> {
    Ok(Segment {
        file,
        file_offset: non_negative(seg.fileOffset, i, "fileOffset")?,
        length: non_negative(seg.length, i, "length")?,
        buffer_offset: non_negative(seg.bufferOffset, i, "bufferOffset")?,
    })
}

fn non_negative(v: i64, i: usize, field: &str) -> Result<u64, LoadError> {
    u64::try_from(v).map_err(|_| {
        LoadError::new(
            ErrorCode::InvalidArgument,
            format!("segment {i}: {field} is {v}; it must be >= 0"),
        )
    })
}

fn tunable(v: i64, field: &str) -> Result<u64, LoadError> {
    u64::try_from(v).map_err(|_| {
        LoadError::new(
            ErrorCode::InvalidArgument,
            format!("tunables.{field} is {v}; use 0 for the default or a positive value"),
        )
    })
}

fn tunable32(v: i32, field: &str) -> Result<u32, LoadError> {
    u32::try_from(v).map_err(|_| {
        LoadError::new(
            ErrorCode::InvalidArgument,
            format!("tunables.{field} is {v}; use 0 for the default or a positive value"),
        )
    })
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Descriptors open in this process.
pub fn open_fd_count() -> usize {
    // One of the entries is the directory's own fd while it is being read.
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// An asynchronous load, as its caller sees it.
struct LoadHandle {
    cancel: CancelToken,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl stack::Interface for LoadHandle {}

impl idl::ILoadHandle::ILoadHandle for LoadHandle {
    fn cancel(&self) -> BinderResult<bool> {
        let running = !self.done.load(std::sync::atomic::Ordering::Acquire);
        self.cancel.cancel();
        Ok(running)
    }
}

impl idl::IDmaLoader::IDmaLoader for DmaLoaderService {
    fn load(
        &self,
        request: &idl::LoadRequest::LoadRequest,
    ) -> BinderResult<idl::LoadResult::LoadResult> {
        let result = self.admit().and_then(|caller| {
            let req = engine_request(caller, request, self.inner.config.engine.max_files)?;
            let share = Want::of(caller, request, &req);
            self.run_load(
                caller,
                req,
                share,
                &CancelToken::new(),
                &dmaload_engine::NoProgress,
            )
        });
        self.check(result)
    }

    fn startLoad(
        &self,
        request: &idl::LoadRequest::LoadRequest,
        callback: &Strong<dyn idl::ILoadCallback::ILoadCallback>,
    ) -> BinderResult<Strong<dyn idl::ILoadHandle::ILoadHandle>> {
        // Bad input fails here, synchronously; what happens during the load goes to onError.
        let started = self.admit().and_then(|caller| {
            let req = engine_request(caller, request, self.inner.config.engine.max_files)?;
            let share = Want::of(caller, request, &req);
            let cancel = CancelToken::new();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (service, token, finished) = (self.clone(), cancel.clone(), done.clone());
            let callback = callback.clone();
            // The caller's death cancels the load (binder death; the pidfd reaper covers
            // transports that do not report it). Linked here, on the binder thread that
            // received the callback, not in the load thread: the link flushes this thread's
            // queued BC_ACQUIRE of the callback's handle. rsbinder 0.12.0 holds a binder
            // thread's reference commands until its reply goes out (AOSP libbinder keeps the
            // proxy alive until then), so a load that ended first had its thread's BC_RELEASE
            // reach the driver before that BC_ACQUIRE: the driver freed the handle while the
            // callback was in use ("transaction release ... bad handle").
            let death = stack::cancel_on_death(&callback, &token);
            std::thread::Builder::new()
                .name("dmaload-async".into())
                .spawn(move || {
                    let _death = death;
                    // This thread makes every callback of the load; the engine runs beside it
                    // and only leaves progress in the relay (see `progress_relay`).
                    let relay = ProgressRelay::default();
                    let outcome = std::thread::scope(|scope| {
                        let load = std::thread::Builder::new()
                            .name("dmaload-load".into())
                            .spawn_scoped(scope, || {
                                let _end = relay.end_on_drop();
                                service.run_load(caller, req, share, &token, &relay)
                            })
                            .map_err(|e| {
                                LoadError::new(
                                    ErrorCode::Internal,
                                    format!("starting a load thread: {e}"),
                                )
                            })?;
                        relay.forward(|done, total| {
                            // oneway: a dead callback is noticed by the death watch, not here.
                            let _ = callback.onProgress(clamp_i64(done), clamp_i64(total));
                        });
                        load.join().unwrap_or_else(|_| {
                            Err(LoadError::new(
                                ErrorCode::Internal,
                                "the load thread panicked",
                            ))
                        })
                    });
                    finished.store(true, std::sync::atomic::Ordering::Release);
                    let delivered = match outcome {
                        Ok(result) => {
                            let id = result.bufferId;
                            let ok = callback.onComplete(&result).is_ok();
                            if !ok {
                                // Nobody took the buffer: drop its charge now.
                                let _ = service.buffers().release(caller.uid, id);
                            }
                            ok
                        }
                        Err(err) => callback.onError(err.code.code(), &err.message).is_ok(),
                    };
                    if !delivered {
                        log::info!(
                            "uid {} pid {}: async callback unreachable",
                            caller.uid,
                            caller.pid
                        );
                    }
                })
                .map_err(|e| {
                    LoadError::new(ErrorCode::Internal, format!("starting a load thread: {e}"))
                })?;
            Ok(stack::new_handle_binder(LoadHandle { cancel, done }))
        });
        self.check(started)
    }

    fn releaseBuffer(&self, buffer_id: i64) -> BinderResult<()> {
        let r = self.admit().and_then(|caller| {
            self.inner
                .buffers
                .release(caller.uid, buffer_id)
                .map(|_| ())
        });
        self.check(r)
    }

    fn getBackends(&self) -> BinderResult<Vec<idl::BackendInfo::BackendInfo>> {
        let r = self.admit().map(|_| {
            self.inner
                .engine
                .backends()
                .into_iter()
                .map(|b| idl::BackendInfo::BackendInfo {
                    name: b.backend.name(),
                    isDmaBuf: b.dma_buf,
                    allowed: b.allowed,
                    maxBufferBytes: clamp_i64(b.max_buffer_bytes),
                    detail: b.detail,
                })
                .collect()
        });
        self.check(r)
    }

    fn getUsage(&self) -> BinderResult<idl::CallerUsage::CallerUsage> {
        let r = self.admit().map(|caller| {
            let u = self.inner.engine.usage(caller.uid);
            let total = self.inner.engine.total_usage();
            let (pooled, _) = self.inner.engine.pooled_bytes();
            let cfg = &self.inner.config.engine;
            let buffers = self
                .inner
                .buffers
                .views()
                .iter()
                .filter(|b| b.holder.uid == caller.uid)
                .count();
            let reuse = self.inner.reuse.of_uid(caller.uid);
            idl::CallerUsage::CallerUsage {
                uid: i32::try_from(caller.uid).unwrap_or(i32::MAX),
                chargedBytes: clamp_i64(u.charged_bytes),
                capBytes: clamp_i64(cfg.per_caller_cap_bytes),
                buffers: i32::try_from(buffers).unwrap_or(i32::MAX),
                loadsInFlight: i32::try_from(u.loads_in_flight).unwrap_or(i32::MAX),
                globalAvailableBytes: clamp_i64(
                    cfg.global_cap_bytes
                        .saturating_sub(total.charged_bytes + total.working_bytes + pooled),
                ),
                workingBytes: clamp_i64(u.working_bytes),
                reuseHits: clamp_i64(reuse.tally.hits),
                reuseMisses: clamp_i64(reuse.tally.misses),
                reuseBytesSaved: clamp_i64(reuse.tally.bytes_saved),
                cachedBuffers: i32::try_from(reuse.cached_buffers).unwrap_or(i32::MAX),
                cachedBytes: clamp_i64(reuse.cached_bytes),
            }
        });
        self.check(r)
    }

    fn debugDump(&self, args: &[String]) -> BinderResult<String> {
        let r = self
            .admit()
            .and_then(|caller| crate::dump::render(self, Viewer { uid: caller.uid }, args));
        self.check(r)
    }

    fn getServiceState(&self) -> BinderResult<idl::ServiceState::ServiceState> {
        let r = self.admit().and_then(service_wide_view).map(|_| {
            let (buffers, bytes) = self.inner.buffers.outstanding();
            let total = self.inner.engine.total_usage();
            let (cached, cached_bytes) = self.inner.reuse.cached();
            idl::ServiceState::ServiceState {
                openFds: i32::try_from(open_fd_count()).unwrap_or(i32::MAX),
                outstandingBufferBytes: clamp_i64(bytes),
                liveBuffers: i32::try_from(buffers).unwrap_or(i32::MAX),
                loadsInFlight: i32::try_from(total.loads_in_flight).unwrap_or(i32::MAX),
                workingBytes: clamp_i64(total.working_bytes),
                cachedBuffers: i32::try_from(cached).unwrap_or(i32::MAX),
                cachedBytes: clamp_i64(cached_bytes),
            }
        });
        self.check(r)
    }
}

/// The service-wide state is every caller's activity: like the dump's service-wide views, it is
/// for root, system and shell (leak checks, debugging); a caller sees its own with getUsage.
fn service_wide_view(caller: Caller) -> Result<Caller, LoadError> {
    if (crate::dump::Viewer { uid: caller.uid }).sees_everyone() {
        return Ok(caller);
    }
    Err(LoadError::new(
        ErrorCode::PermissionDenied,
        format!(
            "uid {}: getServiceState shows every caller's activity and is for root, system and \
             shell; use getUsage for this uid's own",
            caller.uid
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most segments a request may have make a parcel one kernel binder buffer holds
    /// (1 MiB less two pages, shared by every call in flight to the service) with room left.
    #[cfg(not(feature = "android"))]
    #[test]
    fn the_largest_request_fits_the_binder_buffer() {
        let max = dmaload_engine::EngineConfig::from_system().max_segments;
        let segment = |i: usize| idl::FileSegment::FileSegment {
            fileIndex: (i % MAX_FILES) as i32,
            fileOffset: i64::MAX,
            length: i64::MAX,
            bufferOffset: i64::MAX,
            ..Default::default()
        };
        let request = |n: usize| idl::LoadRequest::LoadRequest {
            segments: (0..n).map(segment).collect(),
            name: "n".repeat(MAX_NAME_BYTES),
            ..Default::default()
        };
        let one = rsbinder::to_bytes(&request(1)).unwrap().len();
        let two = rsbinder::to_bytes(&request(2)).unwrap().len();
        assert_eq!(two - one, 40, "bytes per segment (docs/DESIGN.md)");
        let largest = rsbinder::to_bytes(&request(max)).unwrap().len();
        // The 64 files add a flat_binder_object and an offset each (32 bytes).
        let with_files = largest + MAX_FILES * 32;
        assert!(
            with_files <= 700 << 10,
            "{max} segments: {with_files} bytes of parcel"
        );
    }

    const CALLER: Caller = Caller {
        uid: 4_294_967_295,
        pid: 1,
    };

    #[test]
    fn buffer_names_are_escaped_and_fit_the_engines_limit() {
        assert_eq!(
            buffer_name(CALLER, "model").unwrap(),
            "dmaload:uid4294967295:model"
        );
        assert_eq!(buffer_name(CALLER, "").unwrap(), "dmaload:uid4294967295");
        let forged = buffer_name(CALLER, "a\r\nid=1 uid=0\x1b[2J").unwrap();
        assert_eq!(forged, r"dmaload:uid4294967295:a\x0d\x0aid=1 uid=0\x1b[2J");
        // The longest printable name stays whole; the worst escaped one is cut, within 255.
        let longest = "n".repeat(MAX_NAME_BYTES);
        assert!(buffer_name(CALLER, &longest).unwrap().ends_with(&longest));
        for worst in [
            "\x01".repeat(MAX_NAME_BYTES),
            "\u{9b}".repeat(MAX_NAME_BYTES / 2),
        ] {
            let name = buffer_name(CALLER, &worst).unwrap();
            assert!(
                name.len() <= LoadRequest::MAX_NAME_BYTES,
                "{} bytes",
                name.len()
            );
            assert!(name.ends_with("bytes)"), "{name}");
        }
        let too_long = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            buffer_name(CALLER, &too_long).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            buffer_name(CALLER, "a\0b").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}
