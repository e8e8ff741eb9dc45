//! Validation of a request and the read plan: sources, the buffer size, and chunks.
//! Everything here runs before any allocation.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{load_err, LoadError};
use crate::request::{IoMode, LoadRequest, Tunables};
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

/// A piece of one segment, read as one unit by one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The file: an index into [`Plan::sources`].
    pub(crate) source: usize,
    pub(crate) file_offset: u64,
    pub(crate) len: u64,
    pub(crate) buffer_offset: u64,
}

/// Tunables with defaults applied.
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

/// Validates `req` and plans the reads. Consumes the request's fds into the plan. Every file
/// is checked once (flags, statx), every segment against its file's size.
pub(crate) fn plan(
    req: LoadRequest,
    defaults: &Tunables,
    limits: RequestLimits,
    stats: &mut LoadStats,
) -> Result<Plan, LoadError> {
    if req.name.len() > MAX_NAME_LEN || req.name.contains('\0') {
        return Err(load_err!(
            InvalidArgument,
            "name must be at most {MAX_NAME_LEN} bytes without NUL characters"
        ));
    }
    let tunables = resolve_tunables(&req.tunables, defaults)?;
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
    // What each file must hold: the first byte and the end its segments read.
    let mut extent: Vec<Option<(u64, u64)>> = vec![None; req.files.len()];
    let mut facts = Vec::with_capacity(req.files.len());
    let mut sources = Vec::with_capacity(req.files.len());
    for (index, fd) in req.files.iter().enumerate() {
        let (flags, file) = check_file(index, fd.as_fd())?;
        let (direct, mem_align, offset_align) = read_mode(index, flags, &file, req.io_mode, stats)?;
        facts.push(file);
        sources.push((direct, mem_align, offset_align));
    }
    // (buffer_offset, length, segment index, file offset, file index)
    let mut spans = Vec::with_capacity(req.segments.len());
    for (index, seg) in req.segments.iter().enumerate() {
        let Some(file) = facts.get(seg.file) else {
            return Err(load_err!(
                BadSegments,
                "segment {index} names file {} but the request has {} files",
                seg.file,
                req.files.len()
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
        let e = &mut extent[seg.file];
        *e = Some(e.map_or((seg.file_offset, file_end), |(start, end)| {
            (start.min(seg.file_offset), end.max(file_end))
        }));
        spans.push((seg.buffer_offset, length, index, seg.file_offset, seg.file));
    }
    let mut files = Vec::with_capacity(req.files.len());
    for (index, ((fd, (direct, mem_align, offset_align)), extent)) in
        req.files.into_iter().zip(sources).zip(extent).enumerate()
    {
        // A file no segment reads is a caller's mistake, and an fd held for nothing.
        let Some((read_start, required_end)) = extent else {
            return Err(load_err!(
                BadSegments,
                "file {index} is read by no segment; send only the files the segments read"
            ));
        };
        files.push(Source {
            fd,
            direct,
            mem_align,
            offset_align,
            read_start,
            required_end,
        });
    }
    let sources = files;
    spans.sort_unstable();
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
    let page = page_size();
    let end = spans.iter().map(|s| s.0 + s.1).max().unwrap_or(0);
    let buffer_size = end.div_ceil(page) * page;
    let file_bytes = spans.iter().map(|s| s.1).sum();
    // Segments that continue each other in the file and in the buffer are read as one run:
    // a file split into thousands of adjacent segments reads in chunk_size pieces.
    let mut runs: Vec<(u64, u64, u64, usize)> = Vec::new(); // (buffer offset, length, file offset, file)
    for &(buffer_offset, length, _, file_offset, source) in &spans {
        match runs.last_mut() {
            Some(run)
                if run.3 == source
                    && run.0 + run.1 == buffer_offset
                    && run.2 + run.1 == file_offset =>
            {
                run.1 += length;
            }
            _ => runs.push((buffer_offset, length, file_offset, source)),
        }
    }
    let mut chunks = Vec::new();
    for (buffer_offset, length, file_offset, source) in runs {
        // Cut at multiples of chunk_size in the file so that inner chunks stay aligned.
        let mut at = file_offset;
        let end = file_offset + length;
        while at < end {
            let next = ((at / tunables.chunk_size) + 1)
                .saturating_mul(tunables.chunk_size)
                .min(end);
            chunks.push(Chunk {
                source,
                file_offset: at,
                len: next - at,
                buffer_offset: buffer_offset + (at - file_offset),
            });
            at = next;
        }
    }
    Ok(Plan {
        sources,
        chunks,
        buffer_size,
        file_bytes,
        tunables,
    })
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
}
