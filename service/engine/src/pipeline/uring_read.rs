//! Direct reads through io_uring: a reader thread splits each read into aligned pieces and
//! keeps them all in flight at once, instead of one `pread` per thread.

use std::cell::RefCell;
use std::io;
use std::sync::OnceLock;
use std::time::Instant;

use super::plan::Source;
use super::tally::Tally;
use crate::stats::FallbackKind;
use crate::uring::{ReadOp, Ring};

/// Reads in flight per reader thread.
const DEPTH: u32 = 4;
/// Reads are not split below this size: smaller pieces cost more in requests than they win.
const MIN_PIECE: u64 = 128 << 10;
/// Largest single read (the SQE length is 32 bits).
const MAX_PIECE: u64 = 1 << 30;

thread_local! {
    /// A thread keeps its ring for its lifetime: the engine's workers from load to load, a
    /// load's own thread (a binder thread of the service) across the loads it runs.
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// Why io_uring cannot be used in this process, once a ring failed to set up.
static UNAVAILABLE: OnceLock<String> = OnceLock::new();

/// Reads like `read::read_full` for a direct source, into all of `dst` from file `offset`.
/// `None`: io_uring is not usable here (reported as a fallback); the caller reads with
/// `pread` from the start.
pub(super) fn read_full(
    tally: &Tally,
    src: &Source,
    dst: &mut [u8],
    offset: u64,
) -> Option<io::Result<u64>> {
    if let Some(why) = UNAVAILABLE.get() {
        tally.add_fallback(FallbackKind::IoEngine, why.clone());
        return None;
    }
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match Ring::new(DEPTH) {
                Ok(ring) => *slot = Some(ring),
                Err(e) => {
                    let why = format!(
                        "io_uring is not available here ({e}; kernel.io_uring_disabled or the \
                         SELinux policy deny it): reads used pread"
                    );
                    let _ = UNAVAILABLE.set(why.clone());
                    tally.add_fallback(FallbackKind::IoEngine, why);
                    return None;
                }
            }
        }
        let ring = slot.as_mut()?;
        let align = src.align();
        let len = dst.len() as u64;
        let mut done = 0u64;
        'batches: while done < len {
            let rest = len - done;
            let pieces = rest.div_ceil(MIN_PIECE).clamp(1, ring.depth() as u64);
            let piece = rest
                .div_ceil(pieces)
                .div_ceil(align)
                .saturating_mul(align)
                .min(MAX_PIECE / align * align) as usize;
            // Disjoint pieces of what is left, at most `depth` of them.
            let mut ops = Vec::with_capacity(ring.depth());
            let mut at = offset + done;
            for buf in dst[done as usize..].chunks_mut(piece).take(ring.depth()) {
                let piece_len = buf.len() as u64;
                ops.push(ReadOp { buf, offset: at });
                at += piece_len;
            }
            let start = Instant::now();
            let results = match ring.read_all(src.fd(), &mut ops) {
                Ok(results) => results,
                Err(e) => {
                    // The ring itself failed: drop it and let pread read everything again.
                    *slot = None;
                    tally.add_fallback(
                        FallbackKind::IoEngine,
                        format!("io_uring failed ({e}): the read was repeated with pread"),
                    );
                    return None;
                }
            };
            tally.note_io(start, Instant::now());
            for (op, result) in ops.iter().zip(results) {
                match result {
                    Ok(n) if n == op.buf.len() => done += n as u64,
                    Ok(n) => {
                        done += n as u64;
                        // Nothing, or an unaligned tail: end of file. Otherwise the device
                        // returned part: read on from there.
                        if n == 0 || done % src.offset_align != 0 {
                            return Some(Ok(done));
                        }
                        continue 'batches;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue 'batches,
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        Some(Ok(done))
    })
}
