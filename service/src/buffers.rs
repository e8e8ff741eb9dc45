//! Buffers handed out and still charged, and the reaper that frees what dead callers held.
//!
//! The service keeps no reference to a buffer's memory (the fd left with the caller), only the
//! engine's `Charge`. A charge ends on `releaseBuffer` or when the owner process dies: every
//! caller pid gets a pidfd, which a reaper thread polls; a dead pid's loads in flight are
//! cancelled and its buffers' charges dropped.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dmaload_abi::pidfd::Pidfd;
use dmaload_engine::{CancelToken, Charge, ErrorCode, LoadError};

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
    pub owner: Caller,
    pub name: String,
    pub size: u64,
    pub backend: String,
    pub created: Instant,
    charge: Charge,
}

/// What one live buffer looks like to the dump.
#[derive(Clone, Debug)]
pub struct BufferView {
    pub id: i64,
    pub owner: Caller,
    pub name: String,
    pub size: u64,
    pub backend: String,
    pub age: Duration,
}

/// A process the service has seen calling: its pidfd and its loads in flight.
struct Watched {
    pidfd: Pidfd,
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
        let registered = match watched_entry(&mut ledger, caller.pid) {
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

    /// Keeps `charge` for a buffer handed to `owner`; returns the buffer id.
    pub fn insert(
        &self,
        owner: Caller,
        name: String,
        size: u64,
        backend: String,
        charge: Charge,
    ) -> i64 {
        let mut ledger = self.lock();
        ledger.next_id += 1;
        let id = ledger.next_id;
        // Make sure the owner is watched, so its death drops the charge.
        let _ = watched_entry(&mut ledger, owner.pid);
        let buffer = LiveBuffer {
            id,
            owner,
            name,
            size,
            backend,
            created: Instant::now(),
            charge,
        };
        ledger.buffers.insert(id, buffer);
        id
    }

    /// Drops the charge of buffer `id`, which `uid` must own.
    pub fn release(&self, uid: u32, id: i64) -> Result<u64, LoadError> {
        let mut ledger = self.lock();
        match ledger.buffers.get(&id) {
            Some(b) if b.owner.uid == uid => {
                let bytes = b.charge.bytes();
                ledger.buffers.remove(&id);
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
        for pid in &dead {
            if let Some(w) = ledger.watched.remove(pid) {
                w.loads.values().for_each(CancelToken::cancel);
            }
            let before = ledger.buffers.len();
            ledger.buffers.retain(|_, b| b.owner.pid != *pid);
            log::info!(
                "caller pid {pid} exited: cancelled its loads, released {} buffer charge(s)",
                before - ledger.buffers.len()
            );
        }
        ledger.reaped_processes += dead.len() as u64;
        dead.len()
    }

    /// Runs [`reap`](Self::reap) every `period` on a thread of its own.
    pub fn spawn_reaper(self: &Arc<Self>, period: Duration) -> io::Result<()> {
        let registry = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("dmaload-reaper".into())
            .spawn(move || {
                while let Some(registry) = registry.upgrade() {
                    registry.reap();
                    drop(registry);
                    std::thread::sleep(period);
                }
            })?;
        Ok(())
    }

    pub fn views(&self) -> Vec<BufferView> {
        self.lock()
            .buffers
            .values()
            .map(|b| BufferView {
                id: b.id,
                owner: b.owner,
                name: b.name.clone(),
                size: b.size,
                backend: b.backend.clone(),
                age: b.created.elapsed(),
            })
            .collect()
    }

    /// (buffers, bytes) still charged.
    pub fn outstanding(&self) -> (usize, u64) {
        let ledger = self.lock();
        (
            ledger.buffers.len(),
            ledger.buffers.values().map(|b| b.charge.bytes()).sum(),
        )
    }

    /// Processes watched now, and processes reaped so far.
    pub fn watch_counts(&self) -> (usize, u64) {
        let ledger = self.lock();
        (ledger.watched.len(), ledger.reaped_processes)
    }
}

fn watched_entry(ledger: &mut Ledger, pid: i32) -> Option<&mut Watched> {
    if pid <= 0 || pid as u32 == std::process::id() {
        return None; // no pid from the transport, or an in-process call
    }
    match ledger.watched.entry(pid) {
        Entry::Occupied(e) => Some(e.into_mut()),
        Entry::Vacant(e) => match Pidfd::open(pid) {
            Ok(pidfd) => Some(e.insert(Watched {
                pidfd,
                loads: HashMap::new(),
            })),
            Err(err) => {
                log::warn!("pidfd_open({pid}): {err}; its charges end only by releaseBuffer");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_child_is_reaped_and_cancelled() {
        let registry = LiveBuffers::new();
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let caller = Caller {
            uid: 1234,
            pid: child.id() as i32,
        };
        let cancel = CancelToken::new();
        let watch = registry.watch_load(caller, &cancel);
        assert_eq!(registry.reap(), 0);
        assert!(!cancel.is_cancelled());
        child.wait().unwrap();
        assert_eq!(registry.reap(), 1);
        assert!(cancel.is_cancelled());
        drop(watch);
        assert_eq!(registry.watch_counts(), (0, 1));
    }

    #[test]
    fn release_checks_the_owner() {
        let registry = LiveBuffers::new();
        let err = registry.release(1, 77).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert!(err.message.contains("77"));
    }
}
