//! What the threads of one load share: the first error, cancellation, counters, timings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{load_err, LoadError};
use crate::request::{CancelToken, Progress};
use crate::stats::{FallbackKind, LoadStats};

/// How often waiting threads look at the cancel token.
const POLL: Duration = Duration::from_millis(5);

pub(crate) struct Control<'a, S> {
    cancel: &'a CancelToken,
    progress: &'a dyn Progress,
    aborted: AtomicBool,
    first_error: Mutex<Option<LoadError>>,
    /// Pipeline state guarded by one lock, with one condvar for every kind of wait.
    state: Mutex<S>,
    changed: Condvar,
    pub(crate) bytes_done: AtomicU64,
    pub(crate) bytes_total: u64,
    pub(crate) bytes_direct: AtomicU64,
    pub(crate) bytes_buffered: AtomicU64,
    pub(crate) bytes_bounced: AtomicU64,
    pub(crate) copy_ns: AtomicU64,
    io_span: Mutex<Option<(Instant, Instant)>>,
    fallbacks: Mutex<LoadStats>,
    /// Readers use io_uring where it works.
    pub(crate) io_uring: bool,
}

impl<'a, S> Control<'a, S> {
    /// The control of one load of `plan`.
    pub(crate) fn for_plan(
        plan: &super::plan::Plan,
        cancel: &'a CancelToken,
        progress: &'a dyn Progress,
        state: S,
    ) -> Self {
        Control {
            cancel,
            progress,
            aborted: AtomicBool::new(false),
            first_error: Mutex::new(None),
            state: Mutex::new(state),
            changed: Condvar::new(),
            bytes_done: AtomicU64::new(0),
            bytes_total: plan.file_bytes,
            bytes_direct: AtomicU64::new(0),
            bytes_buffered: AtomicU64::new(0),
            bytes_bounced: AtomicU64::new(0),
            copy_ns: AtomicU64::new(0),
            io_span: Mutex::new(None),
            fallbacks: Mutex::new(LoadStats::default()),
            io_uring: plan.knobs.io_uring,
        }
    }

    /// Records the first error and stops every thread.
    pub(crate) fn fail(&self, err: LoadError) {
        {
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(err);
            }
        }
        self.aborted.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// Err if the load is over (failed or cancelled): threads return at the next boundary.
    pub(crate) fn checkpoint(&self) -> Result<(), Stop> {
        if self.cancel.is_cancelled() && !self.aborted.load(Ordering::Acquire) {
            self.fail(load_err!(
                Cancelled,
                "the load was cancelled; everything was freed"
            ));
        }
        if self.aborted.load(Ordering::Acquire) {
            return Err(Stop);
        }
        Ok(())
    }

    pub(crate) fn take_error(&self) -> Option<LoadError> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits until `ready` returns Some, the load stops, or it is cancelled.
    pub(crate) fn wait_for<T>(
        &self,
        mut ready: impl FnMut(&mut S) -> Option<T>,
    ) -> Result<T, Stop> {
        let mut guard = self.lock();
        loop {
            self.checkpoint()?;
            if let Some(value) = ready(&mut guard) {
                return Ok(value);
            }
            guard = self
                .changed
                .wait_timeout(guard, POLL)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub(crate) fn note_io(&self, start: Instant, end: Instant) {
        let mut span = self.io_span.lock().unwrap_or_else(|p| p.into_inner());
        *span = Some(match *span {
            None => (start, end),
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }

    pub(crate) fn io_wall(&self) -> Duration {
        let span = self.io_span.lock().unwrap_or_else(|p| p.into_inner());
        span.map(|(s, e)| e.saturating_duration_since(s))
            .unwrap_or_default()
    }

    pub(crate) fn add_fallback(&self, kind: FallbackKind, reason: impl Into<String>) {
        self.fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add_fallback(kind, reason);
    }

    pub(crate) fn fallbacks(&self) -> Vec<crate::stats::Fallback> {
        self.fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fallbacks
            .clone()
    }

    /// The counters as a backend's report.
    pub(crate) fn filled(&self, alloc: Duration, first_gather: Duration) -> super::Filled {
        super::Filled {
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

    /// Adds `bytes` to the progress and tells the caller's sink.
    pub(crate) fn advance(&self, bytes: u64) {
        let done = self.bytes_done.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.progress.progress(done, self.bytes_total);
    }
}

/// A thread stopped because the load failed or was cancelled (the reason is in `Control`).
#[derive(Debug)]
pub(crate) struct Stop;

/// Runs a thread body, turning its error into the load's first error.
pub(crate) fn run_thread<S>(control: &Control<'_, S>, body: impl FnOnce() -> Result<(), Failure>) {
    if let Err(Failure::Error(err)) = body() {
        control.fail(err);
    }
}

/// Why a thread body ended early.
#[derive(Debug)]
pub(crate) enum Failure {
    Stopped,
    Error(LoadError),
}

impl From<Stop> for Failure {
    fn from(_: Stop) -> Failure {
        Failure::Stopped
    }
}

impl From<LoadError> for Failure {
    fn from(err: LoadError) -> Failure {
        Failure::Error(err)
    }
}
