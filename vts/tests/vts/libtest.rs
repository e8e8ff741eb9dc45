//! The suite as a libtest binary, for Tradefed's RustBinaryTest (and `cargo test`): one test
//! per group, `--list`, a filter with `--exact`, `--skip`, `--ignored`/`--include-ignored`,
//! and libtest's result lines, through libtest-mimic.
//!
//! The groups share one service and must run in order, one at a time (`faults` kills the
//! service), and they print a line per case while they run. libtest-mimic prints
//! `test NAME ... ` before a test and its outcome after it; output in between breaks the
//! `test NAME ... ok` lines Tradefed parses. So the selected groups run first, printing as
//! they always did, and libtest-mimic then reports their outcomes (instantly, in order).
//! The selection mirrors libtest-mimic's filter; a mismatch is detected after the report
//! and fails the run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Trial};

/// Arguments Tradefed passes that libtest-mimic does not take (libtest's unstable
/// per-test timing).
const DROPPED: [&str; 2] = ["-Zunstable-options", "--report-time"];

/// The command line: the suite's own flags, the rest for libtest-mimic.
pub struct Cli {
    pub args: Arguments,
    /// `--group NAME` (repeatable): only these groups, on top of libtest's filter.
    pub groups: Vec<String>,
    pub require_device: bool,
}

impl Cli {
    pub fn parse(argv: Vec<String>) -> Cli {
        let mut rest = vec![argv.first().cloned().unwrap_or_else(|| "vts".to_string())];
        let mut groups = Vec::new();
        let mut require_device = false;
        let mut it = argv.into_iter().skip(1).peekable();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--group" => groups.extend(it.next()),
                "--require-device" => require_device = true,
                // `-Z unstable-options` as two arguments
                "-Z" if it.peek().is_some_and(|v| v == "unstable-options") => {
                    it.next();
                }
                a if DROPPED.contains(&a) => {}
                _ => rest.push(arg),
            }
        }
        let mut args = Arguments::from_iter(rest);
        // The trials only report outcomes; in order, from the main thread.
        args.test_threads = Some(1);
        Cli {
            args,
            groups,
            require_device,
        }
    }

    /// Whether libtest-mimic keeps a test of this name (its `is_filtered_out`, which is
    /// private in the 0.6 AOSP carries), and `--group`.
    pub fn selected(&self, name: &str, ignored: bool) -> bool {
        let a = &self.args;
        if !self.groups.is_empty() && !self.groups.iter().any(|g| g == name) {
            return false;
        }
        if let Some(filter) = &a.filter {
            if (a.exact && name != filter) || (!a.exact && !name.contains(filter.as_str())) {
                return false;
            }
        }
        if a.skip
            .iter()
            .any(|s| (a.exact && name == s) || (!a.exact && name.contains(s.as_str())))
        {
            return false;
        }
        // `--ignored` runs only the ignored ones
        !a.ignored || ignored
    }

    /// Whether a selected test runs rather than being reported `ignored`.
    pub fn runs(&self, ignored: bool) -> bool {
        !self.args.bench && (!ignored || self.args.ignored || self.args.include_ignored)
    }
}

/// A group's outcome for the report.
pub enum Outcome {
    Passed,
    Failed(String),
}

/// One group as libtest sees it.
pub struct Entry {
    pub name: &'static str,
    /// Cannot run here (device groups off the device): libtest's `ignored`.
    pub ignored: bool,
    /// `None` when the group was not run.
    pub outcome: Option<Outcome>,
}

/// `--list`: libtest's lines, and the count line older Tradefed versions read.
pub fn list(cli: &Cli, entries: &[Entry]) -> ! {
    let trials: Vec<Trial> = entries
        .iter()
        .filter(|e| cli.groups.is_empty() || cli.groups.iter().any(|g| g == e.name))
        .map(|e| Trial::test(e.name, || Ok(())).with_ignored_flag(e.ignored))
        .collect();
    let listed = entries
        .iter()
        .filter(|e| cli.selected(e.name, e.ignored))
        .count();
    // --list prints and returns an empty conclusion.
    let _ = libtest_mimic::run(&cli.args, trials);
    let plural = if listed == 1 { "" } else { "s" };
    println!("\n{listed} test{plural}, 0 benchmarks");
    std::process::exit(0);
}

/// Reports the outcomes in libtest's format; returns whether every reported test passed.
pub fn report(cli: &Cli, entries: Vec<Entry>) -> bool {
    let invoked = Arc::new(Mutex::new(BTreeSet::new()));
    let expected: BTreeSet<&'static str> = entries
        .iter()
        .filter(|e| e.outcome.is_some())
        .map(|e| e.name)
        .collect();
    let trials: Vec<Trial> = entries
        .into_iter()
        .filter(|e| cli.groups.is_empty() || cli.groups.iter().any(|g| g == e.name))
        .map(|e| {
            let invoked = Arc::clone(&invoked);
            let name = e.name;
            Trial::test(name, move || {
                if let Ok(mut set) = invoked.lock() {
                    set.insert(name);
                }
                match e.outcome {
                    Some(Outcome::Passed) => Ok(()),
                    Some(Outcome::Failed(why)) => Err(why.into()),
                    None => Err("not run: the suite's selection differs from libtest's".into()),
                }
            })
            .with_ignored_flag(e.ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&cli.args, trials);
    let invoked = invoked.lock().map(|s| s.clone()).unwrap_or_default();
    if invoked != expected {
        println!(
            "vts: groups run {expected:?}, reported by libtest {invoked:?}: the selection is out of step"
        );
        return false;
    }
    !conclusion.has_failed()
}
