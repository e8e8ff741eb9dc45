//! Cancelling a load: a flag every clone shares, which also wakes whatever waits on the load
//! at once (its workers wait on events, never on timers).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Something to wake when a token is cancelled: a running load, or (in the service) a
/// request waiting for an identical load in flight.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// Cancels a load; clones share the flag (the service cancels on client death).
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Shared>);

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    /// Loads to wake on cancel; entries of loads that ended are pruned on registration.
    wakers: Mutex<Vec<Weak<dyn Wake>>>,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every load of this token; each stops at its next step and frees everything.
    pub fn cancel(&self) {
        if self.0.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let wakers = std::mem::take(&mut *self.wakers());
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Wakes `waker` when the token is cancelled, or now if it already is. The token keeps
    /// only the weak reference: a waker dropped before is not called.
    pub fn on_cancel(&self, waker: Weak<dyn Wake>) {
        {
            let mut wakers = self.wakers();
            wakers.retain(|w| w.strong_count() > 0);
            wakers.push(waker.clone());
        }
        // `cancel` sets the flag before it takes the list: either it saw this entry, or the
        // flag is visible here.
        if self.is_cancelled() {
            if let Some(waker) = waker.upgrade() {
                waker.wake();
            }
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Wake>>> {
        self.0.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    struct Counter(AtomicU32);

    impl Wake for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn cancel_wakes_registered_loads_once_and_late_ones_at_once() {
        let token = CancelToken::new();
        let early = Arc::new(Counter(AtomicU32::new(0)));
        token.on_cancel(Arc::downgrade(&early) as Weak<dyn Wake>);
        let clone = token.clone();
        assert!(!clone.is_cancelled());
        clone.cancel();
        clone.cancel();
        assert!(token.is_cancelled());
        assert_eq!(early.0.load(Ordering::Relaxed), 1);
        let late = Arc::new(Counter(AtomicU32::new(0)));
        token.on_cancel(Arc::downgrade(&late) as Weak<dyn Wake>);
        assert_eq!(late.0.load(Ordering::Relaxed), 1);
    }
}
