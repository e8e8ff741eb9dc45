//! Buffers handed out and still charged, and the reaper that frees what dead callers held.
//!
//! For a buffer of its own the service keeps no reference to its memory (the fd left with the
//! caller), only the engine's `Charge`; a holder of a shared buffer (warm reuse) holds its
//! share of the entry that owns the charge and the service's fd (`reuse::Holder`). A charge
//! or a share ends on `releaseBuffer` or when the holder's process dies: every
//! caller pid gets a pidfd, and the reaper thread sleeps in one `poll` over all of them and an
//! eventfd that announces new ones; when a pidfd turns readable, that process's loads in flight
//! are cancelled and its buffers' charges dropped. Nothing wakes the reaper but an exit or a
//! new caller.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use dmaload_abi::event::{wait_readable, EventFd};
use dmaload_abi::pidfd::Pidfd;
use dmaload_engine::{CancelToken, Charge, ErrorCode, LoadError};

use crate::reuse::Holder;

/// Who called, as the binder stack reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// -1 or 0 when the transport carries no pid (then only releaseBuffer ends a charge).
    pub pid: i32,
}

/// One handed-out buffer (what the dump lists).
#[derive(Debug)]
pub struct LiveBuffer {
    pub id: i64,
    pub holder: Caller,
    pub name: String,
    pub size: u64,
    pub backend: String,
    pub created: Instant,
    hold: Hold,
}

/// What keeps a handed-out buffer charged.
#[derive(Debug)]
pub enum Hold {
    /// A buffer of its own: its charge.
    Own(Charge),
    /// One holder of a shared buffer: the entry keeps the one charge while any holder (or
    /// the cache) keeps it.
    Shared(Holder),
}

impl Hold {
    fn bytes(&self) -> u64 {
        match self {
            Hold::Own(charge) => charge.bytes(),
            Hold::Shared(holder) => holder.bytes(),
        }
    }

    /// The shared entry, for a holder of one.
    pub fn entry(&self) -> Option<u64> {
        match self {
            Hold::Own(_) => None,
            Hold::Shared(holder) => Some(holder.entry()),
        }
    }
}

/// What one live buffer looks like to the dump.
#[derive(Clone, Debug)]
pub struct BufferView {
    pub id: i64,
    pub holder: Caller,
    pub name: String,
    pub size: u64,
    pub backend: String,
    pub age: Duration,
    /// The shared entry this buffer is one holder of (warm reuse).
    pub shared: Option<u64>,
}

/// A process the service has seen calling: its pidfd and its loads in flight.
struct Watched {
    /// Shared with the reaper while it waits on it.
    pidfd: Arc<Pidfd>,
    loads: HashMap<u64, CancelToken>,
}

#[derive(Default)]
struct Ledger {
    buffers: BTreeMap<i64, LiveBuffer>,
    watched: HashMap<i32, Watched>,
    next_id: i64,
    next_load: u64,
    reaped_processes: u64,
}

/// The registry of live buffers and watched callers.
#[derive(Default)]
pub struct LiveBuffers {
    ledger: Mutex<Ledger>,
    /// Tells the reaper of a new watched process (and of the registry's end).
    reaper: OnceLock<Arc<EventFd>>,
    /// Times the reaper woke up.
    reaper_wakeups: AtomicU64,
}

/// Unregisters a load from its caller's watch when the load ends.
pub struct LoadWatch<'a> {
    registry: &'a LiveBuffers,
    pid: i32,
    key: Option<u64>,
}

impl Drop for LoadWatch<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            if let Some(w) = self.registry.lock().watched.get_mut(&self.pid) {
                w.loads.remove(&key);
            }
        }
    }
}

impl LiveBuffers {
    pub fn new() -> Arc<LiveBuffers> {
        Arc::new(LiveBuffers::default())
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a running load so the caller's death cancels it.
    pub fn watch_load(&self, caller: Caller, cancel: &CancelToken) -> LoadWatch<'_> {
        let mut ledger = self.lock();
        let key = ledger.next_load;
        ledger.next_load += 1;
        let registered = match self.watched(&mut ledger, caller.pid) {
            Some(w) => {
                w.loads.insert(key, cancel.clone());
                true
            }
            None => false,
        };
        LoadWatch {
            registry: self,
            pid: caller.pid,
            key: registered.then_some(key),
        }
    }

    /// Keeps `hold` for a buffer handed to `holder`; returns the buffer id.
    pub fn insert(
        &self,
        holder: Caller,
        name: String,
        size: u64,
        backend: String,
        hold: Hold,
    ) -> i64 {
        let mut ledger = self.lock();
        ledger.next_id += 1;
        let id = ledger.next_id;
        // Make sure the holder is watched, so its death drops the charge.
        let _ = self.watched(&mut ledger, holder.pid);
        let buffer = LiveBuffer {
            id,
            holder,
            name,
            size,
            backend,
            created: Instant::now(),
            hold,
        };
        ledger.buffers.insert(id, buffer);
        id
    }

    /// Drops the charge (or the share) of buffer `id`, which `uid` must own.
    pub fn release(&self, uid: u32, id: i64) -> Result<u64, LoadError> {
        let mut ledger = self.lock();
        match ledger.buffers.get(&id) {
            Some(b) if b.holder.uid == uid => {
                let bytes = b.hold.bytes();
                let released = ledger.buffers.remove(&id);
                // A share's end may move its entry to the cache: outside this lock.
                drop(ledger);
                drop(released);
                Ok(bytes)
            }
            _ => Err(LoadError::new(
                ErrorCode::NotFound,
                format!(
                    "buffer id {id} is not a live buffer of uid {uid}: pass a bufferId returned \
                     by load()/startLoad() to this uid and not yet released"
                ),
            )),
        }
    }

    /// Cancels the loads and drops the charges of every watched process that has exited.
    /// Returns how many processes were reaped.
    pub fn reap(&self) -> usize {
        let mut ledger = self.lock();
        let dead: Vec<i32> = ledger
            .watched
            .iter()
            .filter(|(_, w)| w.pidfd.has_exited())
            .map(|(pid, _)| *pid)
            .collect();
        let released = reap_pids(&mut ledger, &dead);
        drop(ledger);
        drop(released);
        dead.len()
    }

    /// Starts the thread that reaps watched processes as they exit.
    pub fn spawn_reaper(self: &Arc<Self>) -> io::Result<()> {
        let wake = Arc::new(EventFd::new()?);
        if self.reaper.set(Arc::clone(&wake)).is_err() {
            return Err(io::Error::other("the reaper runs already"));
        }
        let registry = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("dmaload-reaper".into())
            .spawn(move || reaper(&registry, &wake))?;
        Ok(())
    }

    /// Times the reaper thread woke up (for each new watched process and each exit).
    pub fn reaper_wakeups(&self) -> u64 {
        self.reaper_wakeups.load(Ordering::Relaxed)
    }

    /// The pidfds the reaper waits on.
    fn watched_pidfds(&self) -> Vec<(i32, Arc<Pidfd>)> {
        self.lock()
            .watched
            .iter()
            .map(|(pid, w)| (*pid, Arc::clone(&w.pidfd)))
            .collect()
    }

    /// Reaps the watched processes whose pidfd (the one in `exited`) turned readable.
    fn reap_exited(&self, exited: &[(i32, Arc<Pidfd>)]) {
        let mut ledger = self.lock();
        let dead: Vec<i32> = exited
            .iter()
            .filter(|(pid, pidfd)| {
                // The same process, not a later one that reused its pid.
                ledger
                    .watched
                    .get(pid)
                    .is_some_and(|w| Arc::ptr_eq(&w.pidfd, pidfd))
            })
            .map(|(pid, _)| *pid)
            .collect();
        let released = reap_pids(&mut ledger, &dead);
        drop(ledger);
        drop(released);
    }

    pub fn views(&self) -> Vec<BufferView> {
        self.lock()
            .buffers
            .values()
            .map(|b| BufferView {
                id: b.id,
                holder: b.holder,
                name: b.name.clone(),
                size: b.size,
                backend: b.backend.clone(),
                age: b.created.elapsed(),
                shared: b.hold.entry(),
            })
            .collect()
    }

    /// (buffers, bytes) still charged: a shared buffer's bytes count once, however many
    /// hold it.
    pub fn outstanding(&self) -> (usize, u64) {
        let ledger = self.lock();
        let mut entries = std::collections::HashSet::new();
        let bytes = ledger
            .buffers
            .values()
            .filter(|b| b.hold.entry().map_or(true, |e| entries.insert(e)))
            .map(|b| b.hold.bytes())
            .sum();
        (ledger.buffers.len(), bytes)
    }

    /// Processes watched now, and processes reaped so far.
    pub fn watch_counts(&self) -> (usize, u64) {
        let ledger = self.lock();
        (ledger.watched.len(), ledger.reaped_processes)
    }
}

impl LiveBuffers {
    /// The watch of process `pid`, started (and announced to the reaper) on its first call.
    fn watched<'l>(&self, ledger: &'l mut Ledger, pid: i32) -> Option<&'l mut Watched> {
        if pid <= 0 || pid as u32 == own_pid() {
            return None; // no pid from the transport, or an in-process call
        }
        match ledger.watched.entry(pid) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) => match Pidfd::open(pid) {
                Ok(pidfd) => {
                    if let Some(wake) = self.reaper.get() {
                        if let Err(err) = wake.signal() {
                            log::warn!("cannot wake the reaper for pid {pid}: {err}");
                        }
                    }
                    Some(e.insert(Watched {
                        pidfd: Arc::new(pidfd),
                        loads: HashMap::new(),
                    }))
                }
                Err(err) => {
                    log::warn!("pidfd_open({pid}): {err}; its charges end only by releaseBuffer");
                    None
                }
            },
        }
    }
}

/// This process's id, asked of the kernel once (every load compares its caller's with it).
fn own_pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

impl Drop for LiveBuffers {
    fn drop(&mut self) {
        // The reaper wakes, finds the registry gone and ends.
        if let Some(wake) = self.reaper.get() {
            let _ = wake.signal();
        }
    }
}

/// The reaper thread: one blocking wait over the eventfd and every watched pidfd, until the
/// registry is gone.
fn reaper(registry: &Weak<LiveBuffers>, wake: &EventFd) {
    loop {
        let Some(watched) = registry.upgrade().map(|r| r.watched_pidfds()) else {
            return;
        };
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(wake.as_fd())
            .chain(watched.iter().map(|(_, pidfd)| pidfd.as_fd()))
            .collect();
        let ready = match wait_readable(&fds) {
            Ok(ready) => ready,
            Err(e) => {
                log::error!("the reaper cannot wait on callers' pidfds ({e}); dead callers' charges stay until releaseBuffer");
                return;
            }
        };
        wake.drain();
        let Some(registry) = registry.upgrade() else {
            return;
        };
        registry.reaper_wakeups.fetch_add(1, Ordering::Relaxed);
        let exited: Vec<(i32, Arc<Pidfd>)> = watched
            .into_iter()
            .zip(ready.into_iter().skip(1))
            .filter_map(|(entry, ready)| ready.then_some(entry))
            .collect();
        if !exited.is_empty() {
            registry.reap_exited(&exited);
        }
    }
}

/// Cancels the loads of the processes `dead` and takes their buffers out; the caller drops
/// them (their charges and shares) once it let go of the ledger.
fn reap_pids(ledger: &mut Ledger, dead: &[i32]) -> Vec<LiveBuffer> {
    let mut released = Vec::new();
    for pid in dead {
        if let Some(w) = ledger.watched.remove(pid) {
            w.loads.values().for_each(CancelToken::cancel);
        }
        let ids: Vec<i64> = ledger
            .buffers
            .values()
            .filter(|b| b.holder.pid == *pid)
            .map(|b| b.id)
            .collect();
        log::info!(
            "caller pid {pid} exited: cancelled its loads, released {} buffer charge(s)",
            ids.len()
        );
        released.extend(ids.iter().filter_map(|id| ledger.buffers.remove(id)));
    }
    ledger.reaped_processes += dead.len() as u64;
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child process (`sleep SECONDS`) running a load watched by `registry`.
    fn child_with_a_load<'r>(
        registry: &'r LiveBuffers,
        seconds: &str,
    ) -> (std::process::Child, CancelToken, LoadWatch<'r>) {
        let child = std::process::Command::new("sleep")
            .arg(seconds)
            .spawn()
            .unwrap();
        let caller = Caller {
            uid: 1234,
            pid: child.id() as i32,
        };
        let cancel = CancelToken::new();
        let watch = registry.watch_load(caller, &cancel);
        (child, cancel, watch)
    }

    #[test]
    fn a_dead_child_is_reaped_and_cancelled() {
        let registry = LiveBuffers::new();
        let (mut child, cancel, watch) = child_with_a_load(&registry, "0.2");
        assert_eq!(registry.reap(), 0);
        assert!(!cancel.is_cancelled());
        child.wait().unwrap();
        assert_eq!(registry.reap(), 1);
        assert!(cancel.is_cancelled());
        drop(watch);
        assert_eq!(registry.watch_counts(), (0, 1));
    }

    #[test]
    fn the_reaper_sleeps_until_a_caller_comes_or_goes() {
        let registry = LiveBuffers::new();
        registry.spawn_reaper().unwrap();
        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            let start = Instant::now();
            while !done() {
                assert!(start.elapsed() < Duration::from_secs(5), "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
            start.elapsed()
        };
        let (mut child, cancel, watch) = child_with_a_load(&registry, "10");
        // One wake-up for the new caller, then sleep: none while nothing happens.
        wait_until("the reaper heard of the caller", &|| {
            registry.reaper_wakeups() >= 1
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(registry.reaper_wakeups(), 1, "woke while nothing happened");
        assert!(!cancel.is_cancelled());
        child.kill().unwrap();
        child.wait().unwrap();
        let took = wait_until("the dead caller's load was cancelled", &|| {
            cancel.is_cancelled()
        });
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(registry.reaper_wakeups(), 2);
        drop(watch);
        assert_eq!(registry.watch_counts(), (0, 1));
    }

    #[test]
    fn release_checks_the_holder() {
        let registry = LiveBuffers::new();
        let err = registry.release(1, 77).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert!(err.message.contains("77"));
    }
}
