//! One load's work, shared by the threads that run it: the load's own thread and the engine
//! workers that help it. A backend describes its fill as steps (populate a piece, read a
//! chunk, copy a block, ...) through [`Steps`]; this module runs them, the same for every
//! backend: it hands the next step that may run to whichever thread asks, records the first
//! error and stops the rest, carries cancellation, counts progress, and has the load's own
//! thread alone call the caller's progress sink.
//!
//! Threads wait for events only (a step finished, an error, a cancel, a helper leaving):
//! nothing in a load wakes on a timer to see whether something happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use super::pool::{Help, Visits, WorkerPool};
use super::tally::Tally;
use crate::cancel::{CancelToken, Wake};
use crate::error::{load_err, LoadError};
use crate::request::Progress;

/// A backend's fill, as steps.
pub(crate) trait Steps: Send + Sync + 'static {
    /// One unit of work, with what it holds while it runs (a bounce block, say).
    type Step: Send;
    /// What the steps share, under the job's lock.
    type State: Send;

    /// Takes the next step that may run now, claiming what it needs in `state`; `None`
    /// while every step left waits for one that is running.
    fn next(&self, state: &mut Self::State) -> Result<Option<Self::Step>, LoadError>;

    /// Runs `step`, outside the lock.
    fn run(&self, step: &mut Self::Step, tally: &Tally) -> Result<(), LoadError>;

    /// Records a step that ran; returns the file bytes it put into the buffer.
    fn complete(&self, step: Self::Step, state: &mut Self::State) -> u64;

    /// Whether every step has run.
    fn finished(&self, state: &Self::State) -> bool;
}

/// A running load's steps and the threads working on them.
pub(crate) struct Job<S: Steps> {
    pub(crate) steps: S,
    pub(crate) tally: Tally,
    inner: Mutex<Inner<S::State>>,
    /// Signalled whenever `inner` changes while a thread waits on it.
    changed: Condvar,
    bytes_total: u64,
    /// The load's own thread included.
    max_workers: usize,
    /// Times a waiting thread woke up (a wait that wakes on events only wakes for them).
    wakeups: AtomicU64,
    /// The pool's workers holding the job.
    visits: Arc<Visits>,
}

struct Inner<T> {
    state: T,
    error: Option<LoadError>,
    bytes_done: u64,
    /// Steps running now.
    running: usize,
    /// Threads working on the job now.
    workers: usize,
    /// No more helpers may join: the load's own thread is collecting the result.
    closed: bool,
    /// Threads waiting on `changed` now. A load its own thread runs alone has none, and a
    /// signal nobody waits for is still a futex call per step.
    waiting: usize,
}

impl<T> Inner<T> {
    /// Whether a change must be signalled: a thread that starts waiting later looks at the
    /// state first, under the lock, so it sees the change without the signal.
    fn watched(&self) -> bool {
        self.waiting > 0
    }
}

impl<S: Steps> Job<S> {
    /// A job of `bytes_total` file bytes that up to `max_workers` threads (the load's own
    /// included) may work on.
    pub(crate) fn new(
        steps: S,
        state: S::State,
        tally: Tally,
        bytes_total: u64,
        max_workers: usize,
    ) -> Arc<Job<S>> {
        Arc::new(Job {
            steps,
            tally,
            inner: Mutex::new(Inner {
                state,
                error: None,
                bytes_done: 0,
                running: 0,
                workers: 0,
                closed: false,
                waiting: 0,
            }),
            changed: Condvar::new(),
            bytes_total,
            max_workers: max_workers.max(1),
            wakeups: AtomicU64::new(0),
            visits: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S::State>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(
        &self,
        mut guard: MutexGuard<'g, Inner<S::State>>,
    ) -> MutexGuard<'g, Inner<S::State>> {
        guard.waiting += 1;
        let mut guard = self.changed.wait(guard).unwrap_or_else(|p| p.into_inner());
        guard.waiting -= 1;
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        guard
    }

    /// Wakes the waiting threads, if any; `inner` is the state as changed, still locked.
    fn signal(&self, inner: &Inner<S::State>) {
        if inner.watched() {
            self.changed.notify_all();
        }
    }

    /// Times a waiting thread of this job woke up.
    #[cfg(test)]
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Looks at the steps' state (timings, results) once the job has ended.
    pub(crate) fn with_state<T>(&self, look: impl FnOnce(&mut S::State) -> T) -> T {
        look(&mut self.lock().state)
    }

    /// Runs the job on the calling thread with `helpers` of `pool`'s workers, reports
    /// progress to `progress` from this thread, and returns once every step ran (or one
    /// failed, or the load was cancelled) and no helper holds the job any more: what the
    /// steps own goes with the caller's last reference.
    pub(crate) fn drive(
        self: &Arc<Self>,
        cancel: &CancelToken,
        pool: &WorkerPool,
        helpers: usize,
        progress: &dyn Progress,
    ) -> Result<(), LoadError> {
        cancel.on_cancel(Arc::downgrade(self) as Weak<dyn Wake>);
        let request = Arc::downgrade(self) as Weak<dyn Help>;
        let mut relay = Relay {
            sink: progress,
            sent: 0,
        };
        {
            self.lock().workers += 1;
            let _member = Member(self);
            if helpers > 0 {
                pool.submit(&request, &self.visits, helpers);
            }
            self.work(Some(&mut relay));
        }
        // Helpers still running a step finish it and leave; none joins any more.
        self.lock().closed = true;
        pool.withdraw(&request, &self.visits);
        let mut inner = self.lock();
        if let Some(err) = inner.error.take() {
            return Err(err);
        }
        let done = inner.bytes_done;
        drop(inner);
        if done > relay.sent {
            progress.progress(done, self.bytes_total);
        }
        Ok(())
    }

    /// Runs steps until none is left for this thread.
    fn work(&self, mut relay: Option<&mut Relay<'_>>) {
        let mut inner = self.lock();
        loop {
            if inner.error.is_some() || self.steps.finished(&inner.state) {
                return;
            }
            match self.steps.next(&mut inner.state) {
                Ok(Some(step)) => inner = self.run(inner, step),
                Ok(None) if inner.running == 0 => {
                    // Nothing runs that could make a step ready: a bug, not a wait.
                    fail(&mut inner, load_err!(Internal, "the load's steps stalled"));
                    self.signal(&inner);
                    return;
                }
                Ok(None) => inner = self.wait(inner),
                Err(err) => {
                    fail(&mut inner, err);
                    self.signal(&inner);
                    return;
                }
            }
            if let Some(relay) = relay.as_deref_mut() {
                inner = relay.forward(self, inner);
            }
        }
    }

    /// Runs one step outside the lock and records its outcome.
    fn run<'g>(
        &'g self,
        mut inner: MutexGuard<'g, Inner<S::State>>,
        mut step: S::Step,
    ) -> MutexGuard<'g, Inner<S::State>> {
        inner.running += 1;
        drop(inner);
        let ran = self.steps.run(&mut step, &self.tally);
        let mut inner = self.lock();
        inner.running -= 1;
        match ran {
            Ok(()) => {
                let bytes = self.steps.complete(step, &mut inner.state);
                inner.bytes_done += bytes;
            }
            Err(err) => fail(&mut inner, err),
        }
        self.signal(&inner);
        inner
    }
}

/// Records the load's first error: every thread stops at its next step.
fn fail<T>(inner: &mut Inner<T>, err: LoadError) {
    if inner.error.is_none() {
        inner.error = Some(err);
    }
}

impl<S: Steps> Help for Job<S> {
    fn help(&self) {
        {
            let mut inner = self.lock();
            if inner.closed
                || inner.error.is_some()
                || inner.workers >= self.max_workers
                || self.steps.finished(&inner.state)
            {
                return;
            }
            inner.workers += 1;
        }
        let _member = Member(self);
        self.work(None);
    }
}

impl<S: Steps> Wake for Job<S> {
    fn wake(&self) {
        let mut inner = self.lock();
        if !self.steps.finished(&inner.state) {
            fail(
                &mut inner,
                load_err!(Cancelled, "the load was cancelled; everything was freed"),
            );
        }
        self.signal(&inner);
    }
}

/// A thread working on a job; leaves it when dropped, also when the thread panics.
struct Member<'a, S: Steps>(&'a Job<S>);

impl<S: Steps> Drop for Member<'_, S> {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.workers -= 1;
        if std::thread::panicking() {
            fail(
                &mut inner,
                load_err!(Internal, "a thread of the load panicked"),
            );
        }
        self.0.signal(&inner);
    }
}

/// Progress as the load's own thread last reported it.
struct Relay<'a> {
    sink: &'a dyn Progress,
    sent: u64,
}

impl Relay<'_> {
    /// Tells the sink of new progress, outside the lock (the sink may take its time, or
    /// cancel the load).
    fn forward<'g, S: Steps>(
        &mut self,
        job: &'g Job<S>,
        inner: MutexGuard<'g, Inner<S::State>>,
    ) -> MutexGuard<'g, Inner<S::State>> {
        let done = inner.bytes_done;
        if done <= self.sent || inner.error.is_some() {
            return inner;
        }
        drop(inner);
        self.sink.progress(done, job.bytes_total);
        self.sent = done;
        job.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::NoProgress;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    /// One step that runs until `release`, then a second that needs the first done.
    struct Gate {
        release: CancelToken,
        started: AtomicBool,
    }

    #[derive(Default)]
    struct GateState {
        taken: usize,
        done: usize,
    }

    impl Steps for Gate {
        type Step = usize;
        type State = GateState;

        fn next(&self, s: &mut GateState) -> Result<Option<usize>, LoadError> {
            if s.taken == s.done && s.taken < 2 {
                s.taken += 1;
                return Ok(Some(s.taken));
            }
            Ok(None)
        }

        fn run(&self, step: &mut usize, _: &Tally) -> Result<(), LoadError> {
            if *step == 1 {
                self.started.store(true, Ordering::SeqCst);
                while !self.release.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        }

        fn complete(&self, _: usize, s: &mut GateState) -> u64 {
            s.done += 1;
            1
        }

        fn finished(&self, s: &GateState) -> bool {
            s.done == 2
        }
    }

    #[test]
    fn a_waiting_thread_sleeps_until_cancelled_and_wakes_at_once() {
        let cancel = CancelToken::new();
        let gate = Gate {
            release: cancel.clone(),
            started: AtomicBool::new(false),
        };
        let job = Job::new(gate, GateState::default(), Tally::default(), 2, 2);
        let pool = WorkerPool::new(1);
        std::thread::scope(|scope| {
            // A helper takes the first step, which runs until the cancel.
            let helper = scope.spawn(|| job.help());
            while !job.steps.started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let canceller = scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                let idle_wakeups = job.wakeups();
                cancel.cancel();
                (Instant::now(), idle_wakeups)
            });
            // The load's own thread finds nothing to run and waits.
            let result = job.drive(&cancel, &pool, 0, &NoProgress);
            let returned = Instant::now();
            let (cancelled_at, idle_wakeups) = canceller.join().expect("canceller");
            helper.join().expect("helper");
            let err = result.expect_err("cancelled");
            assert_eq!(err.code, crate::error::ErrorCode::Cancelled);
            // A thread waiting on a timer would have woken ~60 times in 300 ms at 5 ms.
            assert!(
                idle_wakeups <= 2,
                "{idle_wakeups} wake-ups while nothing happened"
            );
            let late = returned.saturating_duration_since(cancelled_at);
            assert!(
                late < Duration::from_millis(200),
                "returned {late:?} after the cancel"
            );
        });
    }

    #[test]
    fn a_job_nobody_helps_is_run_by_its_own_thread_and_reports_progress() {
        struct Sum(Mutex<Vec<(u64, u64)>>);
        impl Progress for Sum {
            fn progress(&self, done: u64, total: u64) {
                self.0.lock().unwrap().push((done, total));
            }
        }
        let open = CancelToken::new();
        open.cancel();
        let gate = Gate {
            release: open,
            started: AtomicBool::new(false),
        };
        let job = Job::new(gate, GateState::default(), Tally::default(), 2, 4);
        let sink = Sum(Mutex::new(Vec::new()));
        job.drive(&CancelToken::new(), &WorkerPool::new(0), 0, &sink)
            .expect("runs");
        assert_eq!(*sink.0.lock().unwrap(), vec![(1, 2), (2, 2)]);
    }
}
