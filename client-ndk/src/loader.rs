//! The connection to the service, and every call the client makes over it.
//!
//! The AIDL types stay in this file: the rest of the crate (and the C API) sees only
//! [`LoadRequest`], [`LoadedBuffer`], [`BackendInfo`] and [`Error`].

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use crate::binder_stack::{
    self as stack, idl, BinderResult, CallError, Interface, ParcelFileDescriptor, Status, Strong,
};
use crate::buffer::{BackendInfo, LoadStats, LoadedBuffer, Reuse};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorCode, Result};
use crate::request::{IoMode, LoadRequest, Segment, MAX_FILES};
use crate::task::{LoadEvents, PendingLoad, TaskShared};
use dmaload_abi::digest::{Digest, DigestAlgorithm, DIGEST_BYTES};
use dmaload_abi::{Untrusted, SERVICE_INSTANCE};

use idl::IDmaLoader::IDmaLoader;

/// The connection itself; shared with the loads in flight so they outlive the [`Loader`].
struct Connection {
    service: Strong<dyn IDmaLoader>,
    endpoint: Endpoint,
    rpc: Option<stack::Session>,
    in_flight: Arc<InFlight>,
    /// The interface version the service speaks (`getInterfaceVersion`), asked once: it
    /// decides the request layout.
    version: i32,
    /// Keeps the service's death notification registered.
    _death: Option<stack::DeathLink>,
}

/// Asynchronous loads waiting for their completion callback. If the service dies, no
/// callback will come: its death notification ends them with `EPIPE` instead.
#[derive(Default)]
struct InFlight {
    tasks: std::sync::Mutex<Vec<std::sync::Weak<TaskShared>>>,
}

impl InFlight {
    fn add(&self, task: &Arc<TaskShared>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| t.upgrade().is_some_and(|t| !t.is_done()));
        tasks.push(Arc::downgrade(task));
    }

    /// The service died: no callback will come for the loads still waiting.
    fn service_died(&self) {
        // Collect under the lock, deliver after dropping it (callbacks may call back in).
        let tasks: Vec<_> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.drain(..).filter_map(|t| t.upgrade()).collect()
        };
        for task in tasks {
            task.finish(Err(Error::os(
                libc::EPIPE,
                "the dmaload service died during the load",
            )));
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // An RPC session with incoming connections is kept alive by its serving threads:
        // close it explicitly, or its sockets and threads outlive the loader.
        if let Some(session) = &self.rpc {
            session.close();
        }
    }
}

/// A connection to the dmaload service. Cheap to share between threads (`Sync`).
pub struct Loader {
    conn: Arc<Connection>,
}

/// Turns a binder status into the client's error.
fn from_status(status: Status, what: &str) -> Error {
    match stack::call_error(&status) {
        CallError::ServiceSpecific { code, message } => match ErrorCode::from_code(code) {
            Some(code) => Error::service(code, message),
            None => Error::service(
                ErrorCode::Internal,
                format!("{what}: unknown service error code {code}: {message}"),
            ),
        },
        CallError::Transport(code) => from_status_code(code, what),
        CallError::Exception(text) => Error::os(libc::EPROTO, format!("{what}: {text}")),
    }
}

/// Turns a transport failure into a negative-errno error.
fn from_status_code(code: stack::StatusCode, what: &str) -> Error {
    Error::os(
        stack::transport_errno(code),
        format!("{what}: binder transport: {code:?}"),
    )
}

impl Loader {
    /// The endpoint [`Loader::connect`] uses when given none.
    pub fn default_endpoint() -> Result<Endpoint> {
        Endpoint::from_environment(|| kernel_binder_has_service(SERVICE_INSTANCE))
    }

    /// Connects to `endpoint`, or to [`Loader::default_endpoint`].
    pub fn connect(endpoint: Option<&Endpoint>) -> Result<Loader> {
        let endpoint = match endpoint {
            Some(e) => e.clone(),
            None => Loader::default_endpoint()?,
        };
        let (service, rpc) = match &endpoint {
            Endpoint::Binder { instance } => (connect_kernel(instance)?, None),
            Endpoint::Socket(path) => {
                let (service, session) = connect_socket(path)?;
                (service, Some(session))
            }
        };
        let version = match service.r#getInterfaceVersion() {
            Ok(version) => version,
            Err(status) => {
                if let Some(session) = &rpc {
                    session.close();
                }
                return Err(from_status(status, "getInterfaceVersion"));
            }
        };
        let in_flight = Arc::new(InFlight::default());
        let watched = in_flight.clone();
        let death = match stack::link_to_death(&service, move || watched.service_died()) {
            Ok(link) => Some(link),
            Err(code) => {
                // Without it a dead service leaves asynchronous loads waiting; loads still work.
                log::warn!("no death notification from the dmaload service: {code:?}");
                None
            }
        };
        Ok(Loader {
            conn: Arc::new(Connection {
                service,
                endpoint,
                rpc,
                in_flight,
                version,
                _death: death,
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.conn.endpoint
    }

    /// The version of the `vendor.dmaload` interface the service speaks (1, 2, ...).
    pub fn interface_version(&self) -> i32 {
        self.conn.version
    }

    /// The buffer backends the service offers.
    pub fn backends(&self) -> Result<Vec<BackendInfo>> {
        let list = self
            .conn
            .service
            .r#getBackends()
            .map_err(|s| from_status(s, "getBackends"))?;
        Ok(list
            .into_iter()
            .map(|b| BackendInfo {
                name: b.r#name,
                allowed: b.r#allowed,
                max_buffer_bytes: u64::try_from(b.r#maxBufferBytes).unwrap_or(0),
                dma_buf: b.r#isDmaBuf,
                detail: b.r#detail,
            })
            .collect())
    }

    /// Loads `request` and waits for the buffer.
    pub fn load(&self, request: &LoadRequest) -> Result<LoadedBuffer> {
        let wire = to_wire(request, self.conn.version)?;
        let result = self
            .conn
            .service
            .r#load(&wire)
            .map_err(|s| from_status(s, "load"))?;
        from_wire(result, request)
    }

    /// Starts loading `request`; `events` hear about progress and the end.
    pub fn load_async(
        &self,
        request: &LoadRequest,
        events: Arc<dyn LoadEvents>,
    ) -> Result<PendingLoad> {
        let wire = to_wire(request, self.conn.version)?;
        let shared = TaskShared::new(events);
        self.conn.in_flight.add(&shared);
        let callback = stack::new_load_callback(CallbackBridge {
            task: shared.clone(),
            opened_direct: request.opened_direct(),
            requested_name: request.name().to_string(),
        });
        let handle = self
            .conn
            .service
            .r#startLoad(&wire, &callback)
            .map_err(|s| from_status(s, "startLoad"))?;
        shared.set_canceller(Box::new(move || {
            // false: the load had already ended; its outcome arrives anyway.
            if let Err(status) = handle.r#cancel() {
                log::warn!("cancelling a load: {status}");
            }
        }));
        let connection: Arc<dyn std::any::Any + Send + Sync> = self.conn.clone();
        Ok(PendingLoad {
            shared,
            _connection: Some(connection),
        })
    }

    /// Ends the service's charge for a buffer this caller loaded.
    pub fn release_buffer(&self, buffer_id: i64) -> Result<()> {
        self.conn
            .service
            .r#releaseBuffer(buffer_id)
            .map_err(|s| from_status(s, "releaseBuffer"))
    }

    /// The service's accounting for this caller.
    pub fn usage(&self) -> Result<Usage> {
        let u = self
            .conn
            .service
            .r#getUsage()
            .map_err(|s| from_status(s, "getUsage"))?;
        let mut counters = vec![
            ("uid", i64::from(u.r#uid)),
            ("charged_bytes", u.r#chargedBytes),
            ("cap_bytes", u.r#capBytes),
            ("buffers", i64::from(u.r#buffers)),
            ("loads_in_flight", i64::from(u.r#loadsInFlight)),
            ("global_available_bytes", u.r#globalAvailableBytes),
        ];
        if self.conn.version >= 2 {
            counters.extend([
                ("working_bytes", u.r#workingBytes),
                ("reuse_hits", u.r#reuseHits),
                ("reuse_misses", u.r#reuseMisses),
                ("reuse_bytes_saved", u.r#reuseBytesSaved),
                ("cached_buffers", i64::from(u.r#cachedBuffers)),
                ("cached_bytes", u.r#cachedBytes),
            ]);
        }
        Ok(Usage { counters })
    }

    /// The service's dump: the views `dumpsys` shows (`--help` lists them), through the
    /// interface so it works on every transport.
    pub fn dump(&self, args: &[String]) -> Result<String> {
        self.conn
            .service
            .r#debugDump(args)
            .map_err(|s| from_status(s, "debugDump"))
    }
}

/// Service accounting: named counters, in the service's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub counters: Vec<(&'static str, i64)>,
}

impl Usage {
    pub fn to_json(&self) -> String {
        let fields: Vec<String> = self
            .counters
            .iter()
            .map(|(name, value)| format!("\"{name}\":{value}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    pub fn to_text(&self) -> String {
        self.counters
            .iter()
            .map(|(name, value)| format!("{name:<20} {value}\n"))
            .collect()
    }
}

fn connect_kernel(instance: &str) -> Result<Strong<dyn IDmaLoader>> {
    let what = format!("connecting to binder service {instance}");
    // No waiting for a registration that may never come: an absent service is ENOENT now.
    match stack::check_service(instance) {
        Ok(Some(service)) => Ok(service),
        Ok(None) => Err(Error::os(
            libc::ENOENT,
            format!("{what}: not registered with the service manager (is dmaloadd running?)"),
        )),
        Err(code) => Err(from_status_code(code, &what)),
    }
}

fn kernel_binder_has_service(instance: &str) -> bool {
    matches!(stack::check_service(instance), Ok(Some(_)))
}

fn connect_socket(path: &Path) -> Result<(Strong<dyn IDmaLoader>, stack::Session)> {
    let what = format!(
        "connecting to the dmaload service on {}",
        Untrusted::path(path)
    );
    if !stack::SOCKETS_SUPPORTED {
        return Err(Error::os(
            libc::EOPNOTSUPP,
            format!("{what}: RPC sockets are for Linux hosts; use the \"binder\" endpoint"),
        ));
    }
    // Check the socket first: the binder stack reports a missing path and a refused
    // connection with less precise codes, and "nobody listens" is what callers act upon.
    if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
        return Err(Error::from_io(&what, &e));
    }
    stack::connect_socket(path, SERVICE_INSTANCE).map_err(|code| from_status_code(code, &what))
}

fn io_mode_to_wire(mode: IoMode) -> idl::IoMode::IoMode {
    match mode {
        IoMode::Auto => idl::IoMode::IoMode::AUTO,
        IoMode::Direct => idl::IoMode::IoMode::DIRECT,
        IoMode::Buffered => idl::IoMode::IoMode::BUFFERED,
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::os(
            libc::EOVERFLOW,
            format!("{what} {value} does not fit the interface"),
        )
    })
}

/// The request as the service's interface version takes it: version 2 sends each distinct
/// file once (`LoadRequest.files`) and segments name theirs by index; version 1 has one fd
/// per segment, so it takes at most [`MAX_FILES`] segments (what every transport carries).
fn to_wire(request: &LoadRequest, version: i32) -> Result<idl::LoadRequest::LoadRequest> {
    if request.shareable() && version < 2 {
        return Err(Error::os(
            libc::EOPNOTSUPP,
            format!(
                "the service speaks version {version} of the interface, which cannot share \
                 buffers: load without set_shareable, or update the service"
            ),
        ));
    }
    if version < 2 && request.uses_digests() {
        return Err(Error::os(
            libc::EOPNOTSUPP,
            format!(
                "the service speaks version {version} of the interface, which computes no \
                 digests: load without them, or update the service"
            ),
        ));
    }
    let files = request.dup_files()?;
    let mut segments = Vec::with_capacity(request.segments().len());
    let mut table = None;
    if version >= 2 {
        for seg in request.segments() {
            let index = i32::try_from(seg.file)
                .map_err(|_| Error::os(libc::EINVAL, "a file index does not fit the interface"))?;
            segments.push(wire_segment(seg, None, index)?);
        }
        if !files.is_empty() {
            table = Some(
                files
                    .into_iter()
                    .map(|fd| Some(ParcelFileDescriptor::new(fd)))
                    .collect(),
            );
        }
    } else {
        if request.segments().len() > MAX_FILES {
            return Err(Error::service(
                ErrorCode::TooManyFiles,
                format!(
                    "{} segments: the service speaks version {version} of the interface, which \
                     takes one fd per segment, at most {MAX_FILES}; split the load",
                    request.segments().len()
                ),
            ));
        }
        for seg in request.segments() {
            let fd = files
                .get(seg.file)
                .ok_or_else(|| Error::os(libc::EINVAL, "a segment names no file of the request"))?
                .try_clone()
                .map_err(|e| Error::from_io("duplicating a file's fd", &e))?;
            segments.push(wire_segment(seg, Some(fd), -1)?);
        }
    }
    Ok(idl::LoadRequest::LoadRequest {
        r#segments,
        r#backend: request.backend().unwrap_or("auto").to_string(),
        r#ioMode: io_mode_to_wire(request.io_mode()),
        r#name: request.name().to_string(),
        r#tunables: idl::Tunables::Tunables {
            r#gatherSize: to_i64(request.gather_size(), "gather size")?,
            ..Default::default()
        },
        r#files: table,
        r#shareable: request.shareable(),
        r#digests: request
            .digests()
            .iter()
            .map(|&a| algorithm_to_wire(a))
            .collect(),
        r#expectedDigests: (!request.expected_digests().is_empty()).then(|| {
            request
                .expected_digests()
                .iter()
                .map(|d| {
                    Some(idl::Digest::Digest {
                        r#segment: i32::try_from(d.segment).unwrap_or(i32::MAX),
                        r#algorithm: algorithm_to_wire(d.algorithm),
                        r#value: d.value.to_vec(),
                        r#fromKernel: false,
                    })
                })
                .collect()
        }),
    })
}

fn algorithm_to_wire(algorithm: DigestAlgorithm) -> idl::DigestAlgorithm::DigestAlgorithm {
    match algorithm {
        DigestAlgorithm::Sha256 => idl::DigestAlgorithm::DigestAlgorithm::SHA256,
        DigestAlgorithm::FsVerity => idl::DigestAlgorithm::DigestAlgorithm::FSVERITY_SHA256,
    }
}

/// The digests of a result; a malformed one is the service's bug.
fn digests_from_wire(wire: Option<&[Option<idl::Digest::Digest>]>) -> Result<Vec<Digest>> {
    let bad = |why: String| {
        Error::service(
            ErrorCode::Internal,
            format!("the service returned a malformed digest: {why}"),
        )
    };
    let mut digests = Vec::new();
    for d in wire.unwrap_or_default() {
        let Some(d) = d else {
            return Err(bad("a null entry".to_string()));
        };
        let algorithm = match d.r#algorithm {
            idl::DigestAlgorithm::DigestAlgorithm::SHA256 => DigestAlgorithm::Sha256,
            idl::DigestAlgorithm::DigestAlgorithm::FSVERITY_SHA256 => DigestAlgorithm::FsVerity,
            other => return Err(bad(format!("algorithm {}", other.0))),
        };
        let value: [u8; DIGEST_BYTES] = d
            .r#value
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("{} bytes", d.r#value.len())))?;
        digests.push(Digest {
            segment: usize::try_from(d.r#segment)
                .map_err(|_| bad(format!("segment {}", d.r#segment)))?,
            algorithm,
            value,
            from_kernel: d.r#fromKernel,
        });
    }
    Ok(digests)
}

/// One wire segment: its own `fd` and `file_index` -1 (version 1), or no fd and its file's
/// index (version 2).
fn wire_segment(
    seg: &Segment,
    fd: Option<OwnedFd>,
    file_index: i32,
) -> Result<idl::FileSegment::FileSegment> {
    Ok(idl::FileSegment::FileSegment {
        r#fd: fd.map(ParcelFileDescriptor::new),
        r#fileOffset: to_i64(seg.file_offset, "file offset")?,
        r#length: to_i64(seg.length, "segment length")?,
        r#bufferOffset: to_i64(seg.buffer_offset, "buffer offset")?,
        r#fileIndex: file_index,
    })
}

fn from_wire(
    mut result: idl::LoadResult::LoadResult,
    request: &LoadRequest,
) -> Result<LoadedBuffer> {
    // The reply is ours: its fd is taken, not duplicated (and the original closed).
    let fd = result
        .r#buffer
        .take()
        .map(OwnedFd::from)
        .ok_or_else(no_buffer_fd)?;
    from_wire_parts(&result, fd, request.opened_direct(), request.name())
}

fn no_buffer_fd() -> Error {
    Error::service(ErrorCode::Internal, "the service returned no buffer fd")
}

/// `fd` is the result's buffer fd, owned.
fn from_wire_parts(
    result: &idl::LoadResult::LoadResult,
    fd: OwnedFd,
    opened_direct: bool,
    requested_name: &str,
) -> Result<LoadedBuffer> {
    let s = &result.r#stats;
    let io_mode = match (s.r#bytesDirect > 0, s.r#bytesBuffered > 0) {
        (true, false) => IoMode::Direct,
        (false, true) => IoMode::Buffered,
        _ => IoMode::Auto,
    };
    let name = if result.r#name.is_empty() {
        requested_name
    } else {
        &result.r#name
    };
    Ok(LoadedBuffer {
        fd: Some(fd),
        size: to_u64(result.r#sizeBytes),
        buffer_id: result.r#bufferId,
        backend: result.r#backend.clone(),
        name: name.to_string(),
        io_mode,
        stats: LoadStats {
            total_ns: to_u64(s.r#totalNs),
            alloc_ns: to_u64(s.r#allocNs),
            first_gather_ns: to_u64(s.r#firstGatherNs),
            io_ns: to_u64(s.r#ioNs),
            copy_ns: to_u64(s.r#copyNs),
            direct_bytes: to_u64(s.r#bytesDirect),
            buffered_bytes: to_u64(s.r#bytesBuffered),
            bounced_bytes: to_u64(s.r#bytesBounced),
            digest_ns: to_u64(s.r#digestNs),
            working_bytes: to_u64(s.r#workingBytes),
            fallbacks: s.r#fallbacks.clone(),
        },
        opened_direct,
        reuse: match result.r#reuse {
            idl::Reuse::Reuse::COALESCED => Reuse::Coalesced,
            idl::Reuse::Reuse::SHARED => Reuse::Shared,
            idl::Reuse::Reuse::CACHED => Reuse::Cached,
            _ => Reuse::None,
        },
        digests: digests_from_wire(result.r#digests.as_deref())?,
    })
}

/// Receives the service's callbacks for one asynchronous load.
struct CallbackBridge {
    task: Arc<TaskShared>,
    opened_direct: bool,
    requested_name: String,
}

impl Interface for CallbackBridge {}

impl idl::ILoadCallback::ILoadCallback for CallbackBridge {
    fn r#onProgress(&self, bytes_done: i64, bytes_total: i64) -> BinderResult<()> {
        self.task.progress(to_u64(bytes_done), to_u64(bytes_total));
        Ok(())
    }

    fn r#onComplete(&self, result: &idl::LoadResult::LoadResult) -> BinderResult<()> {
        // Our own duplicate: the parcel's fd closes with the parcel.
        let fd = result
            .r#buffer
            .as_ref()
            .ok_or_else(no_buffer_fd)
            .and_then(|pfd| {
                pfd.as_ref()
                    .try_clone()
                    .map_err(|e| Error::from_io("duplicating the buffer fd", &e))
            });
        let outcome =
            fd.and_then(|fd| from_wire_parts(result, fd, self.opened_direct, &self.requested_name));
        self.task.finish(outcome);
        Ok(())
    }

    fn r#onError(&self, code: i32, message: &str) -> BinderResult<()> {
        let err = match ErrorCode::from_code(code) {
            Some(code) => Error::service(code, message),
            None => Error::service(
                ErrorCode::Internal,
                format!("unknown error code {code}: {message}"),
            ),
        };
        self.task.finish(Err(err));
        Ok(())
    }
}
