//! Service-wide counters for the dump: loads, bytes, failures by code, latency percentiles.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use dmaload_engine::{Digest, DigestAlgorithm, ErrorCode};

/// Latencies kept for the percentiles (the most recent loads).
const LATENCY_WINDOW: usize = 1024;

#[derive(Default)]
struct Tally {
    loads_ok: u64,
    bytes_loaded: u64,
    failures: [u64; 32],
    refused_callers: u64,
    latencies: VecDeque<Duration>,
    /// Digests handed out, by algorithm (`DigestAlgorithm::code`).
    digests: [u64; 3],
    /// fs-verity digests that were the kernel's measurement.
    digests_from_kernel: u64,
}

#[derive(Default)]
pub struct Counters {
    tally: Mutex<Tally>,
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn loaded(&self, bytes: u64, latency: Duration) {
        let mut t = self.lock();
        t.loads_ok += 1;
        t.bytes_loaded += bytes;
        if t.latencies.len() == LATENCY_WINDOW {
            t.latencies.pop_front();
        }
        t.latencies.push_back(latency);
    }

    /// A load handed out these digests.
    pub fn digested(&self, digests: &[Digest]) {
        let mut t = self.lock();
        for d in digests {
            if let Some(n) = t.digests.get_mut(d.algorithm.code() as usize) {
                *n += 1;
            }
            t.digests_from_kernel += u64::from(d.from_kernel);
        }
    }

    pub fn failed(&self, code: ErrorCode) {
        let mut t = self.lock();
        if let Some(n) = t.failures.get_mut(code.code() as usize) {
            *n += 1;
        }
        if code == ErrorCode::PermissionDenied {
            t.refused_callers += 1;
        }
    }

    /// The counters as text.
    pub fn describe(&self) -> String {
        let t = self.lock();
        let mut out = format!(
            "loads_ok = {}\nbytes_loaded = {}\n",
            t.loads_ok, t.bytes_loaded
        );
        let mut sorted: Vec<Duration> = t.latencies.iter().copied().collect();
        sorted.sort();
        for (label, q) in [("p50", 50), ("p90", 90), ("p99", 99)] {
            let v = percentile(&sorted, q)
                .map_or("-".into(), |d| format!("{:.3} ms", d.as_secs_f64() * 1e3));
            out += &format!("latency_{label} = {v}\n");
        }
        let digests = |a: DigestAlgorithm| t.digests.get(a.code() as usize).copied().unwrap_or(0);
        out += &format!(
            "digests_sha256 = {}\ndigests_fsverity = {} ({} from the kernel)\n\
             digest_mismatches = {}\n",
            digests(DigestAlgorithm::Sha256),
            digests(DigestAlgorithm::FsVerity),
            t.digests_from_kernel,
            t.failures
                .get(ErrorCode::DigestMismatch.code() as usize)
                .copied()
                .unwrap_or(0)
        );
        out += &format!("refused_callers = {}\nfailures:\n", t.refused_callers);
        for code in ErrorCode::ALL {
            let n = t.failures.get(code.code() as usize).copied().unwrap_or(0);
            if n > 0 {
                out += &format!("  {} = {n}\n", code.name());
            }
        }
        out
    }

    /// Digests handed out of `algorithm`, and fs-verity ones the kernel measured (tests).
    pub fn digests(&self, algorithm: DigestAlgorithm) -> (u64, u64) {
        let t = self.lock();
        let n = t
            .digests
            .get(algorithm.code() as usize)
            .copied()
            .unwrap_or(0);
        (n, t.digests_from_kernel)
    }

    /// Failures counted for `code` (tests).
    pub fn failures(&self, code: ErrorCode) -> u64 {
        self.lock()
            .failures
            .get(code.code() as usize)
            .copied()
            .unwrap_or(0)
    }
}

fn percentile(sorted: &[Duration], q: usize) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last * q + 50) / 100).copied()
}
