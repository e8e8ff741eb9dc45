//! What `auto` learns on this device: the throughput each dma-buf backend reached in the
//! loads it served, per size class. Which backend is fastest depends on the kernel's
//! allocators, its huge-page set-up and the storage, so a static order is only the start:
//! once every candidate has a few measurements, `auto` takes the fastest; until then it
//! keeps the static order but sends one load in [`EXPLORE_EVERY`] to a candidate that lacks
//! measurements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::stats::Backend;

/// Loads up to this size are dominated by fixed costs, larger ones by bandwidth: they are
/// measured apart.
const SMALL_MAX: u64 = 16 << 20;
/// Loads smaller than this say nothing about a backend's speed.
const MIN_BYTES: u64 = 256 << 10;
/// Measurements needed before a backend's rate is trusted.
pub(crate) const MIN_SAMPLES: u32 = 3;
/// Weight of the newest load in the moving average.
const ALPHA: f64 = 0.3;
/// While a candidate lacks measurements, one `auto` load in this many tries it.
pub(crate) const EXPLORE_EVERY: u64 = 8;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum SizeClass {
    Small,
    Large,
}

impl SizeClass {
    fn of(size: u64) -> SizeClass {
        if size <= SMALL_MAX {
            SizeClass::Small
        } else {
            SizeClass::Large
        }
    }

    fn label(self) -> &'static str {
        match self {
            SizeClass::Small => "≤ 16 MiB",
            SizeClass::Large => "> 16 MiB",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Rate {
    /// Moving average of bytes per second.
    bytes_per_sec: f64,
    samples: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Measurements {
    rates: Mutex<HashMap<(String, SizeClass), Rate>>,
    auto_loads: AtomicU64,
}

/// The order `auto` tries its candidates in, and why when it is not the static order.
pub(crate) struct Choice {
    pub(crate) order: Vec<Backend>,
    pub(crate) note: Option<String>,
}

fn mb_per_sec(rate: f64) -> String {
    format!("{:.0} MB/s", rate / 1e6)
}

impl Measurements {
    /// Records a finished load of a dma-buf backend.
    pub(crate) fn record(&self, backend: &Backend, size: u64, total: Duration) {
        if !backend.is_dma_buf() || size < MIN_BYTES || total.is_zero() {
            return;
        }
        let rate = size as f64 / total.as_secs_f64();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let entry = rates
            .entry((backend.name(), SizeClass::of(size)))
            .or_insert(Rate {
                bytes_per_sec: rate,
                samples: 0,
            });
        entry.bytes_per_sec = ALPHA * rate + (1.0 - ALPHA) * entry.bytes_per_sec;
        entry.samples = entry.samples.saturating_add(1);
    }

    /// Orders `candidates` (given in the static preference order) for a buffer of `size`.
    pub(crate) fn order(&self, candidates: Vec<Backend>, size: u64) -> Choice {
        if candidates.len() < 2 {
            return Choice {
                order: candidates,
                note: None,
            };
        }
        let class = SizeClass::of(size);
        let rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let rate = |b: &Backend| rates.get(&(b.name(), class)).copied();
        let unmeasured = candidates
            .iter()
            .position(|b| rate(b).map_or(true, |r| r.samples < MIN_SAMPLES));
        if let Some(index) = unmeasured {
            let n = self.auto_loads.fetch_add(1, Ordering::Relaxed);
            if index == 0 || n % EXPLORE_EVERY != EXPLORE_EVERY - 1 {
                return Choice {
                    order: candidates,
                    note: None,
                };
            }
            let mut order = candidates;
            let explored = order.remove(index);
            let note = format!(
                "auto: measuring {explored} for buffers {} ({} of {MIN_SAMPLES} loads measured)",
                class.label(),
                rate(&explored).map_or(0, |r| r.samples)
            );
            order.insert(0, explored);
            return Choice {
                order,
                note: Some(note),
            };
        }
        let mut order = candidates.clone();
        order.sort_by(|a, b| {
            let (ra, rb) = (
                rate(a).map_or(0.0, |r| r.bytes_per_sec),
                rate(b).map_or(0.0, |r| r.bytes_per_sec),
            );
            rb.total_cmp(&ra)
        });
        let note = (order[0] != candidates[0]).then(|| {
            format!(
                "auto: {} measured faster here for buffers {} ({} against {} for {})",
                order[0],
                class.label(),
                mb_per_sec(rate(&order[0]).map_or(0.0, |r| r.bytes_per_sec)),
                mb_per_sec(rate(&candidates[0]).map_or(0.0, |r| r.bytes_per_sec)),
                candidates[0]
            )
        });
        Choice { order, note }
    }

    /// The moving average of bytes per second and the number of loads measured for
    /// `backend` in the size class of `size`.
    pub(crate) fn rate(&self, backend: &Backend, size: u64) -> Option<(f64, u32)> {
        let rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        rates
            .get(&(backend.name(), SizeClass::of(size)))
            .map(|r| (r.bytes_per_sec, r.samples))
    }

    /// What was measured for `backend`, for listings ("" when nothing yet).
    pub(crate) fn describe(&self, backend: &Backend) -> String {
        let rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        [SizeClass::Small, SizeClass::Large]
            .iter()
            .filter_map(|&class| {
                let r = rates.get(&(backend.name(), class))?;
                Some(format!(
                    "{} for buffers {} ({} loads)",
                    mb_per_sec(r.bytes_per_sec),
                    class.label(),
                    r.samples
                ))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap() -> Backend {
        Backend::Heap("system".into())
    }

    #[test]
    fn static_order_until_measured_then_the_fastest() {
        let m = Measurements::default();
        let candidates = vec![Backend::Udmabuf, heap()];
        let big = 64 << 20;
        // Nothing measured: the static first serves, and so gets measured.
        assert!((0..EXPLORE_EVERY)
            .all(|_| m.order(candidates.clone(), big).order[0] == Backend::Udmabuf));
        // The first measured, the heap not: one load in EXPLORE_EVERY tries the heap.
        for _ in 0..MIN_SAMPLES {
            m.record(&Backend::Udmabuf, big, Duration::from_millis(200));
        }
        let choices: Vec<Choice> = (0..EXPLORE_EVERY)
            .map(|_| m.order(candidates.clone(), big))
            .collect();
        let explored: Vec<&Choice> = choices.iter().filter(|c| c.order[0] == heap()).collect();
        assert_eq!(explored.len(), 1);
        assert!(explored[0]
            .note
            .as_ref()
            .is_some_and(|n| n.contains("measuring heap:system")));
        // Both measured: the heap is twice as fast for large buffers.
        for _ in 0..MIN_SAMPLES {
            m.record(&heap(), big, Duration::from_millis(100));
        }
        let choice = m.order(candidates.clone(), big);
        assert_eq!(choice.order, vec![heap(), Backend::Udmabuf]);
        assert!(choice.note.is_some_and(|n| n.contains("measured faster")));
        // Small buffers are a class of their own: still unmeasured, static order.
        assert_eq!(
            m.order(candidates.clone(), 1 << 20).order[0],
            Backend::Udmabuf
        );
        // The static first stays first, without a note, when it is the fastest.
        for _ in 0..10 {
            m.record(&Backend::Udmabuf, big, Duration::from_millis(50));
        }
        let choice = m.order(candidates, big);
        assert_eq!(choice.order[0], Backend::Udmabuf);
        assert!(choice.note.is_none());
        assert!(m.describe(&heap()).contains("> 16 MiB"));
        // memfd and tiny loads are not measured.
        m.record(&Backend::Memfd, big, Duration::from_millis(1));
        m.record(&heap(), 4096, Duration::from_millis(1));
        assert_eq!(m.describe(&Backend::Memfd), "");
        assert!(!m.describe(&heap()).contains("≤ 16 MiB"));
    }
}
