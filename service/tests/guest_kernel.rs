//! dmaloadd over kernel binder in the virtual device: registered with rsbinder's service
//! manager (rsb_hub), real dma-heap and udmabuf buffers crossing process boundaries.
//! `#[ignore]`d on hosts (no /dev/binder); `tools/test.d/45-service-guest` runs them with
//! `vts/vm/cargo-test ... -- --ignored`.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{recorder, Event};
use dmaload_abi::dma_buf;
use dmaload_abi::SERVICE_INSTANCE as SERVICE_NAME;
use dmaload_aidl::aidl as idl;
use dmaload_aidl::IDmaLoader::IDmaLoader;
use rsbinder::{ExceptionCode, ParcelFileDescriptor, Strong};

struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn guest_bin(name: &str) -> PathBuf {
    let dir = std::env::var("DMALOAD_GUEST_BIN_DIR").expect("run in the virtual device (vts/vm)");
    Path::new(&dir).join(name)
}

/// rsb_hub + dmaloadd --binder /dev/binder, and this process's proxy to the service.
fn start() -> (Daemons, Strong<dyn IDmaLoader>) {
    // rsb_hub opens /dev/binderfs/<name>; the virtual device has a binder misc device
    // (/dev/binder) and no binderfs.
    let binderfs = Path::new("/dev/binderfs/binder");
    if !binderfs.exists() {
        std::fs::create_dir_all("/dev/binderfs").unwrap();
        std::os::unix::fs::symlink("/dev/binder", binderfs).unwrap();
    }
    let hub = Command::new(guest_bin("rsb_hub"))
        .arg("--insecure-allow-all")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Command::new(guest_bin("dmaloadd"))
        .args([
            "--binder",
            "/dev/binder",
            "--max-loads",
            "8",
            "--max-loads-per-caller",
            "8",
        ])
        .spawn()
        .unwrap();
    let daemons = Daemons(vec![hub, daemon]);
    (daemons, connect())
}

fn connect() -> Strong<dyn IDmaLoader> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let client = rsbinder::Client::open(rsbinder::Uri::kernel()).unwrap();
        if let Ok(Some(loader)) = client.try_get::<dyn IDmaLoader>(SERVICE_NAME) {
            return loader;
        }
        assert!(Instant::now() < deadline, "{SERVICE_NAME} never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn test_file(name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let dir = PathBuf::from(std::env::var("DMALOAD_TEST_DIR").unwrap_or_else(|_| "/data".into()));
    let data: Vec<u8> = (0..len)
        .map(|i| ((i * 13 + i / 4096) % 253) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn whole(path: &Path, backend: &str) -> idl::LoadRequest::LoadRequest {
    let fd: OwnedFd = std::fs::File::open(path).unwrap().into();
    idl::LoadRequest::LoadRequest {
        segments: vec![idl::FileSegment::FileSegment {
            fd: Some(ParcelFileDescriptor::new(fd)),
            ..Default::default()
        }],
        backend: backend.into(),
        name: "guest".into(),
        ..Default::default()
    }
}

#[test]
#[ignore = "needs the virtual device: kernel binder, dma-heaps, udmabuf, rsb_hub"]
fn kernel_binder_dma_bufs_errors_and_client_death() {
    if std::env::var("DMALOAD_E2E_CHILD_FILE").is_ok() {
        return child_client();
    }
    let (_daemons, loader) = start();
    let (path, data) = test_file("guest-model.bin", (8 << 20) + 777);
    let warm = loader.load(&whole(&path, "memfd")).unwrap();
    loader.releaseBuffer(warm.bufferId).unwrap();
    let baseline = loader.getServiceState().unwrap();

    for backend in ["system", "udmabuf"] {
        let r = loader
            .load(&whole(&path, backend))
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(r.isDmaBuf, "{backend}");
        let fd = r.buffer.as_ref().unwrap().as_ref();
        let got = dma_buf::copy_out(fd.as_fd(), data.len()).unwrap();
        assert!(got == data, "{backend}: the dma-buf holds the file's bytes");
        loader.releaseBuffer(r.bufferId).unwrap();
        println!(
            "kernel binder: {backend} ({}) {} bytes ok in {} ms",
            r.backend,
            data.len(),
            r.stats.totalNs / 1_000_000
        );
    }

    // 8 threads loading at once through the same service (dma-heap buffers, bytes checked).
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (loader, path, data) = (&loader, &path, &data);
            scope.spawn(move || {
                let r = loader
                    .load(&whole(path, "system"))
                    .unwrap_or_else(|e| panic!("thread {i}: {e}"));
                let fd = r.buffer.as_ref().unwrap().as_ref();
                assert!(
                    dma_buf::copy_out(fd.as_fd(), data.len()).unwrap() == *data,
                    "thread {i}"
                );
                loader.releaseBuffer(r.bufferId).unwrap();
            });
        }
    });
    println!("kernel binder: 8 concurrent loads ok");

    // Asynchronous: progress, then the buffer, through a callback binder in this process.
    rsbinder::ProcessState::start_thread_pool();
    let (callback, events) = recorder();
    let _handle = loader
        .startLoad(&whole(&path, "system"), &callback)
        .unwrap();
    let mut progress = 0;
    let (fd, id) = loop {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("a callback")
        {
            Event::Progress(done, total) => {
                assert!(done <= total && total == data.len() as i64);
                progress += 1;
            }
            Event::Complete(fd, id) => break (fd.expect("a buffer fd"), id),
            Event::Error(code, msg) => panic!("onError({code}, {msg})"),
        }
    };
    assert!(progress > 0 && dma_buf::copy_out(fd.as_fd(), data.len()).unwrap() == data);
    drop(fd);
    loader.releaseBuffer(id).unwrap();
    println!("kernel binder: async load with {progress} progress reports ok");

    // Bad input over kernel binder: the code arrives and nothing leaks.
    let mut past_eof = whole(&path, "system");
    past_eof.segments[0].fileOffset = 1 << 40;
    let status = loader.load(&past_eof).unwrap_err();
    assert_eq!(status.exception_code(), ExceptionCode::ServiceSpecific);
    assert_eq!(
        status.service_specific_error(),
        idl::ErrorCode::ErrorCode::RANGE.0,
        "{status}"
    );
    let after = loader.getServiceState().unwrap();
    assert_eq!(
        (after.openFds, after.outstandingBufferBytes),
        (baseline.openFds, baseline.outstandingBufferBytes)
    );

    // A client process that dies holding a dma-buf: its charge goes.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kernel_binder_dma_bufs_errors_and_client_death",
            "--ignored",
            "--nocapture",
        ])
        .env("DMALOAD_E2E_CHILD_FILE", &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap());
    assert!(
        lines
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("LOADED")),
        "the child loaded"
    );
    assert!(
        loader.getServiceState().unwrap().outstandingBufferBytes > baseline.outstandingBufferBytes
    );
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while loader.getServiceState().unwrap().outstandingBufferBytes
        != baseline.outstandingBufferBytes
    {
        assert!(
            Instant::now() < deadline,
            "the dead client's charge was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("kernel binder: dead client's buffer charge dropped");
}

fn child_client() {
    let file = std::env::var("DMALOAD_E2E_CHILD_FILE").unwrap();
    let loader = connect();
    let r = loader.load(&whole(Path::new(&file), "system")).unwrap();
    println!("LOADED {}", r.sizeBytes);
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}
