//! Reading one chunk of a caller's file into buffer memory.
//!
//! Buffered fds are read straight into the destination, and their pages dropped afterwards.
//! `O_DIRECT` fds need every read aligned (statx DIOALIGN): the aligned body of a chunk goes
//! straight into the destination when the destination accepts direct I/O (memfd pages) and
//! is aligned; unaligned heads and tails, and whole chunks for destinations that do not
//! accept direct I/O (dma-heap mappings), go through an aligned bounce block.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use super::plan::{Chunk, Source};
use super::tally::Tally;
use crate::error::{load_err, LoadError};
use crate::stats::FallbackKind;
use dmaload_abi::file::{drop_cached, pread, RWF_DONTCACHE};
use dmaload_abi::mmap::{Mapping, Region};

fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Whether `RWF_DONTCACHE` works here: 0 unknown, 1 yes, 2 no (Linux < 6.14 or the file
/// system lacks it).
static DONTCACHE: AtomicU8 = AtomicU8::new(0);

/// Reads into all of `dst` from file `offset`: until it is full, end of file, or (direct) an
/// unaligned short read, which only happens at end of file. Returns the bytes read.
fn read_full(
    tally: &Tally,
    src: &Source,
    dst: &mut [u8],
    offset: u64,
    rwf: libc::c_int,
) -> io::Result<u64> {
    if tally.io_uring && src.direct && rwf == 0 {
        #[cfg(feature = "io-uring")]
        if let Some(result) = super::uring_read::read_full(tally, src, dst, offset) {
            return result;
        }
        #[cfg(not(feature = "io-uring"))]
        tally.add_fallback(
            FallbackKind::IoEngine,
            "this build has no io_uring support: reads used pread",
        );
    }
    let mut done = 0;
    while done < dst.len() {
        let start = Instant::now();
        let n = pread(src.fd(), &mut dst[done..], offset + done as u64, rwf)?;
        tally.note_io(start, Instant::now());
        if n == 0 {
            break;
        }
        done += n;
        if src.direct && done as u64 % src.offset_align != 0 {
            break;
        }
    }
    Ok(done as u64)
}

/// Claims the chunk's part of the buffer: this thread alone writes it until the region drops.
pub(crate) fn claim<'m>(dst: &'m Mapping, chunk: &Chunk) -> Result<Region<'m>, LoadError> {
    dst.claim(chunk.buffer_offset as usize, chunk.len as usize)
        .map_err(|e| {
            load_err!(
                Internal,
                "chunk {chunk:?} cannot be claimed in a buffer of {} bytes: {e}",
                dst.len()
            )
        })
}

fn io_error(chunk: &Chunk, at: u64, err: io::Error) -> LoadError {
    load_err!(
        Io,
        "reading file {} at offset {at} failed: {err}; check the storage and retry",
        chunk.source
    )
}

fn shrunk(chunk: &Chunk, src: &Source, at: u64) -> LoadError {
    load_err!(
        FileChanged,
        "file {}: it ended at byte {at} while {} bytes were expected; it was truncated \
         during the load: reload it once it is stable",
        chunk.source,
        src.required_end
    )
}

/// How much of a bounce block a direct read of a chunk into memory that accepts direct I/O
/// needs, as far as can be told before reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BounceNeed {
    /// Buffered, or aligned at both ends.
    None,
    /// Unaligned ends: at most two alignment blocks at a time.
    Edges,
    /// File and buffer offsets differ in alignment: the whole chunk goes through it.
    Whole,
}

/// What [`read_chunk`] will need for `chunk` (reads the kernel refuses into the buffer
/// memory are bounced whole as well, through whatever block the reader has).
pub(crate) fn bounce_need(src: &Source, chunk: &Chunk) -> BounceNeed {
    if !src.direct {
        return BounceNeed::None;
    }
    let a = src.align();
    let (off, end) = (chunk.file_offset, chunk.file_offset + chunk.len);
    let body_start = align_up(off, a).min(end);
    let body_end = align_down(end, a).max(body_start);
    // Mappings start page-aligned: the body's address is aligned when its buffer offset is.
    let body_at = chunk.buffer_offset + (body_start - off);
    let page = dmaload_abi::system::page_size();
    if src.mem_align > page || body_at % src.mem_align != 0 {
        return BounceNeed::Whole;
    }
    if body_start == body_end || body_start > off || end > body_end {
        return BounceNeed::Edges;
    }
    BounceNeed::None
}

/// Reads `chunk` into `dst` at the chunk's buffer offset. `dst_direct`: `dst` memory
/// accepts O_DIRECT. `bounce`: an aligned scratch block, needed for direct sources.
pub(crate) fn read_chunk(
    tally: &Tally,
    src: &Source,
    chunk: &Chunk,
    dst: &Mapping,
    dst_direct: bool,
    mut bounce: Option<&mut Mapping>,
) -> Result<(), LoadError> {
    if !src.direct {
        return read_buffered(tally, src, chunk, dst);
    }
    let mut region = claim(dst, chunk)?;
    let a = src.align();
    let (off, end) = (chunk.file_offset, chunk.file_offset + chunk.len);
    let body_start = align_up(off, a).min(end);
    let body_end = align_down(end, a).max(body_start);
    // The aligned body, as offsets in the chunk's region.
    let body = (body_start - off) as usize..(body_end - off) as usize;
    let dst_aligned = region[body.start..].as_ptr() as usize as u64 % src.mem_align == 0;
    if !(dst_direct && dst_aligned && !body.is_empty()) {
        if dst_direct && !body.is_empty() {
            tally.add_fallback(
                FallbackKind::BounceBlock,
                "file offset and buffer offset differ in alignment: segment read through a \
                 bounce block",
            );
        }
        return read_bounced(tally, src, chunk, off, end, &mut region, bounce);
    }
    if body_start > off {
        let bounce = bounce.as_deref_mut();
        read_bounced(tally, src, chunk, off, body_start, &mut region, bounce)?;
    }
    let body_len = body_end - body_start;
    match read_full(tally, src, &mut region[body], body_start, 0) {
        Ok(n) if n == body_len => {
            tally.bytes_direct.fetch_add(body_len, Ordering::Relaxed);
        }
        Ok(n) => {
            // Short: the file shrank (EOF) — or an unaligned EOF inside the body.
            return Err(shrunk(chunk, src, body_start + n));
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EFAULT) | Some(libc::EINVAL)) => {
            tally.add_fallback(
                FallbackKind::BounceBlock,
                format!("direct read into the buffer memory failed ({e}): bounced"),
            );
            let bounce = bounce.as_deref_mut();
            read_bounced(tally, src, chunk, body_start, body_end, &mut region, bounce)?;
        }
        Err(e) => return Err(io_error(chunk, body_start, e)),
    }
    if end > body_end {
        read_bounced(tally, src, chunk, body_end, end, &mut region, bounce)?;
    }
    Ok(())
}

/// Reads file bytes `[from, to)` of a direct source through `bounce` into `dst`, the
/// chunk's part of the buffer.
fn read_bounced(
    tally: &Tally,
    src: &Source,
    chunk: &Chunk,
    from: u64,
    to: u64,
    dst: &mut [u8],
    bounce: Option<&mut Mapping>,
) -> Result<(), LoadError> {
    let Some(bounce) = bounce else {
        return Err(load_err!(
            Internal,
            "segment {}: a direct read needs a bounce block and the load reserved none",
            chunk.source
        ));
    };
    let a = src.align();
    let cap = align_down(bounce.len() as u64, a);
    if cap == 0 {
        return Err(load_err!(
            Internal,
            "bounce block smaller than the alignment {a}"
        ));
    }
    let bounce = bounce.as_mut_slice();
    let mut at = from;
    while at < to {
        let window_start = align_down(at, a);
        let window_end = align_up(to, a).min(window_start + cap);
        let window = &mut bounce[..(window_end - window_start) as usize];
        let got = read_full(tally, src, window, window_start, 0)
            .map_err(|e| io_error(chunk, window_start, e))?;
        let want_end = to.min(window_end);
        if window_start + got < want_end {
            return Err(shrunk(chunk, src, window_start + got));
        }
        let copy_start = Instant::now();
        let from_window = (at - window_start) as usize..(want_end - window_start) as usize;
        let into_chunk = (at - chunk.file_offset) as usize..(want_end - chunk.file_offset) as usize;
        dst[into_chunk].copy_from_slice(&window[from_window]);
        tally.note_copy(copy_start);
        tally
            .bytes_direct
            .fetch_add(want_end - at, Ordering::Relaxed);
        tally
            .bytes_bounced
            .fetch_add(want_end - at, Ordering::Relaxed);
        at = want_end;
    }
    Ok(())
}

/// Reads a direct source's chunk wholly into `block` (aligned window), returning the offset
/// of the chunk's first byte in `block`. The dma-heap path copies it into the buffer later.
pub(crate) fn read_into_block(
    tally: &Tally,
    src: &Source,
    chunk: &Chunk,
    block: &mut Mapping,
) -> Result<usize, LoadError> {
    let a = src.align();
    let window_start = align_down(chunk.file_offset, a);
    let window_end = align_up(chunk.file_offset + chunk.len, a);
    if window_end - window_start > block.len() as u64 {
        return Err(load_err!(
            Internal,
            "bounce buffer too small for chunk {chunk:?}"
        ));
    }
    let window = &mut block.as_mut_slice()[..(window_end - window_start) as usize];
    let got = read_full(tally, src, window, window_start, 0)
        .map_err(|e| io_error(chunk, window_start, e))?;
    if window_start + got < chunk.file_offset + chunk.len {
        return Err(shrunk(chunk, src, window_start + got));
    }
    tally.bytes_direct.fetch_add(chunk.len, Ordering::Relaxed);
    tally.bytes_bounced.fetch_add(chunk.len, Ordering::Relaxed);
    Ok((chunk.file_offset - window_start) as usize)
}

/// Reads a buffered source's chunk straight into its part of `dst`, leaving no page cache
/// behind.
pub(crate) fn read_buffered(
    tally: &Tally,
    src: &Source,
    chunk: &Chunk,
    dst: &Mapping,
) -> Result<(), LoadError> {
    let mut region = claim(dst, chunk)?;
    let mut dontcache = DONTCACHE.load(Ordering::Relaxed) != 2;
    let got = loop {
        let rwf = if dontcache { RWF_DONTCACHE } else { 0 };
        match read_full(tally, src, &mut region, chunk.file_offset, rwf) {
            Err(e)
                if dontcache
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                    ) =>
            {
                DONTCACHE.store(2, Ordering::Relaxed);
                dontcache = false;
            }
            other => break other,
        }
    }
    .map_err(|e| io_error(chunk, chunk.file_offset, e))?;
    if dontcache {
        DONTCACHE.store(1, Ordering::Relaxed);
    }
    if got < chunk.len {
        return Err(shrunk(chunk, src, chunk.file_offset + got));
    }
    if !dontcache {
        // Advisory: the bytes are in the buffer already, so a failure only leaves cache.
        let _ = drop_cached(src.fd(), chunk.file_offset, chunk.len);
    }
    tally.bytes_buffered.fetch_add(chunk.len, Ordering::Relaxed);
    Ok(())
}
