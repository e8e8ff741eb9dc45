//! Bounce blocks kept between loads. Fresh anonymous memory is faulted in and zeroed on
//! first touch, which costs about as much as the allocation a load tries to hide (on a
//! slow-CPU device a ring of 8 MiB blocks costs tens of milliseconds per load). A few
//! blocks are therefore reused; at most `MAX_POOLED_BYTES` stay resident.

use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use dmaload_abi::mmap::Mapping;

const MAX_POOLED_BYTES: usize = 96 << 20;

static POOL: Mutex<Vec<Mapping>> = Mutex::new(Vec::new());

/// A bounce block; goes back to the pool when dropped.
#[derive(Debug)]
pub(crate) struct Block(Option<Mapping>);

/// A block of exactly `len` bytes, reused when one is pooled.
pub(crate) fn take(len: usize) -> io::Result<Block> {
    let reused = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.iter()
            .position(|m| m.len() == len)
            .map(|i| pool.swap_remove(i))
    };
    match reused {
        Some(mapping) => Ok(Block(Some(mapping))),
        None => Mapping::anonymous(len).map(|m| Block(Some(m))),
    }
}

impl Deref for Block {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        // Only `drop` takes the mapping out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("block used after drop"))
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut Mapping {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("block used after drop"))
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let Some(mapping) = self.0.take() else { return };
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let pooled: usize = pool.iter().map(|m| m.len()).sum();
        if pooled + mapping.len() <= MAX_POOLED_BYTES {
            pool.push(mapping);
        }
    }
}
