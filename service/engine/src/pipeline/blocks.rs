//! Bounce blocks, and the few the engine keeps between loads. Fresh anonymous memory is
//! faulted in and zeroed on first touch, which costs about as much as the allocation a load
//! tries to hide (on a slow-CPU device a ring of 8 MiB blocks costs tens of milliseconds per
//! load), so blocks a load is done with are kept for the next one.
//!
//! A block in use is the working memory of its load, charged to the load's caller. A kept
//! block is the service's own memory: at most [`BlockPool::max_idle`] bytes, counted against
//! the global cap with everything charged (a block that would not fit is freed instead), and
//! freed when a load needs the room.

use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::limits::Accounting;
use dmaload_abi::mmap::Mapping;

/// Most bytes kept between loads.
const MAX_IDLE_BYTES: u64 = 96 << 20;

/// The engine's kept blocks.
#[derive(Debug)]
pub(crate) struct BlockPool {
    /// Oldest first.
    idle: Mutex<Vec<Mapping>>,
    max_idle: u64,
    global_cap: u64,
    accounting: Arc<Accounting>,
}

/// A bounce block; goes back to its pool when dropped.
#[derive(Debug)]
pub(crate) struct Block {
    mapping: Option<Mapping>,
    pool: Arc<BlockPool>,
}

impl BlockPool {
    /// Keeps at most 96 MiB, and no more than an eighth of the global cap.
    pub(crate) fn new(accounting: Arc<Accounting>, global_cap: u64) -> Arc<BlockPool> {
        Arc::new(BlockPool {
            idle: Mutex::new(Vec::new()),
            max_idle: MAX_IDLE_BYTES.min(global_cap / 8),
            global_cap,
            accounting,
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Mapping>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Most bytes kept between loads.
    pub(crate) fn max_idle(&self) -> u64 {
        self.max_idle
    }

    /// Bytes kept now.
    #[cfg(test)]
    pub(crate) fn idle_bytes(&self) -> u64 {
        self.idle().iter().map(|m| m.len() as u64).sum()
    }

    /// A block of exactly `len` bytes, a kept one when there is one. The caller reserved
    /// `len` bytes of working memory for it.
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> io::Result<Block> {
        let reused = {
            let mut idle = self.idle();
            idle.iter()
                .position(|m| m.len() == len)
                .map(|i| idle.remove(i))
        };
        let mapping = match reused {
            Some(mapping) => {
                self.accounting.unpool(len as u64);
                mapping
            }
            None => Mapping::anonymous(len)?,
        };
        Ok(Block {
            mapping: Some(mapping),
            pool: Arc::clone(self),
        })
    }

    /// Frees every kept block; returns the bytes freed.
    pub(crate) fn trim(&self) -> u64 {
        let freed: Vec<Mapping> = std::mem::take(&mut *self.idle());
        let bytes = freed.iter().map(|m| m.len() as u64).sum();
        self.accounting.unpool(bytes);
        bytes
    }

    fn keep(&self, mapping: Mapping) {
        let len = mapping.len() as u64;
        if len > self.max_idle {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut idle = self.idle();
            // Room for the newest: the oldest blocks go.
            let mut kept: u64 = idle.iter().map(|m| m.len() as u64).sum();
            while kept + len > self.max_idle && !idle.is_empty() {
                let old = idle.remove(0);
                kept -= old.len() as u64;
                evicted.push(old);
            }
            let freed: u64 = evicted.iter().map(|m| m.len() as u64).sum();
            self.accounting.unpool(freed);
            if self.accounting.pool(len, self.global_cap) {
                idle.push(mapping);
            } else {
                evicted.push(mapping);
            }
        }
        // Unmapping happens outside the lock.
        drop(evicted);
    }
}

impl Deref for Block {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        // Only `drop` takes the mapping out.
        self.mapping
            .as_ref()
            .unwrap_or_else(|| unreachable!("block used after drop"))
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut Mapping {
        self.mapping
            .as_mut()
            .unwrap_or_else(|| unreachable!("block used after drop"))
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(mapping) = self.mapping.take() {
            self.pool.keep(mapping);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_blocks_are_reused_bounded_and_counted_under_the_global_cap() {
        let accounting = Accounting::new();
        let pool = BlockPool::new(Arc::clone(&accounting), 8 << 20);
        assert_eq!(pool.max_idle(), 1 << 20);
        let a = pool.take(512 << 10).expect("block");
        let b = pool.take(512 << 10).expect("block");
        let c = pool.take(256 << 10).expect("block");
        drop((a, b));
        assert_eq!((pool.idle_bytes(), accounting.pooled()), (1 << 20, 1 << 20));
        // Over the 1 MiB bound: the oldest kept block goes.
        drop(c);
        assert_eq!(pool.idle_bytes(), (512 + 256) << 10);
        assert_eq!(accounting.pooled(), (512 + 256) << 10);
        let again = pool.take(256 << 10).expect("block");
        assert_eq!(accounting.pooled(), 512 << 10);
        drop(again);
        assert_eq!(pool.trim(), (512 + 256) << 10);
        assert_eq!((pool.idle_bytes(), accounting.pooled()), (0, 0));
        // A pool whose global cap is taken keeps nothing.
        let full = BlockPool::new(Arc::clone(&accounting), 8 << 20);
        assert!(accounting.pool(8 << 20, 8 << 20));
        drop(full.take(4096).expect("block"));
        assert_eq!(full.idle_bytes(), 0);
        accounting.unpool(8 << 20);
    }
}
