//! A load's digests: what the plan asks of each segment ([`DigestPlan`]), the state the
//! fill's steps share while they run ([`Digesting`]), and the check before the buffer is
//! handed out.
//!
//! Digests are computed from the bytes just read, never in a second pass over the buffer:
//! * fs-verity: the reader of a chunk hashes its groups right after the read
//!   ([`Digesting::after_read`]); the plan cuts chunks at multiples of
//!   [`GROUP`](crate::digest::GROUP) of their segment for that. The levels above are built
//!   at the end, from 32 bytes per 512 KiB.
//! * SHA-256 is sequential: one hash step at a time takes the next chunk in file order once
//!   its bytes are in ([`Sequence`]); the fills hold a chunk's bytes (a bounce block, or a
//!   range of the buffer still in the service's mapping) until it is hashed, so the readers
//!   run ahead of the hasher by a bounded window (the dma-heap ring; the gathers in flight).
//! * A segment that is a whole file with fs-verity on takes the kernel's measurement
//!   (`FS_IOC_MEASURE_VERITY`) when its tree is the one `fsverity digest` describes (SHA-256,
//!   4 KiB blocks, no salt): the kernel checks every page the reads return against it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::plan::Chunk;
use crate::digest::{group_count, verity_digest, verity_groups, Hash, Sha256, GROUP};
use crate::error::{load_err, LoadError};
use crate::stats::{FallbackKind, LoadStats};
use dmaload_abi::digest::{Digest, DigestAlgorithm, DIGEST_BYTES};
use dmaload_abi::verity;

/// How a segment's fs-verity digest is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verity {
    /// Not asked for.
    No,
    /// Computed from the bytes read.
    Compute,
    /// The kernel's measurement of the segment's file.
    Kernel(Hash),
}

/// What is digested of one segment, and where it lies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentDigests {
    pub(crate) sha256: bool,
    pub(crate) verity: Verity,
    pub(crate) file_offset: u64,
    pub(crate) len: u64,
    pub(crate) buffer_offset: u64,
}

/// The plan's digests: one entry per segment (none when the request asks for no digest).
#[derive(Debug, Default)]
pub(crate) struct DigestPlan {
    pub(crate) segments: Vec<SegmentDigests>,
    pub(crate) expected: Vec<Digest>,
}

/// A segment of the request, as the plan resolved it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) file: usize,
    pub(crate) file_offset: u64,
    pub(crate) len: u64,
    pub(crate) buffer_offset: u64,
}

/// Working memory a running SHA-256 takes (ring's context, rounded up).
const SHA256_STATE_BYTES: u64 = 256;

impl DigestPlan {
    /// Decides every segment's digests: `asked` for all of them, plus what `expected` names.
    /// `file` gives a file's fd, size and whether it has fs-verity on. Checks `expected`:
    /// segments that exist, one digest per segment and algorithm.
    pub(crate) fn new<'f>(
        asked: &[DigestAlgorithm],
        expected: Vec<Digest>,
        spans: &[Span],
        file: impl Fn(usize) -> (BorrowedFd<'f>, u64, bool),
        stats: &mut LoadStats,
    ) -> Result<DigestPlan, LoadError> {
        if asked.is_empty() && expected.is_empty() {
            return Ok(DigestPlan::default());
        }
        // Sets, not lists: a request may name thousands of segments and digests.
        let asked: BTreeSet<DigestAlgorithm> = asked.iter().copied().collect();
        let mut seen = BTreeSet::new();
        for e in &expected {
            if e.segment >= spans.len() {
                return Err(load_err!(
                    InvalidArgument,
                    "an expected {} digest names segment {} but the request has {} segments",
                    e.algorithm,
                    e.segment,
                    spans.len()
                ));
            }
            if !seen.insert((e.segment, e.algorithm)) {
                return Err(load_err!(
                    InvalidArgument,
                    "segment {} has two expected {} digests; give one",
                    e.segment,
                    e.algorithm
                ));
            }
        }
        let wants = |segment: usize, algorithm: DigestAlgorithm| {
            asked.contains(&algorithm) || seen.contains(&(segment, algorithm))
        };
        let mut segments = Vec::with_capacity(spans.len());
        for (index, span) in spans.iter().enumerate() {
            let verity = if !wants(index, DigestAlgorithm::FsVerity) {
                Verity::No
            } else {
                let (fd, size, has_verity) = file(span.file);
                let whole = span.file_offset == 0 && span.len == size;
                match (whole && has_verity).then(|| measured(fd, size)) {
                    Some(Ok(hash)) => Verity::Kernel(hash),
                    Some(Err(why)) => {
                        stats.add_fallback(
                            FallbackKind::Digest,
                            format!(
                                "file {}: {why}: its fs-verity digest was computed",
                                span.file
                            ),
                        );
                        Verity::Compute
                    }
                    None => Verity::Compute,
                }
            };
            segments.push(SegmentDigests {
                sha256: wants(index, DigestAlgorithm::Sha256),
                verity,
                file_offset: span.file_offset,
                len: span.len,
                buffer_offset: span.buffer_offset,
            });
        }
        Ok(DigestPlan { segments, expected })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segment of `chunk` computes its fs-verity digest (chunks are cut for that).
    pub(crate) fn computes_verity(&self, segment: usize) -> bool {
        self.segments
            .get(segment)
            .is_some_and(|s| s.verity == Verity::Compute)
    }

    /// Some segment is hashed with SHA-256 (a hash step runs beside the readers).
    pub(crate) fn sequential(&self) -> bool {
        self.segments.iter().any(|s| s.sha256)
    }

    /// Memory the digests hold while the load runs: every computed fs-verity digest's group
    /// hashes and the levels built from them, a SHA-256 state, the results.
    pub(crate) fn working_bytes(&self) -> u64 {
        let per = DIGEST_BYTES as u64;
        self.segments
            .iter()
            .map(|s| {
                let groups = match s.verity {
                    Verity::Compute => group_count(s.len) as u64,
                    _ => 0,
                };
                // Each level above holds a 128th of the one below.
                let tree = (groups + groups.div_ceil(127)) * per;
                let sha = if s.sha256 { SHA256_STATE_BYTES } else { 0 };
                let results = u64::from(s.sha256) + u64::from(s.verity != Verity::No);
                tree + sha + results * per
            })
            .sum()
    }
}

/// The kernel's measurement of a verity file of `size` bytes, if its tree is SHA-256 over
/// 4 KiB blocks without salt (what dmaload computes); else why not.
fn measured(fd: BorrowedFd<'_>, size: u64) -> Result<Hash, String> {
    let d = verity::descriptor(fd).map_err(|e| format!("its fs-verity descriptor: {e}"))?;
    if (d.version, d.hash_algorithm, d.log_blocksize, d.salt_size)
        != (1, verity::HASH_ALG_SHA256 as u8, 12, 0)
        || d.data_size != size
    {
        return Err(format!(
            "its fs-verity tree is algorithm {}, blocks of 2^{}, {} bytes of salt (not SHA-256, \
             4 KiB, none)",
            d.hash_algorithm, d.log_blocksize, d.salt_size
        ));
    }
    let m = verity::measure(fd).map_err(|e| format!("FS_IOC_MEASURE_VERITY: {e}"))?;
    if m.algorithm != verity::HASH_ALG_SHA256 || m.digest.len() != DIGEST_BYTES {
        return Err(format!(
            "its measurement is algorithm {} of {} bytes",
            m.algorithm,
            m.digest.len()
        ));
    }
    let mut hash = [0u8; DIGEST_BYTES];
    hash.copy_from_slice(&m.digest);
    Ok(hash)
}

/// What the fill's steps share about the digests while the load runs.
#[derive(Debug)]
pub(crate) struct Digesting {
    segments: Vec<SegmentDigests>,
    /// The group hashes of every segment whose fs-verity digest is computed (empty for the
    /// others), each written by the reader of its chunk.
    groups: Vec<Mutex<Vec<Hash>>>,
    /// Finished SHA-256 values, per segment.
    sha256: Mutex<Vec<Option<Hash>>>,
    /// Time spent hashing, summed over threads.
    nanos: AtomicU64,
}

impl Digesting {
    /// Allocates what the digests hold (reserved as working memory by the admission).
    pub(crate) fn new(plan: &DigestPlan) -> Arc<Digesting> {
        let groups = plan
            .segments
            .iter()
            .map(|s| {
                let count = match s.verity {
                    Verity::Compute => group_count(s.len),
                    _ => 0,
                };
                Mutex::new(vec![[0u8; DIGEST_BYTES]; count])
            })
            .collect();
        Arc::new(Digesting {
            segments: plan.segments.clone(),
            groups,
            sha256: Mutex::new(vec![None; plan.segments.len()]),
            nanos: AtomicU64::new(0),
        })
    }

    /// `chunk`'s segment is hashed with SHA-256.
    pub(crate) fn sha256_of(&self, chunk: &Chunk) -> bool {
        self.segments.get(chunk.segment).is_some_and(|s| s.sha256)
    }

    /// `chunk`'s reader hashes its fs-verity groups.
    pub(crate) fn verity_of(&self, chunk: &Chunk) -> bool {
        self.segments
            .get(chunk.segment)
            .is_some_and(|s| s.verity == Verity::Compute)
    }

    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(ns, Ordering::Relaxed);
        out
    }

    /// A reader read `chunk` into `bytes` (the chunk's bytes, still in this thread's cache):
    /// hashes its fs-verity groups when its segment's digest is computed.
    pub(crate) fn after_read(&self, chunk: &Chunk, bytes: &[u8]) -> Result<(), LoadError> {
        let Some(seg) = self.segments.get(chunk.segment) else {
            return Ok(());
        };
        if seg.verity != Verity::Compute {
            return Ok(());
        }
        let offset = chunk.file_offset - seg.file_offset;
        if offset % GROUP != 0 || bytes.len() as u64 != chunk.len {
            return Err(load_err!(
                Internal,
                "chunk {chunk:?} is not cut for fs-verity groups of segment {}",
                chunk.segment
            ));
        }
        let first = (offset / GROUP) as usize;
        for (i, group) in bytes.chunks(GROUP as usize).enumerate() {
            let mut hash = [[0u8; DIGEST_BYTES]];
            let at = offset + i as u64 * GROUP;
            self.timed(|| verity_groups(seg.len, at, group, &mut hash));
            // One short lock per 512 KiB hashed: readers of other chunks hardly meet here.
            let mut groups = self.groups[chunk.segment]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let slot = groups.get_mut(first + i).ok_or_else(|| {
                load_err!(
                    Internal,
                    "chunk {chunk:?} lies outside segment {}",
                    chunk.segment
                )
            })?;
            *slot = hash[0];
        }
        Ok(())
    }

    /// Every digest the request asked for, by segment and algorithm, checked against the
    /// expected ones: `DIGEST_MISMATCH` when one differs. Also the time spent on digests.
    pub(crate) fn finish(&self, plan: &DigestPlan) -> Result<(Vec<Digest>, Duration), LoadError> {
        let sha256 = self
            .sha256
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut digests = Vec::new();
        for (segment, seg) in self.segments.iter().enumerate() {
            if seg.sha256 {
                let value = sha256[segment].ok_or_else(|| {
                    load_err!(Internal, "segment {segment} was not hashed to its end")
                })?;
                digests.push(Digest {
                    segment,
                    algorithm: DigestAlgorithm::Sha256,
                    value,
                    from_kernel: false,
                });
            }
            let (value, from_kernel) = match seg.verity {
                Verity::No => continue,
                Verity::Kernel(value) => (value, true),
                Verity::Compute => {
                    let groups = self.groups[segment]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    (self.timed(|| verity_digest(seg.len, &groups)), false)
                }
            };
            digests.push(Digest {
                segment,
                algorithm: DigestAlgorithm::FsVerity,
                value,
                from_kernel,
            });
        }
        let spent = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
        check(&plan.expected, &digests)?;
        Ok((digests, spent))
    }
}

/// `DIGEST_MISMATCH` naming the first expected digest that differs from the computed one.
fn check(expected: &[Digest], computed: &[Digest]) -> Result<(), LoadError> {
    let computed: BTreeMap<(usize, DigestAlgorithm), &Digest> = computed
        .iter()
        .map(|d| ((d.segment, d.algorithm), d))
        .collect();
    let mut differ = expected.iter().filter_map(|e| {
        let got = computed.get(&(e.segment, e.algorithm))?;
        (got.value != e.value).then_some((e, *got))
    });
    let Some((e, got)) = differ.next() else {
        return Ok(());
    };
    let more = differ.count();
    let source = if got.from_kernel {
        "the kernel measured"
    } else {
        "the load computed"
    };
    Err(load_err!(
        DigestMismatch,
        "segment {}: {source} {} {}, the request expected {}{}; nothing was handed out: the \
         file is not the one expected",
        e.segment,
        e.algorithm,
        got.hex(),
        e.hex(),
        if more > 0 {
            format!(" ({more} more expected digests differ)")
        } else {
            String::new()
        }
    ))
}

/// The SHA-256 hash steps, one at a time in chunk order; kept in a fill's state.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// The chunk to hash next (past the last when done).
    next: usize,
    chunks: usize,
    running: bool,
    /// The running hash of `next`'s segment, between its chunks (boxed: steps stay small).
    state: Option<Box<Sha256>>,
}

/// A hash step: chunk `index`, with the running hash of its segment.
pub(crate) struct HashStep {
    pub(crate) index: usize,
    state: Box<Sha256>,
}

impl HashStep {
    /// Feeds the chunk's bytes.
    pub(crate) fn run(&mut self, bytes: &[u8], digesting: &Digesting) {
        digesting.timed(|| self.state.update(bytes));
    }
}

impl Sequence {
    /// The hash steps over `chunks` (a fill's chunks, in buffer order: each segment's chunks
    /// follow each other in file order).
    pub(crate) fn new(chunks: &[Chunk], digesting: &Digesting) -> Sequence {
        let mut s = Sequence {
            next: 0,
            chunks: chunks.len(),
            running: false,
            state: None,
        };
        s.skip(chunks, digesting);
        s
    }

    fn skip(&mut self, chunks: &[Chunk], digesting: &Digesting) {
        while self.next < self.chunks && !digesting.sha256_of(&chunks[self.next]) {
            self.next += 1;
        }
    }

    /// The next hash step, when none runs and the next chunk's bytes are `ready`.
    pub(crate) fn take(&mut self, ready: impl FnOnce(usize) -> bool) -> Option<HashStep> {
        if self.running || self.next >= self.chunks || !ready(self.next) {
            return None;
        }
        self.running = true;
        Some(HashStep {
            index: self.next,
            state: self.state.take().unwrap_or_else(|| Box::new(Sha256::new())),
        })
    }

    /// A hash step ran: a segment whose last chunk it was has its SHA-256.
    pub(crate) fn done(&mut self, step: HashStep, chunks: &[Chunk], digesting: &Digesting) {
        self.running = false;
        let segment = chunks[step.index].segment;
        self.next = step.index + 1;
        self.skip(chunks, digesting);
        if chunks.get(self.next).is_some_and(|c| c.segment == segment) {
            self.state = Some(step.state);
        } else {
            let value = (*step.state).finish();
            let mut done = digesting.sha256.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = done.get_mut(segment) {
                *slot = Some(value);
            }
        }
    }

    /// Every chunk that needs it was hashed.
    pub(crate) fn finished(&self) -> bool {
        !self.running && self.next >= self.chunks
    }
}
