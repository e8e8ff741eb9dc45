//! The engine's worker threads. A load runs its steps on its own thread and asks some of
//! these to help; they live as long as the engine, so a load starts no thread, and each
//! worker keeps what it set up for reading (its io_uring ring) from load to load.
//!
//! Threads start on demand, up to the pool's size, and then stay. A load never depends on a
//! worker turning up: its own thread can run every step, so loads that wait behind others
//! for workers are slower, never stuck. When a load ends, [`WorkerPool::withdraw`] returns
//! only once no worker holds it any more, so what the load owns (the caller's fds, the
//! buffer's mapping) is gone when the load returns.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

/// A load that workers can help.
pub(crate) trait Help: Send + Sync {
    /// Runs the load's steps until none is left for this worker.
    fn help(&self);
}

#[derive(Debug)]
pub(crate) struct WorkerPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    size: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("size", &self.size).finish()
    }
}

/// The workers holding one load: a worker counts itself in when it takes a request (under
/// the queue's lock) and out after it let go of the load.
#[derive(Debug, Default)]
pub(crate) struct Visits {
    inside: Mutex<usize>,
    left: Condvar,
}

impl Visits {
    fn inside(&self) -> MutexGuard<'_, usize> {
        self.inside.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self) {
        *self.inside() += 1;
    }

    fn leave(&self) {
        *self.inside() -= 1;
        self.left.notify_all();
    }

    fn wait_none(&self) {
        let mut inside = self.inside();
        while *inside > 0 {
            inside = self.left.wait(inside).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A request for a worker: the load, and its visits.
type Request = (Weak<dyn Help>, Arc<Visits>);

#[derive(Default)]
struct Queue {
    /// One entry per worker asked for.
    requests: VecDeque<Request>,
    idle: usize,
    started: usize,
    shutdown: bool,
}

impl WorkerPool {
    /// A pool of up to `size` threads, none started yet.
    pub(crate) fn new(size: usize) -> WorkerPool {
        WorkerPool {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                work: Condvar::new(),
                size,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.shared.size
    }

    /// Threads started so far.
    pub(crate) fn started(&self) -> usize {
        self.shared.queue().started
    }

    /// Asks `workers` threads to help `job`, counting them in `visits`; starts threads while
    /// none is idle for a request.
    pub(crate) fn submit(&self, job: &Weak<dyn Help>, visits: &Arc<Visits>, workers: usize) {
        let start = {
            let mut queue = self.shared.queue();
            queue
                .requests
                .extend(std::iter::repeat((job.clone(), Arc::clone(visits))).take(workers));
            let unserved = queue.requests.len().saturating_sub(queue.idle);
            let start = unserved.min(self.shared.size.saturating_sub(queue.started));
            queue.started += start;
            start
        };
        self.shared.work.notify_all();
        for _ in 0..start {
            self.start_thread();
        }
    }

    /// Drops the requests of `job` no worker took, and waits until no worker holds the job
    /// (the load has ended: those inside leave at once).
    pub(crate) fn withdraw(&self, job: &Weak<dyn Help>, visits: &Visits) {
        self.shared
            .queue()
            .requests
            .retain(|(request, _)| !Weak::ptr_eq(request, job));
        visits.wait_none();
    }

    fn start_thread(&self) {
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("dmaload-worker".into())
            .spawn(move || shared.serve());
        match spawned {
            Ok(handle) => self
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle),
            Err(e) => {
                // The loads' own threads do the work meanwhile.
                log::warn!("cannot start a worker thread: {e}");
                self.shared.queue().started -= 1;
            }
        }
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker's life: take a request, help its load, wait for the next.
    fn serve(&self) {
        let mut queue = self.queue();
        loop {
            if queue.shutdown {
                return;
            }
            let Some((request, visits)) = queue.requests.pop_front() else {
                queue.idle += 1;
                queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.idle -= 1;
                continue;
            };
            // Counted in while the request is still visible to `withdraw`.
            visits.enter();
            drop(queue);
            if let Some(job) = request.upgrade() {
                job.help();
            }
            visits.leave();
            queue = self.queue();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.queue().shutdown = true;
        self.shared.work.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize, Mutex<Vec<std::thread::ThreadId>>);

    impl Help for Count {
        fn help(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.lock().unwrap().push(std::thread::current().id());
        }
    }

    fn wait_for(count: &Count, n: usize) {
        for _ in 0..2000 {
            if count.0.load(Ordering::SeqCst) >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!(
            "only {} of {n} requests served",
            count.0.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn threads_start_on_demand_up_to_the_size_and_serve_later_loads() {
        let pool = WorkerPool::new(2);
        assert_eq!(pool.started(), 0);
        let job = Arc::new(Count(AtomicUsize::new(0), Mutex::new(Vec::new())));
        let weak = Arc::downgrade(&job) as Weak<dyn Help>;
        let visits = Arc::new(Visits::default());
        pool.submit(&weak, &visits, 5);
        wait_for(&job, 5);
        assert_eq!(pool.started(), 2);
        pool.submit(&weak, &visits, 3);
        wait_for(&job, 8);
        // Once withdrawn, no worker holds the load.
        pool.withdraw(&weak, &visits);
        assert_eq!(Arc::strong_count(&job), 1);
        assert_eq!(pool.started(), 2, "idle threads served the second load");
        let mut ids = job.1.lock().unwrap().clone();
        ids.sort_unstable_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert!(ids.len() <= 2, "{ids:?}");
        // A load that ended is skipped, and its requests can be withdrawn.
        drop(job);
        pool.submit(&weak, &visits, 2);
        pool.withdraw(&weak, &visits);
        drop(pool);
    }
}
