//! Validation of a request and the read plan: sources, the buffer size, and chunks.
//! Everything here runs before any allocation.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::digests::{DigestPlan, Span};
use crate::digest::GROUP;
use crate::error::{load_err, LoadError};
use crate::request::{IoMode, LoadRequest, Segment, Tunables};
use crate::stats::{FallbackKind, LoadStats};
use dmaload_abi::file::OpenFlags;
use dmaload_abi::statx::{file_facts, FileFacts};
use dmaload_abi::system::{cpu_count, page_size};

/// Longest debug name accepted.
pub(crate) const MAX_NAME_LEN: usize = LoadRequest::MAX_NAME_BYTES;

/// One of the request's files, checked and described.
#[derive(Debug)]
pub(crate) struct Source {
    fd: OwnedFd,
    /// Reads are direct: the fd carries O_DIRECT and its file system supports it.
    pub(crate) direct: bool,
    /// Direct-I/O memory alignment (1 when buffered).
    pub(crate) mem_align: u64,
    /// Direct-I/O offset/length alignment (1 when buffered).
    pub(crate) offset_align: u64,
    /// First file byte the segments read.
    pub(crate) read_start: u64,
    /// The file must stay at least this long until the load ends (the end of the furthest
    /// segment).
    pub(crate) required_end: u64,
}

impl Source {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Alignment satisfying both memory and offset constraints (powers of two).
    pub(crate) fn align(&self) -> u64 {
        self.mem_align.max(self.offset_align)
    }
}

#[cfg(test)]
impl Source {
    /// A source over /dev/null, direct with ext4's 4 KiB alignment or buffered.
    pub(crate) fn for_tests(direct: bool) -> Source {
        let align = if direct { 4096 } else { 1 };
        Source {
            fd: std::fs::File::open("/dev/null").expect("/dev/null").into(),
            direct,
            mem_align: align,
            offset_align: align,
            read_start: 0,
            required_end: u64::MAX,
        }
    }
}

/// A piece of one segment (or of a run of segments that continue each other, when the
/// request asks for no digest), read as one unit by one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The file: an index into [`Plan::sources`].
    pub(crate) source: usize,
    /// The segment (the run's first, when segments are read as runs).
    pub(crate) segment: usize,
    pub(crate) file_offset: u64,
    pub(crate) len: u64,
    pub(crate) buffer_offset: u64,
}

/// A request's tunables with the defaults applied and bounded: what the plan runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedTunables {
    pub(crate) gather_size: u64,
    pub(crate) chunk_size: u64,
    pub(crate) reader_threads: usize,
    pub(crate) populate_threads: usize,
    pub(crate) bounce_buffers: usize,
    /// Readers use io_uring (set from the engine configuration).
    pub(crate) io_uring: bool,
    /// udmabuf memory may come from the hugetlb pool (set from the engine configuration).
    pub(crate) hugetlb: bool,
}

/// A validated request.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The request's files, in its order.
    pub(crate) sources: Vec<Source>,
    /// Sorted by buffer offset.
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) buffer_size: u64,
    pub(crate) file_bytes: u64,
    pub(crate) tunables: ResolvedTunables,
    /// What is digested of each segment.
    pub(crate) digests: DigestPlan,
}

fn pick(value: u64, default: u64) -> u64 {
    if value == 0 {
        default
    } else {
        value
    }
}

pub(crate) fn resolve_tunables(
    t: &Tunables,
    defaults: &Tunables,
) -> Result<ResolvedTunables, LoadError> {
    let page = page_size();
    let cpus = u64::from(cpu_count());
    let gather_size = pick(
        t.gather_size,
        pick(defaults.gather_size, Tunables::DEFAULT_GATHER_SIZE),
    );
    let chunk_size = pick(
        t.chunk_size,
        pick(defaults.chunk_size, Tunables::DEFAULT_CHUNK_SIZE),
    );
    let reader_threads = pick(
        u64::from(t.reader_threads),
        pick(u64::from(defaults.reader_threads), (2 * cpus).clamp(2, 8)),
    );
    let populate_threads = pick(
        u64::from(t.populate_threads),
        pick(u64::from(defaults.populate_threads), cpus.clamp(1, 4)),
    );
    let bounce_buffers = pick(
        u64::from(t.bounce_buffers),
        pick(u64::from(defaults.bounce_buffers), 4),
    );
    if gather_size % page != 0 || !((1 << 20)..=(64 << 30)).contains(&gather_size) {
        return Err(load_err!(
            InvalidArgument,
            "gather_size {gather_size} must be a multiple of {page} between 1 MiB and 64 GiB"
        ));
    }
    if chunk_size % page != 0 || !((64 << 10)..=(256 << 20)).contains(&chunk_size) {
        return Err(load_err!(
            InvalidArgument,
            "chunk_size {chunk_size} must be a multiple of {page} between 64 KiB and 256 MiB"
        ));
    }
    let max = u64::from(Tunables::MAX_THREADS);
    if reader_threads > max || populate_threads > max {
        return Err(load_err!(
            InvalidArgument,
            "thread counts must be at most {max}"
        ));
    }
    if bounce_buffers > 256 || bounce_buffers * chunk_size > (1 << 30) {
        return Err(load_err!(
            InvalidArgument,
            "bounce_buffers × chunk_size must stay within 1 GiB (got {bounce_buffers} × {chunk_size})"
        ));
    }
    Ok(ResolvedTunables {
        gather_size,
        chunk_size,
        reader_threads: reader_threads as usize,
        populate_threads: populate_threads as usize,
        bounce_buffers: bounce_buffers as usize,
        io_uring: false,
        hugetlb: false,
    })
}

/// Checks a caller fd: open, readable, not `O_PATH`, a regular file.
fn check_file(index: usize, fd: BorrowedFd<'_>) -> Result<(OpenFlags, FileFacts), LoadError> {
    let flags = OpenFlags::of(fd).map_err(|e| {
        load_err!(
            BadFd,
            "file {index}: the fd is not open ({e}); pass an open file"
        )
    })?;
    if flags.is_path_only() {
        return Err(load_err!(
            BadFd,
            "file {index}: the fd is O_PATH; open the file for reading (O_RDONLY)"
        ));
    }
    if !flags.readable() {
        return Err(load_err!(
            BadFd,
            "file {index}: the fd is not open for reading; open it O_RDONLY"
        ));
    }
    let facts =
        file_facts(fd).map_err(|e| load_err!(BadFd, "file {index}: cannot stat the fd ({e})"))?;
    if !facts.is_regular() {
        return Err(load_err!(
            BadFd,
            "file {index}: not a regular file (mode {:o}); pass a regular file",
            facts.mode & libc::S_IFMT
        ));
    }
    Ok((flags, facts))
}

/// How one file is read: direct when its fd allows it and the request wants it.
fn read_mode(
    index: usize,
    flags: OpenFlags,
    facts: &FileFacts,
    io_mode: IoMode,
    stats: &mut LoadStats,
) -> Result<(bool, u64, u64), LoadError> {
    let wants_direct = io_mode != IoMode::Buffered;
    let dio = facts.dio_offset_align.zip(facts.dio_mem_align);
    let direct = match (flags.direct(), dio) {
        (true, Some(_)) => {
            if io_mode == IoMode::Buffered {
                stats.add_fallback(
                    FallbackKind::BufferedIo,
                    "io_mode buffered, but the fd was opened with O_DIRECT: read direct",
                );
            }
            true
        }
        (true, None) => {
            stats.add_fallback(
                FallbackKind::BufferedIo,
                "the file system reports no direct I/O support (statx DIOALIGN): read buffered",
            );
            false
        }
        (false, _) => {
            if wants_direct {
                let reason = if io_mode == IoMode::Direct {
                    "io_mode direct, but the fd was not opened with O_DIRECT (the service never \
                     changes a caller's flags): read buffered; open with O_DIRECT"
                } else {
                    "the fd was not opened with O_DIRECT: read buffered"
                };
                stats.add_fallback(FallbackKind::BufferedIo, reason);
            }
            false
        }
    };
    let (mem_align, offset_align) = match (direct, dio) {
        (true, Some((off, mem))) => (u64::from(mem).max(1), u64::from(off).max(1)),
        _ => (1, 1),
    };
    if !mem_align.is_power_of_two() || !offset_align.is_power_of_two() {
        return Err(load_err!(
            Internal,
            "file {index}: odd direct-I/O alignment {mem_align}/{offset_align}"
        ));
    }
    Ok((direct, mem_align, offset_align))
}

/// Request limits the engine configuration sets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLimits {
    pub(crate) max_segments: usize,
    pub(crate) max_files: usize,
}

/// One segment as the plan checks it: (buffer offset, length, segment index, file offset,
/// file index).
type SegmentSpan = (u64, u64, usize, u64, usize);

/// The first byte and the end a file's segments read; `None` when no segment reads it.
type FileExtent = Option<(u64, u64)>;

/// Validates `req` and plans the reads. Consumes the request's fds into the plan. Every file
/// is checked once (flags, statx), every segment against its file's size.
pub(crate) fn plan(
    req: LoadRequest,
    defaults: &Tunables,
    limits: RequestLimits,
    stats: &mut LoadStats,
) -> Result<Plan, LoadError> {
    check_shape(&req, limits)?;
    let mut tunables = resolve_tunables(&req.tunables, defaults)?;
    let mut facts = Vec::with_capacity(req.files.len());
    let mut modes = Vec::with_capacity(req.files.len());
    for (index, fd) in req.files.iter().enumerate() {
        let (flags, file) = check_file(index, fd.as_fd())?;
        modes.push(read_mode(index, flags, &file, req.io_mode, stats)?);
        facts.push(file);
    }
    let (mut spans, extents) = measure_segments(&req.segments, &facts)?;
    let segments: Vec<Span> = {
        let mut by_index = spans.clone();
        by_index.sort_unstable_by_key(|s| s.2);
        by_index
            .iter()
            .map(|&(buffer_offset, len, _, file_offset, file)| Span {
                file,
                file_offset,
                len,
                buffer_offset,
            })
            .collect()
    };
    let digests = DigestPlan::new(
        &req.digests,
        req.expected,
        &segments,
        |file| {
            let f = &facts[file];
            (req.files[file].as_fd(), f.size, f.verity)
        },
        stats,
    )?;
    let mut sources = Vec::with_capacity(req.files.len());
    for (index, ((fd, (direct, mem_align, offset_align)), extent)) in
        req.files.into_iter().zip(modes).zip(extents).enumerate()
    {
        // A file no segment reads is a caller's mistake, and an fd held for nothing.
        let Some((read_start, required_end)) = extent else {
            return Err(load_err!(
                BadSegments,
                "file {index} is read by no segment; send only the files the segments read"
            ));
        };
        sources.push(Source {
            fd,
            direct,
            mem_align,
            offset_align,
            read_start,
            required_end,
        });
    }
    spans.sort_unstable();
    check_overlaps(&spans)?;
    let page = page_size();
    let end = spans.iter().map(|s| s.0 + s.1).max().unwrap_or(0);
    let buffer_size = end.div_ceil(page) * page;
    let file_bytes = spans.iter().map(|s| s.1).sum();
    // A reader hashes the fs-verity groups (512 KiB) of what it read: chunks of segments
    // whose fs-verity digest is computed hold whole groups, so their cuts fall at multiples
    // of a group-rounded chunk size from the segment's start.
    if (0..req.segments.len()).any(|s| digests.computes_verity(s)) {
        tunables.chunk_size = tunables.chunk_size.div_ceil(GROUP) * GROUP;
    }
    let chunks = cut_chunks(&spans, &digests, tunables.chunk_size);
    Ok(Plan {
        sources,
        chunks,
        buffer_size,
        file_bytes,
        tunables,
        digests,
    })
}

/// The request's name and its counts of segments and files, before any file is looked at.
fn check_shape(req: &LoadRequest, limits: RequestLimits) -> Result<(), LoadError> {
    if req.name.len() > MAX_NAME_LEN || req.name.contains('\0') {
        return Err(load_err!(
            InvalidArgument,
            "name must be at most {MAX_NAME_LEN} bytes without NUL characters"
        ));
    }
    if req.segments.is_empty() {
        return Err(load_err!(
            BadSegments,
            "no segments; pass at least one file segment"
        ));
    }
    if req.segments.len() > limits.max_segments {
        return Err(load_err!(
            BadSegments,
            "{} segments exceed the limit of {}; split the load",
            req.segments.len(),
            limits.max_segments
        ));
    }
    if req.files.len() > limits.max_files {
        return Err(load_err!(
            TooManyFiles,
            "{} files exceed the limit of {}; split the load",
            req.files.len(),
            limits.max_files
        ));
    }
    Ok(())
}

/// Every segment against its file's size: its length ("to the end" resolved) and where it
/// lands, in request order; and per file, the first byte and the end its segments read
/// (`None`: no segment reads it).
fn measure_segments(
    segments: &[Segment],
    facts: &[FileFacts],
) -> Result<(Vec<SegmentSpan>, Vec<FileExtent>), LoadError> {
    let mut extents: Vec<FileExtent> = vec![None; facts.len()];
    let mut spans = Vec::with_capacity(segments.len());
    for (index, seg) in segments.iter().enumerate() {
        let Some(file) = facts.get(seg.file) else {
            return Err(load_err!(
                BadSegments,
                "segment {index} names file {} but the request has {} files",
                seg.file,
                facts.len()
            ));
        };
        let length = if seg.length == 0 {
            if seg.file_offset >= file.size {
                return Err(load_err!(
                    Range,
                    "segment {index}: offset {} is at or past the end of the file ({} bytes); \
                     nothing to load",
                    seg.file_offset,
                    file.size
                ));
            }
            file.size - seg.file_offset
        } else {
            seg.length
        };
        let Some(file_end) = seg.file_offset.checked_add(length) else {
            return Err(load_err!(
                Range,
                "segment {index}: offset {} + length {length} overflows",
                seg.file_offset
            ));
        };
        if file_end > file.size {
            return Err(load_err!(
                Range,
                "segment {index}: bytes {}..{file_end} lie past the end of the file ({} bytes)",
                seg.file_offset,
                file.size
            ));
        }
        if seg
            .buffer_offset
            .checked_add(length)
            .map_or(true, |end| end > i64::MAX as u64)
        {
            return Err(load_err!(
                BadSegments,
                "segment {index}: buffer offset {} + length {length} overflows",
                seg.buffer_offset
            ));
        }
        let e = &mut extents[seg.file];
        *e = Some(e.map_or((seg.file_offset, file_end), |(start, end)| {
            (start.min(seg.file_offset), end.max(file_end))
        }));
        spans.push((seg.buffer_offset, length, index, seg.file_offset, seg.file));
    }
    Ok((spans, extents))
}

/// Segments (sorted by buffer offset) must not share a buffer byte.
fn check_overlaps(spans: &[SegmentSpan]) -> Result<(), LoadError> {
    for pair in spans.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.0 + a.1 > b.0 {
            return Err(load_err!(
                BadSegments,
                "segments {} and {} overlap in the buffer (bytes {}..{} and {}..{})",
                a.2,
                b.2,
                a.0,
                a.0 + a.1,
                b.0,
                b.0 + b.1
            ));
        }
    }
    Ok(())
}

/// The reads: segments (sorted by buffer offset) cut into chunks of at most `chunk_size`.
fn cut_chunks(spans: &[SegmentSpan], digests: &DigestPlan, chunk_size: u64) -> Vec<Chunk> {
    // Segments that continue each other in the file and in the buffer are read as one run:
    // a file split into thousands of adjacent segments reads in chunk_size pieces. Digests
    // are per segment: then every segment is a run of its own.
    // (buffer offset, length, file offset, file, segment)
    let mut runs: Vec<(u64, u64, u64, usize, usize)> = Vec::new();
    for &(buffer_offset, length, segment, file_offset, source) in spans {
        match runs.last_mut() {
            Some(run)
                if digests.is_empty()
                    && run.3 == source
                    && run.0 + run.1 == buffer_offset
                    && run.2 + run.1 == file_offset =>
            {
                run.1 += length;
            }
            _ => runs.push((buffer_offset, length, file_offset, source, segment)),
        }
    }
    let mut chunks = Vec::new();
    for (buffer_offset, length, file_offset, source, segment) in runs {
        // A segment whose fs-verity digest is computed is cut at multiples of chunk_size
        // from its start (whole groups per chunk); else at multiples of chunk_size in the
        // file, so that inner chunks stay aligned.
        let origin = if digests.computes_verity(segment) {
            file_offset
        } else {
            0
        };
        let mut at = file_offset;
        let end = file_offset + length;
        while at < end {
            let next = origin
                .saturating_add(((at - origin) / chunk_size + 1).saturating_mul(chunk_size))
                .min(end);
            chunks.push(Chunk {
                source,
                segment,
                file_offset: at,
                len: next - at,
                buffer_offset: buffer_offset + (at - file_offset),
            });
            at = next;
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Segment;

    fn request_of(len: usize, segments: Vec<Segment>) -> LoadRequest {
        let path = std::env::temp_dir().join(format!(
            "dmaload-plan-{}-{}",
            std::process::id(),
            segments.len()
        ));
        std::fs::write(&path, vec![7u8; len]).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        let mut req = LoadRequest::whole_file(file.into(), "plan");
        req.segments = segments;
        req
    }

    fn planned(req: LoadRequest) -> Plan {
        let limits = RequestLimits {
            max_segments: 100_000,
            max_files: 4,
        };
        let tunables = Tunables {
            chunk_size: 1 << 20,
            ..Tunables::default()
        };
        plan(req, &tunables, limits, &mut LoadStats::default()).expect("plan")
    }

    #[test]
    fn adjacent_segments_are_read_as_one_run() {
        let seg = |i: u64, at: u64| Segment {
            file: 0,
            file_offset: i * 4096,
            length: 4096,
            buffer_offset: at,
        };
        // 10,000 pieces of 4 KiB in file order: chunks of chunk_size, not 10,000 reads.
        let count = 10_000u64;
        let p = planned(request_of(
            (count * 4096) as usize,
            (0..count).map(|i| seg(i, i * 4096)).collect(),
        ));
        assert_eq!(p.chunks.len(), (count * 4096).div_ceil(1 << 20) as usize);
        assert_eq!(p.file_bytes, count * 4096);
        assert_eq!(p.sources.len(), 1);
        // Reversed in the buffer: nothing continues its neighbour, every piece is a read.
        let p = planned(request_of(
            (count * 4096) as usize,
            (0..count).map(|i| seg(i, (count - 1 - i) * 4096)).collect(),
        ));
        assert_eq!(p.chunks.len(), count as usize);
        // A gap in the buffer or in the file ends a run.
        let p = planned(request_of(
            4 * 4096,
            vec![seg(0, 0), seg(1, 4096), seg(2, 3 * 4096), seg(3, 4 * 4096)],
        ));
        assert_eq!(p.chunks.len(), 2);
    }

    #[test]
    fn digests_read_every_segment_on_its_own_and_verity_cuts_whole_groups() {
        use dmaload_abi::digest::DigestAlgorithm;
        let seg = |file_offset: u64, length: u64, buffer_offset: u64| Segment {
            file: 0,
            file_offset,
            length,
            buffer_offset,
        };
        let segments = vec![
            seg(0, 4096, 0),
            seg(4096, 4096, 4096),
            seg(8195, 3 << 20, 1 << 20),
        ];
        // SHA-256 only: adjacent segments are no longer one run; chunks stay file-aligned.
        let req = request_of(4 << 20, segments.clone()).with_digest(DigestAlgorithm::Sha256);
        let p = planned(req);
        assert_eq!(p.tunables.chunk_size, 1 << 20);
        assert_eq!(p.chunks[0].segment, 0);
        assert_eq!(p.chunks[1].segment, 1);
        assert_eq!(p.chunks[2].file_offset, 8195);
        assert_eq!(
            p.chunks[3].file_offset,
            1 << 20,
            "cut at a multiple in the file"
        );
        assert!(p.digests.sequential() && !p.digests.computes_verity(2));
        // fs-verity: cuts at multiples of the group-rounded chunk size from each segment's
        // start, whatever the file's alignment.
        let tunables = Tunables {
            chunk_size: 640 << 10,
            ..Tunables::default()
        };
        let req = request_of(4 << 20, segments)
            .with_digest(DigestAlgorithm::FsVerity)
            .with_tunables(tunables);
        let limits = RequestLimits {
            max_segments: 10,
            max_files: 1,
        };
        let p = plan(req, &Tunables::default(), limits, &mut LoadStats::default()).expect("plan");
        assert_eq!(
            p.tunables.chunk_size,
            1 << 20,
            "640 KiB rounded up to whole 512 KiB groups"
        );
        let third: Vec<u64> = p
            .chunks
            .iter()
            .filter(|c| c.segment == 2)
            .map(|c| c.file_offset - 8195)
            .collect();
        assert_eq!(third, [0, 1 << 20, 2 << 20]);
        assert!(p.digests.computes_verity(2) && !p.digests.sequential());
    }
}
