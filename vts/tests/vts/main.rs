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

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod bad_input;
mod function;
mod parcel;
mod service;
mod stress;
mod validation;

use std::path::PathBuf;

use dmaload_vts::harness::{Group, Suite};

pub struct Options {
    pub dir: PathBuf,
    pub prop_cases: u32,
    pub seed: u64,
    /// Loads per client in the `load` group.
    pub loads_per_client: u32,
    /// Run the ≥ 1 GiB load (default in the device; `DMALOAD_VTS_BIG=0` skips it).
    pub big: bool,
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
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().is_some_and(|a| a == "--worker") {
        std::process::exit(stress::worker(&all[1..]));
    }
    let mut args = all.into_iter();
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
        big: env_u64("DMALOAD_VTS_BIG", 1) == 1,
        loads_per_client: env_u64("DMALOAD_VTS_LOADS_PER_CLIENT", 100) as u32,
    };
    let selected = |name: &str| groups.is_empty() || groups.iter().any(|g| g == name);

    let mut suite = Suite::new();
    if selected("validation-model") {
        suite.finish_group(validation::run(&options));
    }
    if selected("parcel-decoding") {
        suite.finish_group(parcel::run(&options));
    }
    // `faults` kills the service: it runs last.
    let device_groups = ["function", "bad-input", "load", "caps", "faults"];
    let wanted: Vec<&str> = device_groups
        .iter()
        .copied()
        .filter(|g| selected(g))
        .collect();
    if !wanted.is_empty() {
        run_device_groups(&options, &wanted, &mut suite);
    }
    std::process::exit(suite.summarize(require_device));
}

/// The groups that need the service, binder and dma-heaps: only in the virtual device.
fn run_device_groups(options: &Options, wanted: &[&str], suite: &mut Suite) {
    if !dmaload_vts::in_virtual_device() {
        for name in wanted {
            let mut g = Group::new(name);
            g.not_run("needs the virtual device: tools/test.d/70-vts runs it there");
            suite.finish_group(g);
        }
        return;
    }
    let mut svc = match service::connect(std::time::Duration::from_secs(20)) {
        Ok(svc) => svc,
        Err(e) => {
            for name in wanted {
                let mut g = Group::new(name);
                g.case("connect to the service", || Err(e.clone()));
                suite.finish_group(g);
            }
            return;
        }
    };
    for name in wanted {
        // A group after one that killed (or crashed) the service starts on a fresh connection.
        if svc.r#getUsage().is_err() {
            match service::connect(std::time::Duration::from_secs(20)) {
                Ok(fresh) => svc = fresh,
                Err(e) => {
                    let mut g = Group::new(name);
                    g.case("connect to the service", || Err(e.clone()));
                    suite.finish_group(g);
                    continue;
                }
            }
        }
        let g = match *name {
            "function" => function::run(options, &svc),
            "bad-input" => bad_input::run(options, &svc),
            "load" => stress::run_load(options, &svc),
            "caps" => stress::run_caps(options, &svc),
            "faults" => stress::run_faults(options, &mut svc),
            other => {
                let mut g = Group::new(other);
                g.case("implemented", || {
                    Err(format!("group {other} is not written yet"))
                });
                g
            }
        };
        suite.finish_group(g);
    }
}
