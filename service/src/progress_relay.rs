//! Progress of an asynchronous load, carried from the engine's threads to the one thread that
//! talks to the caller's callback.
//!
//! The engine reports progress from its reader and copy threads, which come and go with every
//! load. None of them makes a binder call: they only store the newest count here, and the
//! load's own thread sends it (`onProgress`, then `onComplete` or `onError`). So a load's
//! callbacks leave from one long-lived thread, in order, never stall a reader on IPC, and a
//! slow caller gets the newest count rather than a backlog.

use std::sync::{Condvar, Mutex, MutexGuard};

use dmaload_engine::Progress;

/// How many progress callbacks a load sends at most, besides the first (0 %).
pub const STEPS: u64 = 64;

/// The newest progress of one load and whether the load has ended.
#[derive(Default)]
pub struct ProgressRelay {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    done: u64,
    total: u64,
    /// Something arrived that was not yet taken.
    fresh: bool,
    ended: bool,
}

impl ProgressRelay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No more progress will come: `forward` sends what it has and returns.
    pub fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// Ends the relay when dropped, so `forward` returns even if the load panics.
    pub fn end_on_drop(&self) -> EndOnDrop<'_> {
        EndOnDrop(self)
    }

    /// Sends progress through `send` until `end`, from the calling thread only. Counts only
    /// grow; a count is sent when it reaches a new step (1/`STEPS` of the total), so a load
    /// sends at most `STEPS + 1` callbacks, the last one being the newest count at its end.
    pub fn forward(&self, mut send: impl FnMut(u64, u64)) {
        let mut next_step = 0u64;
        let mut state = self.lock();
        loop {
            while !state.fresh && !state.ended {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if !state.fresh {
                return;
            }
            state.fresh = false;
            let (done, total) = (state.done, state.total);
            let step = step_of(done, total);
            if step >= next_step {
                next_step = step + 1;
                drop(state);
                send(done, total);
                state = self.lock();
            }
        }
    }
}

/// See [`ProgressRelay::end_on_drop`].
pub struct EndOnDrop<'a>(&'a ProgressRelay);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

fn step_of(done: u64, total: u64) -> u64 {
    done.saturating_mul(STEPS)
        .checked_div(total)
        .unwrap_or(STEPS)
}

impl Progress for ProgressRelay {
    fn progress(&self, bytes_done: u64, bytes_total: u64) {
        let mut state = self.lock();
        // Reader threads report concurrently and may arrive out of order: keep the largest.
        if bytes_done < state.done && bytes_total == state.total {
            return;
        }
        state.done = bytes_done;
        state.total = bytes_total;
        state.fresh = true;
        drop(state);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `report` on 4 threads while this thread forwards; returns what was sent.
    fn relay(report: impl Fn(&ProgressRelay, usize) + Sync) -> Vec<(u64, u64)> {
        let relay = ProgressRelay::default();
        let mut sent = Vec::new();
        std::thread::scope(|scope| {
            let reporters: Vec<_> = (0..4)
                .map(|t| {
                    let (relay, report) = (&relay, &report);
                    scope.spawn(move || report(relay, t))
                })
                .collect();
            scope.spawn(|| {
                let _end = relay.end_on_drop();
                for r in reporters {
                    let _ = r.join();
                }
            });
            relay.forward(|done, total| sent.push((done, total)));
        });
        sent
    }

    #[test]
    fn counts_only_grow_end_at_the_total_and_stay_within_the_steps() {
        const TOTAL: u64 = 4 * 1000 * 4096;
        let done = std::sync::atomic::AtomicU64::new(0);
        let sent = relay(|relay, _| {
            for _ in 0..1000 {
                let now = done.fetch_add(4096, std::sync::atomic::Ordering::Relaxed) + 4096;
                relay.progress(now, TOTAL);
            }
        });
        assert!(!sent.is_empty());
        assert!(sent.len() as u64 <= STEPS + 1, "{} callbacks", sent.len());
        assert!(sent.windows(2).all(|w| w[0].0 < w[1].0), "{sent:?}");
        assert_eq!(sent.last(), Some(&(TOTAL, TOTAL)));
    }

    #[test]
    fn a_load_without_progress_sends_nothing_and_forward_returns() {
        assert!(relay(|_, _| {}).is_empty());
    }

    #[test]
    fn a_panicking_load_still_ends_the_relay() {
        let relay = ProgressRelay::default();
        std::thread::scope(|scope| {
            let load = scope.spawn(|| {
                let _end = relay.end_on_drop();
                relay.progress(1, 2);
                panic!("load failed");
            });
            let mut sent = Vec::new();
            relay.forward(|done, total| sent.push((done, total)));
            assert!(load.join().is_err());
            assert_eq!(sent, vec![(1, 2)]);
        });
    }

    #[test]
    fn an_empty_total_is_one_final_step() {
        let sent = relay(|relay, t| {
            if t == 0 {
                relay.progress(0, 0);
            }
        });
        assert_eq!(sent, vec![(0, 0)]);
    }
}
