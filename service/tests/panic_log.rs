//! dmaloadd's panic hook: a panic on any thread reaches the log with its place and message,
//! and the hook that was installed before still runs.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}", record.level(), record.args());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));
static DEFAULT_RAN: AtomicBool = AtomicBool::new(false);

#[test]
fn a_panic_is_logged_with_its_place_before_the_previous_hook_runs() {
    log::set_logger(&LOG).expect("logger");
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|_| DEFAULT_RAN.store(true, Ordering::SeqCst)));
    dmaload_service::panic_log::log_panics();
    let line = line!() + 4;
    let thread = std::thread::Builder::new()
        .name("dmaload-load".into())
        .spawn(|| {
            panic!("segment {} is odd", 3);
        })
        .expect("spawn");
    assert!(thread.join().is_err());
    let logged = LOG.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let want = format!(
        "ERROR panic in thread 'dmaload-load' at {}:{line}:13: segment 3 is odd",
        file!()
    );
    assert!(logged.contains(&want), "{logged:?}, want {want:?}");
    assert!(
        DEFAULT_RAN.load(Ordering::SeqCst),
        "the previous hook did not run"
    );
}
