//! What a load's reads and copies count, from whichever thread runs them: bytes by kind, the
//! span of the reads, the time spent copying, and every fallback with its reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Filled;
use crate::stats::{Fallback, FallbackKind, LoadStats};

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) bytes_direct: AtomicU64,
    pub(crate) bytes_buffered: AtomicU64,
    pub(crate) bytes_bounced: AtomicU64,
    copy_ns: AtomicU64,
    io_span: Mutex<Option<(Instant, Instant)>>,
    fallbacks: Mutex<LoadStats>,
    /// Readers use io_uring where it works.
    pub(crate) io_uring: bool,
}

impl Tally {
    pub(crate) fn new(io_uring: bool) -> Tally {
        Tally {
            io_uring,
            ..Tally::default()
        }
    }

    /// A read ran from `start` to `end`.
    pub(crate) fn note_io(&self, start: Instant, end: Instant) {
        let mut span = self.io_span.lock().unwrap_or_else(|p| p.into_inner());
        *span = Some(match *span {
            None => (start, end),
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }

    /// A copy that started at `start` just ended.
    pub(crate) fn note_copy(&self, start: Instant) {
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.copy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn add_fallback(&self, kind: FallbackKind, reason: impl Into<String>) {
        self.fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add_fallback(kind, reason);
    }

    fn fallbacks(&self) -> Vec<Fallback> {
        self.fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fallbacks
            .clone()
    }

    fn io_wall(&self) -> Duration {
        let span = self.io_span.lock().unwrap_or_else(|p| p.into_inner());
        span.map(|(s, e)| e.saturating_duration_since(s))
            .unwrap_or_default()
    }

    /// The counts as a backend's report.
    pub(crate) fn filled(&self, alloc: Duration, first_gather: Duration) -> Filled {
        Filled {
            alloc,
            first_gather,
            io: self.io_wall(),
            copy: Duration::from_nanos(self.copy_ns.load(Ordering::Relaxed)),
            bytes_direct: self.bytes_direct.load(Ordering::Relaxed),
            bytes_buffered: self.bytes_buffered.load(Ordering::Relaxed),
            bytes_bounced: self.bytes_bounced.load(Ordering::Relaxed),
            fallbacks: self.fallbacks(),
            memory: "",
        }
    }
}
