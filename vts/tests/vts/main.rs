//! The dmaload vendor test suite. One binary, groups inside; each prints
//! `vts group <name>: <run> cases run, <passed> passed, <failed> failed`.
//!
//!   cargo test -p dmaload-vts --test vts [-- --group NAME]...
//!
//! Groups that need the virtual device (binder, dma-heaps, udmabuf) run only there
//! (`tools/test.d/70-vts`); elsewhere they print NOT RUN, never "passed". Inside the virtual
//! device, or with `--require-device`, a group that cannot run is a failure.
//!
//! Environment: `DMALOAD_VTS_DIR` (test files; default /data/vts in the device, a directory
//! under target/ on hosts), `DMALOAD_VTS_PROP_CASES` (generated validation cases, default
//! 400), `DMALOAD_VTS_SEED` (the property seed, default fixed so CI is reproducible).

mod validation;

use std::path::PathBuf;

use dmaload_vts::harness::Suite;

pub struct Options {
    pub dir: PathBuf,
    pub prop_cases: u32,
    pub seed: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let mut groups: Vec<String> = Vec::new();
    let mut require_device = dmaload_vts::in_virtual_device();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--group" => groups.extend(args.next()),
            "--require-device" => require_device = true,
            // libtest flags cargo may pass (`--nocapture`, `--test-threads=1`, ...).
            _ => {}
        }
    }
    let default_dir = if dmaload_vts::in_virtual_device() {
        PathBuf::from("/data/vts")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vts")
    };
    let options = Options {
        dir: std::env::var_os("DMALOAD_VTS_DIR")
            .map(PathBuf::from)
            .unwrap_or(default_dir),
        prop_cases: env_u64("DMALOAD_VTS_PROP_CASES", 400) as u32,
        seed: env_u64("DMALOAD_VTS_SEED", 0x646d_616c_6f61_6400),
    };
    let selected = |name: &str| groups.is_empty() || groups.iter().any(|g| g == name);

    let mut suite = Suite::new();
    if selected("validation-model") {
        suite.finish_group(validation::run(&options));
    }
    std::process::exit(suite.summarize(require_device));
}
