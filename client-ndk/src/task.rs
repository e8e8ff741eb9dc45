//! Asynchronous loads: the state one load shares between the caller, the thread that
//! delivers its events, and whoever cancels it.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::buffer::LoadedBuffer;
use crate::error::{Error, Result};

/// Receives the events of an asynchronous load. Calls for one load never overlap, and
/// `finished` is the last one.
pub trait LoadEvents: Send + Sync {
    /// `loaded` of `total` bytes are in the buffer.
    fn progress(&self, _loaded: u64, _total: u64) {}

    /// The load ended. Return the buffer to leave it with the [`PendingLoad`] (for
    /// [`PendingLoad::take_buffer`]), or `None` after taking it.
    fn finished(&self, outcome: Result<LoadedBuffer>) -> Option<LoadedBuffer> {
        outcome.ok()
    }
}

/// Events nobody listens to: the buffer stays with the [`PendingLoad`].
pub struct NoEvents;
impl LoadEvents for NoEvents {}

enum State {
    Running,
    Done {
        status: Result<()>,
        /// Boxed: a buffer's description is large next to `Running`.
        buffer: Option<Box<LoadedBuffer>>,
    },
}

thread_local! {
    /// The task whose callback this thread is running (its address), to refuse waiting on
    /// a task from inside its own callback.
    static DELIVERING: Cell<usize> = const { Cell::new(0) };
}

/// What the loader and the event thread share.
pub(crate) struct TaskShared {
    state: Mutex<State>,
    done: Condvar,
    /// Serializes the event callbacks; holds the last progress reported.
    delivery: Mutex<u64>,
    events: Arc<dyn LoadEvents>,
    canceller: Mutex<Canceller>,
}

#[derive(Default)]
struct Canceller {
    requested: bool,
    cancel: Option<Box<dyn Fn() + Send + Sync>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking callback must not wedge the task: the guarded data are plain values.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TaskShared {
    pub(crate) fn new(events: Arc<dyn LoadEvents>) -> Arc<TaskShared> {
        Arc::new(TaskShared {
            state: Mutex::new(State::Running),
            done: Condvar::new(),
            delivery: Mutex::new(0),
            events,
            canceller: Mutex::new(Canceller::default()),
        })
    }

    fn id(&self) -> usize {
        self as *const TaskShared as usize
    }

    /// Installs how to cancel the load in the service; runs it at once if a cancel came first.
    pub(crate) fn set_canceller(&self, cancel: Box<dyn Fn() + Send + Sync>) {
        let mut c = lock(&self.canceller);
        if c.requested && !self.is_done() {
            cancel();
        }
        c.cancel = Some(cancel);
    }

    pub(crate) fn cancel(&self) {
        let mut c = lock(&self.canceller);
        c.requested = true;
        if self.is_done() {
            return;
        }
        if let Some(cancel) = &c.cancel {
            cancel();
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*lock(&self.state), State::Done { .. })
    }

    fn deliver<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = DELIVERING.with(|d| d.replace(self.id()));
        let r = f();
        DELIVERING.with(|d| d.set(previous));
        r
    }

    pub(crate) fn progress(&self, loaded: u64, total: u64) {
        let mut last = lock(&self.delivery);
        if self.is_done() {
            return;
        }
        // Reports are oneway calls that may overtake each other: pass on only news, so
        // the caller sees progress that never goes backwards nor past the total.
        let loaded = loaded.min(total);
        if loaded < *last {
            return;
        }
        *last = loaded;
        self.deliver(|| self.events.progress(loaded, total));
    }

    /// Ends the task (the first call wins): runs `finished`, then wakes the waiters.
    pub(crate) fn finish(&self, outcome: Result<LoadedBuffer>) {
        let _serial = lock(&self.delivery);
        if self.is_done() {
            return;
        }
        let status = outcome.as_ref().map(|_| ()).map_err(Error::clone);
        let buffer = self.deliver(|| self.events.finished(outcome));
        *lock(&self.state) = State::Done {
            status,
            buffer: buffer.map(Box::new),
        };
        self.done.notify_all();
    }

    /// True on the thread running one of this task's callbacks right now.
    pub(crate) fn in_own_callback(&self) -> bool {
        DELIVERING.with(|d| d.get()) == self.id()
    }

    /// Blocks until the task is done and returns its status.
    pub(crate) fn wait(&self) -> Result<()> {
        if self.in_own_callback() {
            return Err(Error::os(
                libc::EDEADLK,
                "a load cannot be waited for from inside its own callback",
            ));
        }
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Done { status, .. } => return status.clone(),
                State::Running => {
                    state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    pub(crate) fn take_buffer(&self) -> Option<LoadedBuffer> {
        match &mut *lock(&self.state) {
            State::Done { buffer, .. } => buffer.take().map(|b| *b),
            State::Running => None,
        }
    }
}

/// An asynchronous load in flight. Dropping it does not cancel the load (call
/// [`PendingLoad::cancel`]); a buffer nobody took is closed when the last reference goes.
pub struct PendingLoad {
    pub(crate) shared: Arc<TaskShared>,
    /// Keeps the connection delivering the events open while the load is awaited.
    pub(crate) _connection: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl PendingLoad {
    /// Asks the service to stop; the load then ends with `CANCELLED` unless it had finished.
    pub fn cancel(&self) {
        self.shared.cancel()
    }

    pub fn is_done(&self) -> bool {
        self.shared.is_done()
    }

    /// Waits for the end of the load and returns its status. Fails with `EDEADLK` when
    /// called from the load's own callback.
    pub fn wait(&self) -> Result<()> {
        self.shared.wait()
    }

    /// The buffer, if the load succeeded and the events left it here (once).
    pub fn take_buffer(&self) -> Option<LoadedBuffer> {
        self.shared.take_buffer()
    }

    /// Waits and returns the buffer (for loads started with [`NoEvents`]).
    pub fn join(self) -> Result<LoadedBuffer> {
        self.wait()?;
        self.take_buffer()
            .ok_or_else(|| Error::os(libc::ENOENT, "the buffer was taken by the load's events"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct Recorder {
        progress: AtomicU32,
        finished: AtomicU32,
        wait_in_callback: Mutex<Option<i32>>,
        task: Mutex<Option<Arc<TaskShared>>>,
    }

    impl LoadEvents for Recorder {
        fn progress(&self, _loaded: u64, _total: u64) {
            self.progress.fetch_add(1, Ordering::SeqCst);
        }
        fn finished(&self, outcome: Result<LoadedBuffer>) -> Option<LoadedBuffer> {
            self.finished.fetch_add(1, Ordering::SeqCst);
            if let Some(task) = lock(&self.task).as_ref() {
                *lock(&self.wait_in_callback) = task.wait().err().map(|e| e.c_code());
            }
            outcome.ok()
        }
    }

    #[test]
    fn finish_runs_once_and_wakes_waiters() {
        let events = Arc::new(Recorder::default());
        let shared = TaskShared::new(events.clone());
        *lock(&events.task) = Some(shared.clone());
        let pending = PendingLoad {
            shared: shared.clone(),
            _connection: None,
        };
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.wait())
        };
        shared.progress(1, 2);
        shared.progress(0, 2); // stale: overtaken by the report before it
        shared.finish(Err(Error::service(ErrorCode::Cancelled, "stopped")));
        shared.finish(Err(Error::service(ErrorCode::Io, "late")));
        shared.progress(2, 2);
        let status = waiter.join().expect("waiter");
        assert_eq!(status.unwrap_err().code(), Some(ErrorCode::Cancelled));
        assert_eq!(
            events.progress.load(Ordering::SeqCst),
            1,
            "no progress after the end"
        );
        assert_eq!(events.finished.load(Ordering::SeqCst), 1);
        assert_eq!(*lock(&events.wait_in_callback), Some(-libc::EDEADLK));
        assert!(pending.is_done());
        assert!(pending.take_buffer().is_none());
        // The task itself no longer counts as "inside its callback".
        assert!(!shared.in_own_callback());
    }

    #[test]
    fn a_cancel_before_the_canceller_exists_is_not_lost() {
        let shared = TaskShared::new(Arc::new(NoEvents));
        shared.cancel();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        shared.set_canceller(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        shared.cancel();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        shared.finish(Err(Error::service(ErrorCode::Cancelled, "x")));
        shared.cancel();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no cancel after the end");
    }
}
