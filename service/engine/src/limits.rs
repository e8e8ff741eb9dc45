//! Limits and accounting: every byte a load will allocate is reserved here before any
//! allocation, so no request can summon the OOM killer (dma-buf memory is in no process's RSS).
//!
//! A load reserves its buffer (charged to its caller until the buffer's [`Charge`] drops) and
//! its working memory (bounce blocks; charged to its caller while the load runs). Bounce
//! blocks the engine keeps between loads count against the global cap as the service's own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{load_err, LoadError};
use crate::request::{Caller, IoEngine, Tunables};
use dmaload_abi::meminfo::MemInfo;
use dmaload_abi::{dma_heap, udmabuf};

/// Service-wide configuration of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes all live buffers and loads together may hold.
    pub global_cap_bytes: u64,
    /// Bytes one caller (uid) may hold.
    pub per_caller_cap_bytes: u64,
    /// Largest single buffer.
    pub max_buffer_bytes: u64,
    /// Loads running at once, service-wide.
    pub max_concurrent_loads: u32,
    /// Loads running at once for one caller.
    pub max_concurrent_loads_per_caller: u32,
    /// Segments in one request (`BAD_SEGMENTS` beyond).
    pub max_segments: usize,
    /// Files (fds) in one request (`TOO_MANY_FILES` beyond). Every one is an fd held in the
    /// service for the load.
    pub max_files: usize,
    /// Memory the kernel must keep available after a reservation (checked against
    /// MemAvailable at reservation time).
    pub min_available_after_bytes: u64,
    /// Backend names allowed (`heap:<name>`, `udmabuf`, `memfd`); empty = all present.
    pub allowed_backends: Vec<String>,
    /// Directory of dma-heap devices.
    pub dma_heap_dir: PathBuf,
    /// The udmabuf device.
    pub udmabuf_device: PathBuf,
    /// sysfs file holding udmabuf's per-buffer limit in MiB.
    pub udmabuf_size_limit_file: PathBuf,
    /// Defaults for tunables a request leaves at 0.
    pub default_tunables: Tunables,
    /// How readers issue reads.
    pub io_engine: IoEngine,
    /// udmabuf memory comes from the hugetlb pool (2 MiB pages) when the pool has room for
    /// the whole buffer. Only a device that reserved a pool (`vm.nr_hugepages`) has one;
    /// otherwise shmem memory is used as before.
    pub hugetlb: bool,
    /// Engine threads that run loads' steps beside each load's own thread (0: the default
    /// readers plus populating threads of this machine). They live as long as the engine;
    /// a load uses at most this many readers.
    pub worker_threads: u32,
}

impl EngineConfig {
    /// Defaults derived from this machine's memory: the global cap is half of MemTotal but no
    /// more than three quarters of what is available now; one caller may use three quarters of
    /// that; a single buffer may be as large as one caller's cap.
    pub fn from_system() -> EngineConfig {
        let mem = MemInfo::read().unwrap_or(MemInfo {
            total: 1 << 30,
            available: 1 << 30,
        });
        EngineConfig::for_memory(mem)
    }

    /// Defaults for a machine with this much memory.
    pub fn for_memory(mem: MemInfo) -> EngineConfig {
        let global = (mem.total / 2).min(mem.available / 4 * 3).max(64 << 20);
        let per_caller = global / 4 * 3;
        EngineConfig {
            global_cap_bytes: global,
            per_caller_cap_bytes: per_caller,
            max_buffer_bytes: per_caller,
            max_concurrent_loads: 8,
            max_concurrent_loads_per_caller: 4,
            // Segments name a file of the request, so they cost no fd: the bound is the size of
            // the request itself. In the AIDL's file-table layout a segment is 40 bytes of
            // parcel, so 16384 segments are 640 KiB: one such request fits the kernel binder
            // buffer (1 MiB less two pages, shared by every call in flight to the service).
            max_segments: 16384,
            // Each file is an fd in the service: far below its fd limit. The AIDL's file
            // table takes at most IDmaLoader.MAX_FILES (64); requests with one fd per segment
            // (AIDL version 1) up to this.
            max_files: 1024,
            min_available_after_bytes: (mem.total / 16).min(256 << 20),
            allowed_backends: Vec::new(),
            dma_heap_dir: PathBuf::from(dma_heap::DEVICE_DIR),
            udmabuf_device: PathBuf::from(udmabuf::DEVICE),
            udmabuf_size_limit_file: PathBuf::from(udmabuf::SIZE_LIMIT_FILE),
            default_tunables: Tunables::default(),
            io_engine: IoEngine::default(),
            hugetlb: true,
            worker_threads: 0,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig::from_system()
    }
}

/// What one caller (or the whole engine) holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes charged: loads in flight plus finished buffers whose charge is alive.
    pub charged_bytes: u64,
    /// Charges alive (loads in flight + buffers handed out and not released).
    pub charges: u32,
    /// Loads running now.
    pub loads_in_flight: u32,
    /// Working memory (bounce blocks) reserved by the loads running now.
    pub working_bytes: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    total: Usage,
    per_uid: HashMap<u32, Usage>,
    /// Bounce blocks kept between loads (the service's own memory, under the global cap).
    pooled_bytes: u64,
}

/// What a load asks to reserve: its buffer, and the working memory it could use, largest
/// first (fewer readers and bounce blocks further down); the first that fits every limit is
/// reserved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reservation<'a> {
    pub(crate) buffer: u64,
    pub(crate) working: &'a [u64],
}

/// The shared ledger behind [`Charge`] and [`LoadSlot`].
#[derive(Debug)]
pub(crate) struct Accounting {
    ledger: Mutex<Ledger>,
}

impl Accounting {
    pub(crate) fn new() -> Arc<Accounting> {
        Arc::new(Accounting {
            ledger: Mutex::new(Ledger::default()),
        })
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn usage(&self, uid: u32) -> Usage {
        self.ledger().per_uid.get(&uid).copied().unwrap_or_default()
    }

    /// Every uid holding something now (a charge, a load in flight, working memory), sorted.
    pub(crate) fn uids(&self) -> Vec<u32> {
        let mut uids: Vec<u32> = self.ledger().per_uid.keys().copied().collect();
        uids.sort_unstable();
        uids
    }

    pub(crate) fn total(&self) -> Usage {
        self.ledger().total
    }

    /// Idle pooled bytes, under the global cap.
    pub(crate) fn pooled(&self) -> u64 {
        self.ledger().pooled_bytes
    }

    /// Counts `bytes` of blocks going back to the pool, if they fit the global cap with
    /// everything charged; false: the caller frees them instead.
    pub(crate) fn pool(&self, bytes: u64, global_cap: u64) -> bool {
        let mut ledger = self.ledger();
        let held = ledger.total.charged_bytes + ledger.total.working_bytes + ledger.pooled_bytes;
        if held.saturating_add(bytes) > global_cap {
            return false;
        }
        ledger.pooled_bytes += bytes;
        true
    }

    /// Uncounts `bytes` of pooled blocks (reused by a load, or freed).
    pub(crate) fn unpool(&self, bytes: u64) {
        let mut ledger = self.ledger();
        ledger.pooled_bytes = ledger.pooled_bytes.saturating_sub(bytes);
    }

    /// Admits a load for `caller`: checks every limit and, if the buffer and one of the
    /// working-memory choices pass all of them, records a running load, charges the buffer
    /// and reserves the working memory. Returns the index of the working choice reserved.
    /// Nothing is allocated before this succeeds.
    pub(crate) fn admit(
        self: &Arc<Self>,
        config: &EngineConfig,
        caller: Caller,
        ask: Reservation<'_>,
        mem_available: Option<u64>,
    ) -> Result<(LoadSlot, Charge, usize), LoadError> {
        let bytes = ask.buffer;
        if bytes > config.max_buffer_bytes {
            return Err(load_err!(
                TooLarge,
                "buffer of {bytes} bytes exceeds the maximum buffer size of {} bytes; load \
                 the file in smaller parts",
                config.max_buffer_bytes
            ));
        }
        let mut guard = self.ledger();
        let ledger = &mut *guard;
        let mine = ledger.per_uid.get(&caller.uid).copied().unwrap_or_default();
        if ledger.total.loads_in_flight >= config.max_concurrent_loads {
            return Err(load_err!(
                Busy,
                "{} loads are running (service limit {}); retry when one finishes",
                ledger.total.loads_in_flight,
                config.max_concurrent_loads
            ));
        }
        if mine.loads_in_flight >= config.max_concurrent_loads_per_caller {
            return Err(load_err!(
                Busy,
                "uid {} already runs {} loads (limit {}); wait for one to finish",
                caller.uid,
                mine.loads_in_flight,
                config.max_concurrent_loads_per_caller
            ));
        }
        let room = Room {
            config,
            caller,
            mine,
            total: ledger.total,
            pooled: ledger.pooled_bytes,
            mem_available,
        };
        let choices: &[u64] = if ask.working.is_empty() {
            &[0]
        } else {
            ask.working
        };
        let mut refusal = None;
        let chosen =
            choices
                .iter()
                .enumerate()
                .find(|(_, &working)| match room.check(bytes, working) {
                    Ok(()) => true,
                    Err(err) => {
                        refusal = Some(err);
                        false
                    }
                });
        let Some((index, &working)) = chosen else {
            return Err(refusal
                .unwrap_or_else(|| load_err!(Internal, "no working memory choice for the load")));
        };
        for usage in [
            &mut ledger.total,
            ledger_uid(&mut ledger.per_uid, caller.uid),
        ] {
            usage.charged_bytes += bytes;
            usage.charges += 1;
            usage.loads_in_flight += 1;
            usage.working_bytes += working;
        }
        Ok((
            LoadSlot {
                accounting: Arc::clone(self),
                uid: caller.uid,
                working,
            },
            Charge {
                accounting: Arc::clone(self),
                uid: caller.uid,
                bytes,
            },
            index,
        ))
    }

    fn release_charge(&self, uid: u32, bytes: u64) {
        let mut guard = self.ledger();
        let ledger = &mut *guard;
        for usage in [&mut ledger.total, ledger_uid(&mut ledger.per_uid, uid)] {
            usage.charged_bytes = usage.charged_bytes.saturating_sub(bytes);
            usage.charges = usage.charges.saturating_sub(1);
        }
        ledger.per_uid.retain(|_, u| *u != Usage::default());
    }

    fn release_slot(&self, uid: u32, working: u64) {
        let mut guard = self.ledger();
        let ledger = &mut *guard;
        for usage in [&mut ledger.total, ledger_uid(&mut ledger.per_uid, uid)] {
            usage.loads_in_flight = usage.loads_in_flight.saturating_sub(1);
            usage.working_bytes = usage.working_bytes.saturating_sub(working);
        }
        ledger.per_uid.retain(|_, u| *u != Usage::default());
    }
}

/// What the limits leave for one more load, as the ledger stands.
struct Room<'a> {
    config: &'a EngineConfig,
    caller: Caller,
    mine: Usage,
    total: Usage,
    pooled: u64,
    mem_available: Option<u64>,
}

impl Room<'_> {
    /// Ok when a buffer of `bytes` and `working` bytes of working memory fit every limit;
    /// else the error of the first limit they break.
    fn check(&self, bytes: u64, working: u64) -> Result<(), LoadError> {
        let config = self.config;
        let want = bytes.saturating_add(working);
        let what = if working == 0 {
            format!("{bytes} more")
        } else {
            format!("{want} more ({bytes} for the buffer, {working} of working memory)")
        };
        let mine = self.mine.charged_bytes + self.mine.working_bytes;
        if mine.saturating_add(want) > config.per_caller_cap_bytes {
            return Err(load_err!(
                CallerCap,
                "uid {} holds {mine} bytes; {what} would exceed its cap of {} bytes; release \
                 buffers first",
                self.caller.uid,
                config.per_caller_cap_bytes
            ));
        }
        let held = self.total.charged_bytes + self.total.working_bytes + self.pooled;
        if held.saturating_add(want) > config.global_cap_bytes {
            return Err(load_err!(
                GlobalCap,
                "the service holds {held} bytes; {what} would exceed its cap of {} bytes; \
                 retry later or free buffers",
                config.global_cap_bytes
            ));
        }
        if let Some(available) = self.mem_available {
            if want.saturating_add(config.min_available_after_bytes) > available {
                return Err(load_err!(
                    NoMemory,
                    "only {available} bytes of memory are available; {what} would leave less \
                     than {} bytes; retry later",
                    config.min_available_after_bytes
                ));
            }
        }
        Ok(())
    }
}

fn ledger_uid(per_uid: &mut HashMap<u32, Usage>, uid: u32) -> &mut Usage {
    per_uid.entry(uid).or_default()
}

/// Bytes charged to an caller; released when dropped (the service drops it when the caller
/// releases the buffer or dies).
#[derive(Debug)]
pub struct Charge {
    accounting: Arc<Accounting>,
    uid: u32,
    bytes: u64,
}

impl Charge {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.accounting.release_charge(self.uid, self.bytes);
    }
}

/// A running load and its working memory; dropped when the load ends, successfully or not.
#[derive(Debug)]
pub(crate) struct LoadSlot {
    accounting: Arc<Accounting>,
    uid: u32,
    working: u64,
}

impl LoadSlot {
    /// Working memory reserved for the load.
    pub(crate) fn working(&self) -> u64 {
        self.working
    }
}

impl Drop for LoadSlot {
    fn drop(&mut self) {
        self.accounting.release_slot(self.uid, self.working);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn config() -> EngineConfig {
        let mut c = EngineConfig::for_memory(MemInfo {
            total: 16 << 30,
            available: 16 << 30,
        });
        c.global_cap_bytes = 1000;
        c.per_caller_cap_bytes = 600;
        c.max_buffer_bytes = 500;
        c.max_concurrent_loads = 3;
        c.max_concurrent_loads_per_caller = 2;
        c
    }

    fn ask(buffer: u64) -> Reservation<'static> {
        Reservation {
            buffer,
            working: &[0],
        }
    }

    #[test]
    fn limits_are_checked_in_order_and_released_on_drop() {
        let acc = Accounting::new();
        let c = config();
        let a = Caller::new(10);
        let b = Caller::new(20);
        let err = acc.admit(&c, a, ask(501), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        let (slot1, charge1, _) = acc.admit(&c, a, ask(400), None).unwrap();
        assert_eq!(
            acc.usage(10),
            Usage {
                charged_bytes: 400,
                charges: 1,
                loads_in_flight: 1,
                working_bytes: 0,
            }
        );
        assert_eq!(
            acc.admit(&c, a, ask(201), None).unwrap_err().code,
            ErrorCode::CallerCap
        );
        let (slot2, _charge2, _) = acc.admit(&c, a, ask(200), None).unwrap();
        assert_eq!(
            acc.admit(&c, a, ask(1), None).unwrap_err().code,
            ErrorCode::Busy
        );
        drop(slot2);
        let (slot3, charge3, _) = acc.admit(&c, b, ask(400), None).unwrap();
        assert_eq!(
            acc.admit(&c, b, ask(1), None).unwrap_err().code,
            ErrorCode::GlobalCap
        );
        drop(slot3);
        drop(charge3);
        drop(slot1);
        assert_eq!(acc.usage(10).loads_in_flight, 0);
        assert_eq!(acc.usage(10).charged_bytes, 600);
        drop(charge1);
        assert_eq!(acc.usage(10).charged_bytes, 200);
        assert_eq!(acc.usage(20), Usage::default());
        assert_eq!(acc.total().charged_bytes, 200);
        assert_eq!(
            acc.admit(&c, b, ask(300), Some(100)).unwrap_err().code,
            ErrorCode::NoMemory
        );
    }

    #[test]
    fn working_memory_shrinks_to_fit_and_pooled_blocks_count_globally() {
        let acc = Accounting::new();
        let c = config();
        let caller = Caller::new(10);
        // 400 + 300 is over the caller's 600, 400 + 150 fits: the second choice is taken.
        let choices = [300, 150, 50];
        let (slot, charge, index) = acc
            .admit(
                &c,
                caller,
                Reservation {
                    buffer: 400,
                    working: &choices,
                },
                None,
            )
            .unwrap();
        assert_eq!((index, slot.working()), (1, 150));
        assert_eq!(acc.usage(10).working_bytes, 150);
        assert_eq!(acc.total().working_bytes, 150);
        // Only 50 left for uid 10: a buffer of 40 with at least 20 of working memory is
        // refused with the caller's cap, saying how much was working memory.
        let err = acc
            .admit(
                &c,
                caller,
                Reservation {
                    buffer: 40,
                    working: &[30, 20],
                },
                None,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::CallerCap);
        assert!(
            err.message.contains("20 of working memory"),
            "{}",
            err.message
        );
        drop(slot);
        assert_eq!(acc.usage(10).working_bytes, 0);
        // Pooled blocks fit under the global cap (1000) with the 400 charged, no more.
        assert!(acc.pool(600, c.global_cap_bytes));
        assert!(!acc.pool(1, c.global_cap_bytes));
        let err = acc.admit(&c, Caller::new(20), ask(1), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::GlobalCap);
        acc.unpool(600);
        assert_eq!(acc.pooled(), 0);
        drop(charge);
        assert_eq!(acc.total(), Usage::default());
    }

    #[test]
    fn default_caps_follow_memory() {
        let c = EngineConfig::for_memory(MemInfo {
            total: 8 << 30,
            available: 4 << 30,
        });
        assert_eq!(c.global_cap_bytes, 3 << 30);
        assert!(c.per_caller_cap_bytes < c.global_cap_bytes);
        let c = EngineConfig::for_memory(MemInfo {
            total: 8 << 30,
            available: 8 << 30,
        });
        assert_eq!(c.global_cap_bytes, 4 << 30);
    }
}
