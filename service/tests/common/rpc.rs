//! The dmaloadd process and the raw AIDL client the RPC tests share (`rpc_e2e`, `hardening`,
//! `versions`): a real dmaloadd on its own Unix socket, real files, real fds crossing it.

// Each test binary uses its part.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dmaload_abi::SERVICE_INSTANCE as SERVICE_NAME;
use dmaload_aidl::aidl as idl;
use dmaload_aidl::IDmaLoader::IDmaLoader;
use rsbinder::{ExceptionCode, ParcelFileDescriptor, Status, Strong};

/// A dmaloadd process serving on its own socket.
pub struct Service {
    child: Child,
    pub dir: PathBuf,
}

impl Service {
    pub fn start(tag: &str, args: &[&str]) -> Service {
        Service::spawn(tag, args, false)
    }

    /// A service whose log goes to a file of its own ([`Service::log`]).
    pub fn start_logged(tag: &str, args: &[&str]) -> Service {
        Service::spawn(tag, args, true)
    }

    fn spawn(tag: &str, args: &[&str], logged: bool) -> Service {
        let dir = std::env::temp_dir().join(format!("dmaload-e2e-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sock");
        let stderr = if logged {
            Stdio::from(std::fs::File::create(dir.join("dmaloadd.log")).unwrap())
        } else {
            Stdio::inherit()
        };
        // Another build to test (an older one, to see a test fail there): $DMALOAD_E2E_SERVICE_BIN.
        let binary = std::env::var_os("DMALOAD_E2E_SERVICE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_dmaloadd")),
            PathBuf::from,
        );
        let child = Command::new(binary)
            .arg("--rpc-socket")
            .arg(&socket)
            .args(args)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let service = Service { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "dmaloadd did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service.ready()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// What a service started with [`Service::start_logged`] logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dmaloadd.log")).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn connect(&self) -> Conn {
        Conn::open(&self.socket())
    }

    /// Waits until the socket accepts (bind creates the file before listen).
    pub fn ready(self) -> Service {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Conn::try_open(&self.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "dmaloadd never accepted on {}",
                self.socket().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    /// A file of `len` bytes with a position-dependent pattern.
    pub fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| ((i * 7 + i / 4096) % 251) as u8).collect();
        let path = self.dir.join(name);
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    pub fn sparse(&self, name: &str, len: u64) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        path
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Conn {
    pub client: rsbinder::Client,
    pub loader: Strong<dyn IDmaLoader>,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        Conn::try_open(socket).unwrap()
    }

    pub fn try_open(socket: &Path) -> rsbinder::Result<Conn> {
        use rsbinder::entry::{WireProfile, WireVersion};
        // Several connections per session (concurrency, callbacks) need the android-13+ wire.
        let uri = rsbinder::Uri::new(rsbinder::Endpoint::unix(socket))
            .with_wire(WireProfile::Android13Plus(WireVersion::MAX));
        let client = rsbinder::Client::open_with(uri, |o, _| {
            o.fd_mode = Some(rsbinder::rpc::FileDescriptorTransportMode::Unix);
            o.outgoing_connections = Some(2);
            o.incoming_connections = Some(1);
        })?;
        let loader = client.get::<dyn IDmaLoader>(SERVICE_NAME)?;
        Ok(Conn { client, loader })
    }

    pub fn state(&self) -> idl::ServiceState::ServiceState {
        self.loader.getServiceState().unwrap()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(session) = self.client.session() {
            session.close_session();
        }
    }
}

pub fn open(path: &Path) -> OwnedFd {
    std::fs::File::open(path).unwrap().into()
}

pub fn request(
    segments: Vec<(OwnedFd, i64, i64, i64)>,
    backend: &str,
) -> idl::LoadRequest::LoadRequest {
    idl::LoadRequest::LoadRequest {
        segments: segments
            .into_iter()
            .map(
                |(fd, file_offset, length, buffer_offset)| idl::FileSegment::FileSegment {
                    fd: Some(ParcelFileDescriptor::new(fd)),
                    fileOffset: file_offset,
                    length,
                    bufferOffset: buffer_offset,
                    ..Default::default()
                },
            )
            .collect(),
        backend: backend.into(),
        name: "e2e".into(),
        ..Default::default()
    }
}

pub fn whole(path: &Path) -> idl::LoadRequest::LoadRequest {
    request(vec![(open(path), 0, 0, 0)], "memfd")
}

pub fn buffer_bytes(result: &idl::LoadResult::LoadResult, len: usize) -> Vec<u8> {
    fd_bytes(result.buffer.as_ref().expect("a buffer fd").as_ref(), len)
}

pub fn fd_bytes(fd: &OwnedFd, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = dmaload_abi::file::pread(fd.as_fd(), &mut out[done..], done as u64, 0).unwrap();
        assert!(n > 0, "buffer shorter than {len}");
        done += n;
    }
    out
}

pub fn service_error(status: &Status) -> (i32, String) {
    assert_eq!(
        status.exception_code(),
        ExceptionCode::ServiceSpecific,
        "{status:?}"
    );
    (status.service_specific_error(), format!("{status}"))
}

pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: idl::ErrorCode::ErrorCode,
    what: &str,
) {
    let status = result.expect_err(what);
    let (got, message) = service_error(&status);
    assert_eq!(got, code.0, "{what}: {message}");
    assert!(
        message.len() > 20,
        "{what}: message says what was wrong: {message:?}"
    );
}

/// Polls the service state until `done` holds; fails with `what` after `timeout`.
pub fn wait_for_state(
    conn: &Conn,
    timeout: Duration,
    what: &str,
    done: impl Fn(&idl::ServiceState::ServiceState) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = conn.state();
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// This process's effective uid (`Uid:` of /proc/self/status: real, effective, ...).
pub fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("Uid: in /proc/self/status")
}

/// Runs this test binary's ignored test `test` as a caller of uid (and gid) `uid`, with
/// `service`'s socket in `DMALOAD_E2E_CHILD_SOCKET` and `stdin` (a file it loads) as its
/// stdin; the child has succeeded. Needs root, as CI runs the host tests.
pub fn run_child_as(uid: u32, test: &str, service: &Service, stdin: std::fs::File) -> Output {
    assert_eq!(
        effective_uid(),
        0,
        "this test runs a caller as uid {uid}: run the host tests as root, as CI does"
    );
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--nocapture"])
        .env("DMALOAD_E2E_CHILD_SOCKET", service.socket())
        .stdin(Stdio::from(stdin))
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
