//! Interface versions across the wire: a version 1 client (the frozen `dmaload_aidl::v1`
//! bindings) against the version 2 dmaloadd, and the current client library against a version 1
//! server (written here over the same engine with the v1 bindings, as a device that still
//! ships version 1 would serve it). Over RPC binder on Unix sockets.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "common/rpc.rs"]
mod rpc;

use dmaload::{Endpoint, ErrorCode, LoadRequest, Loader};
use dmaload_abi::SERVICE_INSTANCE as SERVICE_NAME;
use dmaload_aidl::v1::aidl as v1;
use dmaload_engine::{
    BackendChoice, Caller, CancelToken, Engine, EngineConfig, FdSegment,
    LoadRequest as EngineRequest, NoProgress,
};
use rpc::{fd_bytes, open, service_error, Service};
use rsbinder::{ParcelFileDescriptor, Status, StatusCode, Strong};
use v1::IDmaLoader::IDmaLoader as V1Loader;

/// A version 1 client's connection: the frozen bindings' proxy.
struct V1Conn {
    client: rsbinder::Client,
    loader: Strong<dyn V1Loader>,
}

impl V1Conn {
    fn open(socket: &Path) -> V1Conn {
        use rsbinder::entry::{WireProfile, WireVersion};
        let uri = rsbinder::Uri::new(rsbinder::Endpoint::unix(socket))
            .with_wire(WireProfile::Android13Plus(WireVersion::MAX));
        let client = rsbinder::Client::open_with(uri, |o, _| {
            o.fd_mode = Some(rsbinder::rpc::FileDescriptorTransportMode::Unix);
        })
        .expect("connect");
        let loader = client.get::<dyn V1Loader>(SERVICE_NAME).expect("service");
        V1Conn { client, loader }
    }
}

impl Drop for V1Conn {
    fn drop(&mut self) {
        if let Some(session) = self.client.session() {
            session.close_session();
        }
    }
}

fn v1_request(segments: Vec<(&Path, i64, i64, i64)>) -> v1::LoadRequest::LoadRequest {
    v1::LoadRequest::LoadRequest {
        segments: segments
            .into_iter()
            .map(
                |(path, file_offset, length, buffer_offset)| v1::FileSegment::FileSegment {
                    fd: Some(ParcelFileDescriptor::new(open(path))),
                    fileOffset: file_offset,
                    length,
                    bufferOffset: buffer_offset,
                },
            )
            .collect(),
        backend: "memfd".into(),
        name: "v1-client".into(),
        ..Default::default()
    }
}

/// The hash AOSP's aidl_api.go recorded when version 2 was frozen: the service reports it.
const V2_HASH: &str = include_str!("../../aidl/aidl_api/vendor.dmaload/2/.hash");

#[test]
fn a_version_1_client_loads_through_the_version_2_service() {
    let service = Service::start("v1-client", &["--max-files", "4"]);
    let conn = V1Conn::open(&service.socket());
    assert_eq!(conn.loader.getInterfaceVersion().unwrap(), 2);
    assert_eq!(conn.loader.getInterfaceHash().unwrap(), V2_HASH.trim());
    let (path, data) = service.file("weights.bin", 3 << 20);
    // Several segments, each with its fd (the only layout version 1 has), swapped around.
    let req = v1_request(vec![
        (&path, 2 << 20, 1 << 20, 0),
        (&path, 0, 4096, 1 << 20),
        (&path, 4096, (2 << 20) - 4096, (1 << 20) + 4096),
    ]);
    let result = conn.loader.load(&req).expect("a version 1 load");
    let got = fd_bytes(result.buffer.as_ref().expect("a buffer").as_ref(), 3 << 20);
    assert_eq!(&got[..1 << 20], &data[2 << 20..]);
    assert_eq!(&got[1 << 20..], &data[..2 << 20]);
    assert!(result.name.ends_with("v1-client"), "{}", result.name);
    conn.loader.releaseBuffer(result.bufferId).unwrap();

    // Its limits and codes are the ones version 1 knows: BAD_SEGMENTS beyond max-files fds.
    let five = v1_request((0..5).map(|i| (path.as_path(), 0, 1, i * 4096)).collect());
    let (code, message) = service_error(&conn.loader.load(&five).expect_err("5 fds"));
    assert_eq!(code, v1::ErrorCode::ErrorCode::BAD_SEGMENTS.0, "{message}");
    let state = conn.loader.getServiceState().unwrap();
    assert_eq!(state.outstandingBufferBytes, 0);
}

/// A version 1 dmaloadd: the frozen interface over the engine, one fd per segment.
struct V1Server {
    engine: Engine,
    /// Load requests it received.
    loads: Arc<AtomicUsize>,
    next_id: AtomicI64,
}

impl rsbinder::Interface for V1Server {}

fn refused(code: i32, message: String) -> Status {
    Status::new_service_specific_error(code, Some(message))
}

impl V1Loader for V1Server {
    fn load(
        &self,
        request: &v1::LoadRequest::LoadRequest,
    ) -> rsbinder::BinderResult<v1::LoadResult::LoadResult> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let mut segments = Vec::new();
        for (i, seg) in request.segments.iter().enumerate() {
            let Some(fd) = &seg.fd else {
                return Err(refused(2, format!("segment {i} has no fd")));
            };
            let number = |v: i64| u64::try_from(v).map_err(|_| refused(1, format!("{v} < 0")));
            segments.push(FdSegment {
                fd: fd
                    .as_ref()
                    .try_clone()
                    .map_err(|e| refused(2, e.to_string()))?,
                file_offset: number(seg.fileOffset)?,
                length: number(seg.length)?,
                buffer_offset: number(seg.bufferOffset)?,
            });
        }
        let req = EngineRequest::from_fd_segments(segments, request.name.clone())
            .with_backend(BackendChoice::parse(&request.backend));
        let caller = Caller::new(rsbinder::get_calling_uid());
        let buffer = self
            .engine
            .load(caller, req, &CancelToken::new(), &NoProgress)
            .map_err(|e| refused(e.code.code(), e.message))?;
        Ok(v1::LoadResult::LoadResult {
            buffer: Some(ParcelFileDescriptor::new(buffer.fd)),
            sizeBytes: i64::try_from(buffer.size).unwrap_or(i64::MAX),
            bufferId: self.next_id.fetch_add(1, Ordering::SeqCst),
            backend: buffer.backend.name(),
            isDmaBuf: buffer.backend.is_dma_buf(),
            name: request.name.clone(),
            ..Default::default()
        })
    }

    fn startLoad(
        &self,
        _request: &v1::LoadRequest::LoadRequest,
        _callback: &Strong<dyn v1::ILoadCallback::ILoadCallback>,
    ) -> rsbinder::BinderResult<Strong<dyn v1::ILoadHandle::ILoadHandle>> {
        Err(StatusCode::UnknownTransaction.into())
    }

    fn releaseBuffer(&self, _id: i64) -> rsbinder::BinderResult<()> {
        Ok(())
    }

    fn getBackends(&self) -> rsbinder::BinderResult<Vec<v1::BackendInfo::BackendInfo>> {
        Ok(Vec::new())
    }

    fn getUsage(&self) -> rsbinder::BinderResult<v1::CallerUsage::CallerUsage> {
        Ok(Default::default())
    }

    fn debugDump(&self, _args: &[String]) -> rsbinder::BinderResult<String> {
        Ok(String::new())
    }

    fn getServiceState(&self) -> rsbinder::BinderResult<v1::ServiceState::ServiceState> {
        Ok(Default::default())
    }
}

/// Serves a [`V1Server`] on `socket` until the guard drops.
fn serve_v1(socket: &Path, server: V1Server) -> impl Drop {
    let binder = v1::IDmaLoader::BnDmaLoader::new_binder(server);
    let wire = rsbinder::entry::WireProfile::Android13Plus(rsbinder::entry::WireVersion::MAX);
    rsbinder::serve(rsbinder::Uri::new(rsbinder::Endpoint::unix(socket)).with_wire(wire))
        .expect("serve")
        .add(SERVICE_NAME, binder.as_binder())
        .expect("add")
        .with(|o| {
            o.threads = Some(4);
            o.fd_modes = Some(vec![rsbinder::rpc::FileDescriptorTransportMode::Unix]);
        })
        .spawn()
        .expect("spawn")
}

#[test]
fn the_client_library_speaks_version_1_to_a_version_1_service() {
    let dir = std::env::temp_dir().join(format!("dmaload-versions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("v1.sock");
    let loads = Arc::new(AtomicUsize::new(0));
    let server = V1Server {
        engine: Engine::new(EngineConfig::from_system()).expect("engine"),
        loads: loads.clone(),
        next_id: AtomicI64::new(1),
    };
    let _serving = serve_v1(&socket, server);
    let loader = connect_when_up(&socket);
    assert_eq!(loader.interface_version(), 1);

    let data: Vec<u8> = (0..3 << 20).map(|i: usize| (i % 251) as u8).collect();
    let path = dir.join("weights.bin");
    std::fs::write(&path, &data).unwrap();
    // Three segments of one file: one fd in the request, one per segment on the wire.
    let mut request = LoadRequest::new();
    request.add_file(&path, 2 << 20, 1 << 20, 0).unwrap();
    request.add_file(&path, 0, 2 << 20, 1 << 20).unwrap();
    request.add_file(&path, 4096, 4096, 3 << 20).unwrap();
    request.set_backend(Some("memfd"));
    assert_eq!(request.file_count(), 1);
    let buffer = loader
        .load(&request)
        .expect("a load from a version 1 service");
    let mapped = buffer.map((3 << 20) + 4096).expect("map");
    let got = mapped.as_bytes();
    assert_eq!(&got[..1 << 20], &data[2 << 20..]);
    assert_eq!(&got[1 << 20..3 << 20], &data[..2 << 20]);
    assert_eq!(&got[3 << 20..], &data[4096..8192]);
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // One fd per segment: more than MAX_FILES segments fail here, before anything is sent.
    let mut many = LoadRequest::new();
    for i in 0..65u64 {
        many.add_file(&path, i * 4096, 4096, i * 4096).unwrap();
    }
    let err = loader.load(&many).expect_err("65 segments for version 1");
    assert_eq!(err.code(), Some(ErrorCode::TooManyFiles), "{err}");
    assert!(err.message().contains("version 1"), "{err}");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "nothing was sent");

    // Version 1 shares no buffers: a shareable request fails here, saying so.
    let mut shareable = LoadRequest::new();
    shareable.add_file(&path, 0, 0, 0).unwrap();
    shareable.set_shareable(true);
    let err = loader
        .load(&shareable)
        .expect_err("a shareable load from version 1");
    assert_eq!(err.c_code(), -libc::EOPNOTSUPP, "{err}");
    assert!(err.message().contains("version 1"), "{err}");
    let events: Arc<dyn dmaload::LoadEvents> = Arc::new(dmaload::NoEvents);
    let err = loader
        .load_async(&shareable, events)
        .err()
        .expect("an asynchronous shareable load from version 1");
    assert_eq!(err.c_code(), -libc::EOPNOTSUPP, "{err}");
    assert_eq!(loads.load(Ordering::SeqCst), 1, "nothing was sent");
    std::fs::remove_dir_all(&dir).ok();
}

fn connect_when_up(socket: &Path) -> Loader {
    let endpoint = Endpoint::Socket(socket.to_path_buf());
    for _ in 0..500 {
        if let Ok(loader) = Loader::connect(Some(&endpoint)) {
            return loader;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Loader::connect(Some(&endpoint)).expect("connect to the version 1 server")
}
