//! Cases grouped the way a vendor reads a report: each group prints
//! `vts group <name>: <run> cases run, <passed> passed, <failed> failed`, and measured
//! figures print as `vts figure <name>: <value>`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// What a case returns: `Err` carries what went wrong, for the report.
pub type CaseResult = Result<(), String>;

/// Fails a case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// One group of cases.
#[derive(Debug)]
pub struct Group {
    name: String,
    run: u32,
    passed: u32,
    failures: Vec<String>,
    not_run: Option<String>,
    started: Instant,
}

impl Group {
    pub fn new(name: &str) -> Group {
        println!("vts group {name}: start");
        Group {
            name: name.to_string(),
            run: 0,
            passed: 0,
            failures: Vec::new(),
            not_run: None,
            started: Instant::now(),
        }
    }

    /// Runs one case; a panic counts as a failure with its message.
    pub fn case(&mut self, name: &str, f: impl FnOnce() -> CaseResult) -> bool {
        self.run += 1;
        let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Err(format!("panicked: {text}"))
        });
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("  ok     {}/{name}", self.name);
                true
            }
            Err(why) => {
                println!("  FAILED {}/{name}: {why}", self.name);
                self.failures.push(format!("{name}: {why}"));
                false
            }
        }
    }

    /// Records a case counted elsewhere (a property test's generated cases).
    pub fn record(&mut self, run: u32, passed: u32, failures: Vec<String>) {
        self.run += run;
        self.passed += passed;
        self.failures.extend(failures);
    }

    /// Marks the group as not run here, with the reason. Never counted as passed.
    pub fn not_run(&mut self, reason: &str) {
        self.not_run = Some(reason.to_string());
    }

    pub fn failed(&self) -> u32 {
        self.run - self.passed
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Prints a measured figure in the one format the report parser and readers know.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("vts figure {name}: {value}");
}

/// All groups of one run; prints the summary and decides the exit status.
#[derive(Debug, Default)]
pub struct Suite {
    groups: Vec<Group>,
}

impl Suite {
    pub fn new() -> Suite {
        Suite::default()
    }

    pub fn finish_group(&mut self, group: Group) {
        let secs = group.started.elapsed().as_secs_f64();
        match &group.not_run {
            Some(reason) => println!("vts group {}: NOT RUN ({reason})", group.name),
            None => println!(
                "vts group {}: {} cases run, {} passed, {} failed ({secs:.1} s)",
                group.name,
                group.run,
                group.passed,
                group.failed()
            ),
        }
        self.groups.push(group);
    }

    /// A finished group's outcome: `None` if it did not run in this suite, `Some(None)` if
    /// every case passed, else `Some(Some(why))` (failed cases, or why it could not run).
    pub fn outcome(&self, name: &str) -> Option<Option<String>> {
        let g = self.groups.iter().find(|g| g.name == name)?;
        if let Some(reason) = &g.not_run {
            return Some(Some(format!("not run: {reason}")));
        }
        if g.failures.is_empty() && g.run == g.passed {
            return Some(None);
        }
        let mut why = format!("{} of {} cases failed", g.failed(), g.run);
        for f in g.failures.iter().take(5) {
            why.push_str("\n  ");
            why.push_str(f);
        }
        if g.failures.len() > 5 {
            why.push_str(&format!("\n  ... {} more", g.failures.len() - 5));
        }
        Some(Some(why))
    }

    /// Prints every group's line again (the report's last lines) and returns the exit status:
    /// 0 only if no case failed and, when `require_all` is set, every group ran.
    pub fn summarize(&self, require_all: bool) -> i32 {
        println!();
        println!("vts summary:");
        let (mut run, mut passed, mut not_run) = (0, 0, 0);
        for g in &self.groups {
            match &g.not_run {
                Some(reason) => {
                    not_run += 1;
                    println!("  {:<24} NOT RUN ({reason})", g.name);
                }
                None => println!(
                    "  {:<24} {:>6} run {:>6} passed {:>4} failed",
                    g.name,
                    g.run,
                    g.passed,
                    g.failed()
                ),
            }
            for f in &g.failures {
                println!("    FAILED {f}");
            }
            run += g.run;
            passed += g.passed;
        }
        println!(
            "vts total: {run} cases run, {passed} passed, {} failed, {not_run} groups not run",
            run - passed
        );
        if run != passed || (require_all && not_run > 0) {
            1
        } else {
            0
        }
    }
}
