//! The dmaload vendor test suite. One binary, groups inside; each prints
//! `vts group <name>: <run> cases run, <passed> passed, <failed> failed`, and each is one
//! libtest test (`libtest.rs`), as Tradefed's RustBinaryTest runs it.
//!
//!   cargo test -p dmaload-vts --test vts [-- --group NAME]... [-- FILTER --exact --list]
//!
//! Groups that need a device (binder, dma-heaps, udmabuf: the virtual device of
//! `tools/test.d/70-vts`, or Android) run only there; elsewhere they are libtest's `ignored`
//! and print NOT RUN, never "passed". On a device, or with `--require-device`, a group that
//! cannot run is a failure.
//!
//! Environment: `DMALOAD_VTS_DIR` (test files; default /data/vts in the virtual device,
//! /data/local/tmp/dmaload-vts on Android, a directory under target/ on hosts),
//! `DMALOAD_VTS_PROP_CASES` (generated validation cases, default 400), `DMALOAD_VTS_SEED`
//! (the property seed, default fixed so CI is reproducible).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod bad_input;
mod digests;
mod function;
mod libtest;
mod parcel;
mod reuse;
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

/// Every group, in the order they run: `faults` kills the service, so it runs last.
const GROUPS: [&str; 8] = [
    "validation-model",
    "parcel-decoding",
    "function",
    "bad-input",
    "load",
    "caps",
    "reuse",
    "faults",
];
/// The groups that need the service, binder and dma-heaps.
const DEVICE_GROUPS: [&str; 6] = ["function", "bad-input", "load", "caps", "reuse", "faults"];

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).is_some_and(|a| a == "--worker") {
        std::process::exit(stress::worker(&argv[2..]));
    }
    let cli = libtest::Cli::parse(argv);
    let require_device = cli.require_device || dmaload_vts::on_device();
    let ignored = |name: &str| DEVICE_GROUPS.contains(&name) && !require_device;
    let mut entries: Vec<libtest::Entry> = GROUPS
        .iter()
        .map(|&name| libtest::Entry {
            name,
            ignored: ignored(name),
            outcome: None,
        })
        .collect();
    if cli.args.list {
        libtest::list(&cli, &entries);
    }

    let default_dir = if cfg!(target_os = "android") {
        PathBuf::from("/data/local/tmp/dmaload-vts")
    } else if dmaload_vts::in_virtual_device() {
        PathBuf::from("/data/vts")
    } else {
        // Soong sets no CARGO_* variable: an Android build takes the branch above.
        option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("vts")
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
    let runs = |e: &libtest::Entry| cli.selected(e.name, e.ignored) && cli.runs(e.ignored);
    let selected = |name: &str| entries.iter().any(|e| e.name == name && runs(e));

    let mut suite = Suite::new();
    if selected("validation-model") {
        suite.finish_group(validation::run(&options));
    }
    if selected("parcel-decoding") {
        suite.finish_group(parcel::run(&options));
    }
    let wanted: Vec<&str> = DEVICE_GROUPS
        .iter()
        .copied()
        .filter(|g| selected(g))
        .collect();
    if !wanted.is_empty() {
        run_device_groups(&options, &wanted, &mut suite);
    }
    let status = suite.summarize(require_device);
    for e in &mut entries {
        e.outcome = suite.outcome(e.name).map(|failure| match failure {
            None => libtest::Outcome::Passed,
            Some(why) => libtest::Outcome::Failed(why),
        });
    }
    let reported = libtest::report(&cli, entries);
    std::process::exit(if status == 0 && reported { 0 } else { 1 });
}

/// The groups that need the service, binder and dma-heaps: only in the virtual device.
fn run_device_groups(options: &Options, wanted: &[&str], suite: &mut Suite) {
    if !dmaload_vts::on_device() {
        for name in wanted {
            let mut g = Group::new(name);
            g.not_run("needs a device: tools/test.d/70-vts runs it in the virtual device");
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
            "reuse" => reuse::run(options, &svc),
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
