//! Warm reuse: shareable requests of one uid for the same content get the same buffer.
//!
//! A request with `LoadRequest.shareable` names its content by what `statx` says of every fd
//! the caller passed (device, inode, size, modification and change times: `FileIdentity`),
//! the segments, the backend asked for and the digest algorithms asked for, under the
//! caller's uid ([`ContentKey`]); never by path, never across uids. Such a request is
//! answered, in this order, by:
//! - a live or cached [`Entry`] with that key: a new fd to the same buffer, no I/O, no new
//!   memory (`Reuse.SHARED` / `Reuse.CACHED`);
//! - a load of that key in flight ([`Flight`]): the request waits for it and gets the buffer
//!   it makes (`Reuse.COALESCED`), or its error;
//! - a load of its own, which becomes the flight others may join (`Reuse.NONE`).
//!
//! An entry owns the buffer's one `Charge` (one piece of memory, counted once against the
//! uid's and the global cap) and a duplicate of its fd, from which each holder gets its own.
//! Each holder has its own bufferId (`buffers::Hold::Shared`); when the last one is released
//! or dies, the entry is kept warm in the per-uid cache if the configuration allows
//! (`ReuseConfig`), else freed. Cached entries leave first when a load is refused for room
//! ([`DmaLoaderService::load_making_room`]), when MemAvailable falls below the threshold,
//! when they are older than the maximum age (the keeper thread), and when a lookup sees
//! another version of one of their files.
//!
//! Locks: the registry, then a flight's state; the ledger of `buffers` is never taken while
//! either is held, and entries, holders and charges are dropped outside them.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use dmaload_abi::meminfo::MemInfoFile;
use dmaload_abi::statx::{file_identity, FileIdentity};
use dmaload_abi::Untrusted;
use dmaload_engine::{
    BackendChoice, CancelToken, Charge, ErrorCode, LoadError, LoadRequest, LoadedBuffer, Progress,
    Wake,
};

use crate::binder_stack::{idl, ParcelFileDescriptor};
use crate::buffers::{Caller, Hold};
use crate::config::ReuseConfig;
use crate::service::DmaLoaderService;

/// Most entries (live, cached) one uid may have: each holds an fd in the service. Beyond, a
/// shareable request gets a buffer of its own, as if it were not shareable.
pub const MAX_ENTRIES_PER_UID: usize = 64;
/// How often the keeper looks at MemAvailable while the cache holds anything.
const MEMORY_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where a result's buffer came from (`Reuse` of the AIDL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReuseKind {
    None,
    Coalesced,
    Shared,
    Cached,
}

impl ReuseKind {
    fn to_wire(self) -> idl::Reuse::Reuse {
        match self {
            ReuseKind::None => idl::Reuse::Reuse::NONE,
            ReuseKind::Coalesced => idl::Reuse::Reuse::COALESCED,
            ReuseKind::Shared => idl::Reuse::Reuse::SHARED,
            ReuseKind::Cached => idl::Reuse::Reuse::CACHED,
        }
    }
}

/// The content a shareable request asks for, under its caller's uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContentKey {
    uid: u32,
    /// Every file of the request, in the request's order.
    files: Vec<FileIdentity>,
    /// (file index, file offset, length, buffer offset) of every segment.
    segments: Vec<(usize, u64, u64, u64)>,
    /// The backend asked for (`auto` stays `auto`: what it chose is the entry's).
    backend: BackendChoice,
    /// The digest algorithms asked for (computed or expected), sorted.
    digests: Vec<i32>,
}

/// A digest a result carries (`idl::Digest`, which is not `Clone`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct StoredDigest {
    segment: i32,
    algorithm: i32,
    value: Vec<u8>,
    from_kernel: bool,
}

impl StoredDigest {
    fn of(d: &idl::Digest::Digest) -> StoredDigest {
        StoredDigest {
            segment: d.segment,
            algorithm: d.algorithm.0,
            value: d.value.clone(),
            from_kernel: d.fromKernel,
        }
    }

    fn to_wire(&self) -> idl::Digest::Digest {
        idl::Digest::Digest {
            segment: self.segment,
            algorithm: idl::DigestAlgorithm::DigestAlgorithm(self.algorithm),
            value: self.value.clone(),
            fromKernel: self.from_kernel,
        }
    }
}

/// A shareable request as the registry sees it.
pub struct Want {
    key: ContentKey,
    /// Duplicates of the request's fds: the files are looked at again after a load, which
    /// is shared only if none changed meanwhile.
    files: Vec<OwnedFd>,
    /// `LoadRequest.expectedDigests`: an entry answers only if it has every one of them.
    expected: Vec<StoredDigest>,
}

impl Want {
    /// The shareable part of `wire` (converted to `request`), or `None` when the request is
    /// not shareable or its files cannot be identified (the engine then says what is wrong
    /// with them, or loads a buffer of its own).
    pub fn of(
        caller: Caller,
        wire: &idl::LoadRequest::LoadRequest,
        request: &LoadRequest,
    ) -> Option<Want> {
        if !wire.shareable {
            return None;
        }
        let mut files = Vec::with_capacity(request.files.len());
        let mut identities = Vec::with_capacity(request.files.len());
        for fd in &request.files {
            match file_identity(fd.as_fd()) {
                Ok(identity) if identity.is_regular() => identities.push(identity),
                _ => return None,
            }
            files.push(fd.try_clone().ok()?);
        }
        let expected: Vec<StoredDigest> = wire
            .expectedDigests
            .as_deref()
            .unwrap_or_default()
            .iter()
            .flatten()
            .map(StoredDigest::of)
            .collect();
        let mut digests: Vec<i32> = wire.digests.iter().map(|a| a.0).collect();
        digests.extend(expected.iter().map(|d| d.algorithm));
        digests.sort_unstable();
        digests.dedup();
        Some(Want {
            key: ContentKey {
                uid: caller.uid,
                files: identities,
                segments: request
                    .segments
                    .iter()
                    .map(|s| (s.file, s.file_offset, s.length, s.buffer_offset))
                    .collect(),
                backend: request.backend.clone(),
                digests,
            },
            files,
            expected,
        })
    }

    /// Whether every file is still the version the key names.
    fn unchanged(&self) -> bool {
        self.files.len() == self.key.files.len()
            && self
                .files
                .iter()
                .zip(&self.key.files)
                .all(|(fd, before)| file_identity(fd.as_fd()).is_ok_and(|now| now == *before))
    }
}

/// A loaded buffer kept for sharing: its one charge and the service's fd.
struct Entry {
    id: u64,
    key: ContentKey,
    /// Whether lookups find it (false once a newer entry of its key exists or its files
    /// changed during the load): unindexed entries serve their holders and are not cached.
    indexed: bool,
    fd: OwnedFd,
    charge: Charge,
    /// What every holder's result says.
    size: u64,
    backend: String,
    is_dma_buf: bool,
    name: String,
    digests: Option<Vec<StoredDigest>>,
    /// File bytes the load read: what a hit saves.
    file_bytes: u64,
    holders: usize,
    /// Since when it is cached (no holder); `None` while held.
    cached_since: Option<Instant>,
    created: Instant,
    hits: u64,
}

impl Entry {
    /// Whether the entry has every digest `expected` names, with its value.
    fn proves(&self, expected: &[StoredDigest]) -> bool {
        expected.iter().all(|want| {
            self.digests.as_deref().unwrap_or_default().iter().any(|d| {
                (d.segment, d.algorithm, &d.value) == (want.segment, want.algorithm, &want.value)
            })
        })
    }
}

/// Why entries left the cache (dump `cache`).
#[derive(Clone, Copy, Debug, Default)]
struct Evictions {
    age: u64,
    memory: u64,
    room: u64,
    changed: u64,
    limit: u64,
}

/// One uid's reuse counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Shareable requests answered with a buffer loaded or in flight.
    pub hits: u64,
    /// Shareable requests that were loaded.
    pub misses: u64,
    /// File bytes not read thanks to hits.
    pub bytes_saved: u64,
}

/// A uid's reuse counters and what it has in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UidReuse {
    pub tally: Tally,
    pub cached_buffers: usize,
    pub cached_bytes: u64,
}

#[derive(Default)]
struct Registry {
    entries: HashMap<u64, Entry>,
    index: HashMap<ContentKey, u64>,
    flights: HashMap<ContentKey, Arc<Flight>>,
    tallies: HashMap<u32, Tally>,
    evictions: Evictions,
    /// Requests waiting for a load in flight, service-wide.
    waiting: usize,
    next_entry: u64,
    stopped: bool,
}

impl Registry {
    /// Forgets the flight of `key` if it is still `flight` (a newer one may have replaced it).
    fn end_flight(&mut self, key: &ContentKey, flight: &Arc<Flight>) {
        if self
            .flights
            .get(key)
            .is_some_and(|f| Arc::ptr_eq(f, flight))
        {
            self.flights.remove(key);
        }
    }

    fn tally(&mut self, uid: u32) -> &mut Tally {
        self.tallies.entry(uid).or_default()
    }

    /// Takes entry `id` out (and out of the index).
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if entry.indexed && self.index.get(&entry.key) == Some(&id) {
            self.index.remove(&entry.key);
        }
        Some(entry)
    }

    /// Cached entries, oldest first; `first` uid's own before the others when given, only
    /// its own when `only_first`.
    fn cached_oldest_first(&self, first: Option<u32>, only_first: bool) -> Vec<u64> {
        let mut cached: Vec<(bool, Instant, u64)> = self
            .entries
            .values()
            .filter_map(|e| {
                let since = e.cached_since?;
                let own = first == Some(e.key.uid);
                (own || !only_first).then_some((!own, since, e.id))
            })
            .collect();
        cached.sort_unstable();
        cached.into_iter().map(|(_, _, id)| id).collect()
    }

    /// A request was answered with entry `id`: its uid saved the entry's file bytes.
    fn count_hit(&mut self, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.hits += 1;
        let (uid, saved) = (entry.key.uid, entry.file_bytes);
        let tally = self.tally(uid);
        tally.hits += 1;
        tally.bytes_saved += saved;
    }

    fn cached_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.cached_since.is_some())
            .count()
    }
}

/// Shareable buffers: the registry of entries and flights, the cache and its keeper.
pub struct Reuse {
    config: ReuseConfig,
    /// Cached entries go while MemAvailable is below this.
    min_available: u64,
    /// Most requests waiting for loads in flight at once.
    max_waiting: usize,
    registry: Mutex<Registry>,
    /// Wakes the keeper: something was cached, or the service stops.
    keeper: Condvar,
    /// /proc/meminfo, kept open: read on every release of a shareable buffer and by the
    /// keeper.
    meminfo: Option<MemInfoFile>,
}

/// How a shareable request is served.
pub enum Begin {
    /// A live or cached entry: the request's buffer.
    Hit(Claim),
    /// An identical load is in flight: wait for it.
    Join(Participant),
    /// Nobody has it: load it, for others too.
    Lead(Leader),
    /// A buffer of its own (the uid's entries are at their bound, or the request expects
    /// digests a load in flight might not prove).
    Alone,
}

/// A holder's share of an entry, with its own fd and what its result says.
pub struct Claim {
    pub holder: Holder,
    pub fd: OwnedFd,
    pub reuse: ReuseKind,
    size: u64,
    backend: String,
    is_dma_buf: bool,
    name: String,
    digests: Option<Vec<StoredDigest>>,
}

impl Claim {
    fn new(entry: &Entry, holder: Holder, fd: OwnedFd, reuse: ReuseKind) -> Claim {
        Claim {
            holder,
            fd,
            reuse,
            size: entry.size,
            backend: entry.backend.clone(),
            is_dma_buf: entry.is_dma_buf,
            name: entry.name.clone(),
            digests: entry.digests.clone(),
        }
    }

    /// The result for this holder (its bufferId still 0): the buffer, no I/O done for it,
    /// and the time it took.
    pub fn result(self, elapsed: Duration) -> (idl::LoadResult::LoadResult, Holder) {
        let result = idl::LoadResult::LoadResult {
            buffer: Some(ParcelFileDescriptor::new(self.fd)),
            sizeBytes: clamp_i64(self.size),
            bufferId: 0,
            backend: self.backend,
            isDmaBuf: self.is_dma_buf,
            name: self.name,
            stats: idl::LoadStats::LoadStats {
                totalNs: i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX),
                ..Default::default()
            },
            digests: self
                .digests
                .map(|d| d.iter().map(|d| Some(d.to_wire())).collect()),
            reuse: self.reuse.to_wire(),
        };
        (result, self.holder)
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One holder's share of an entry; its drop ends the share (`releaseBuffer`, death).
pub struct Holder {
    reuse: Arc<Reuse>,
    entry: u64,
    bytes: u64,
}

impl Holder {
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The entry's bytes (charged once, to the entry).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("entry", &self.entry)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.reuse.let_go(self.entry);
    }
}

/// A load in flight that identical requests wait for.
struct Flight {
    /// The load's own token: cancelled only when every participant gave up.
    cancel: CancelToken,
    state: Mutex<FlightState>,
    changed: Condvar,
}

#[derive(Default)]
struct FlightState {
    /// Participants (the leader is 0) and whether each still wants the buffer.
    participants: HashMap<usize, Arc<Interest>>,
    next: usize,
    /// Participants that have not given up.
    interested: usize,
    /// The newest (done, total) the load reported.
    progress: (u64, u64),
    outcome: Option<Outcome>,
    /// Every participant gave up before the end: the load is cancelled, nobody joins.
    abandoned: bool,
}

enum Outcome {
    /// The entry, and the share of every participant still interested when it was made.
    Done(HashMap<usize, Holder>),
    Failed(LoadError),
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a participant; its interest ends when `cancel` is cancelled.
    fn join(self: &Arc<Self>) -> (usize, Arc<Interest>) {
        let mut state = self.lock();
        let index = state.next;
        state.next += 1;
        state.interested += 1;
        let interest = Arc::new(Interest {
            flight: Arc::downgrade(self),
            gave_up: AtomicBool::new(false),
        });
        state.participants.insert(index, Arc::clone(&interest));
        (index, interest)
    }
}

/// One participant's wish for the flight's buffer; a cancel of its request ends it.
struct Interest {
    flight: Weak<Flight>,
    gave_up: AtomicBool,
}

impl Interest {
    fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Acquire)
    }

    fn give_up(&self) {
        if self.gave_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(flight) = self.flight.upgrade() else {
            return;
        };
        let abandon = {
            let mut state = flight.lock();
            state.interested = state.interested.saturating_sub(1);
            let abandon = state.interested == 0 && state.outcome.is_none();
            state.abandoned |= abandon;
            abandon
        };
        if abandon {
            flight.cancel.cancel();
        }
        flight.changed.notify_all();
    }
}

impl Wake for Interest {
    fn wake(&self) {
        self.give_up();
    }
}

/// A request taking part in a flight: the leader or a waiter. Dropping it ends its
/// interest and drops a share the flight kept for it.
pub struct Participant {
    reuse: Arc<Reuse>,
    flight: Arc<Flight>,
    index: usize,
    interest: Arc<Interest>,
    waiting: bool,
}

impl Participant {
    /// Joins `flight`; called under the registry lock, so a flight found in the registry
    /// cannot end before its new participant is counted. [`Participant::listen`] must follow.
    fn join(reuse: &Arc<Reuse>, flight: &Arc<Flight>, waiting: bool) -> Self {
        let (index, interest) = flight.join();
        Participant {
            reuse: Arc::clone(reuse),
            flight: Arc::clone(flight),
            index,
            interest,
            waiting,
        }
    }

    /// Ends the interest when `cancel` is cancelled. Called with no lock held: an already
    /// cancelled token wakes at once.
    fn listen(self, cancel: &CancelToken) -> Self {
        cancel.on_cancel(Arc::downgrade(&self.interest) as Weak<dyn Wake>);
        self
    }

    /// Waits for the flight's end, reporting its progress; returns this request's share.
    pub fn wait(self, progress: &dyn Progress) -> Result<Claim, LoadError> {
        let mut reported = (0, 0);
        let mut state = self.flight.lock();
        loop {
            if let Some(outcome) = &mut state.outcome {
                let mine = match outcome {
                    Outcome::Failed(err) => return Err(err.clone()),
                    Outcome::Done(shares) => shares.remove(&self.index),
                };
                drop(state);
                return match mine {
                    Some(holder) if !self.interest.gave_up() => {
                        self.reuse.claim(holder, ReuseKind::Coalesced)
                    }
                    _ => Err(cancelled()),
                };
            }
            if self.interest.gave_up() {
                return Err(cancelled());
            }
            if state.progress != reported {
                reported = state.progress;
                drop(state);
                progress.progress(reported.0, reported.1);
                state = self.flight.lock();
                continue;
            }
            state = self
                .flight
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        let share = {
            let mut state = self.flight.lock();
            state.participants.remove(&self.index);
            match &mut state.outcome {
                Some(Outcome::Done(shares)) => shares.remove(&self.index),
                _ => None,
            }
        };
        // Not interested any more (a no-op after a give-up); the share goes outside the lock.
        self.interest.give_up();
        drop(share);
        if self.waiting {
            let mut registry = self.reuse.lock();
            registry.waiting = registry.waiting.saturating_sub(1);
        }
    }
}

/// The request that runs a flight's load.
pub struct Leader {
    participant: Participant,
    want: Want,
    finished: bool,
}

impl Leader {
    /// The token the load runs with: cancelled only once every participant gave up.
    pub fn cancel(&self) -> &CancelToken {
        &self.participant.flight.cancel
    }

    /// Progress for the leader's caller, also shown to the waiters.
    pub fn relay<'p>(&'p self, progress: &'p dyn Progress) -> impl Progress + 'p {
        Relay {
            flight: &self.participant.flight,
            inner: progress,
        }
    }

    /// Ends the flight with the load's `outcome` (its result and charge): the entry is made
    /// and every participant still interested gets a share, or every one gets the error.
    /// Returns the leader's own share with its result, or why it has none.
    pub fn finish(
        mut self,
        outcome: Result<(idl::LoadResult::LoadResult, Charge), LoadError>,
    ) -> Result<(idl::LoadResult::LoadResult, Holder), LoadError> {
        self.finished = true;
        let reuse = Arc::clone(&self.participant.reuse);
        let flight = Arc::clone(&self.participant.flight);
        let made = outcome.and_then(|(result, charge)| {
            let fd = result
                .buffer
                .as_ref()
                .map(|pfd| pfd.as_ref().try_clone())
                .transpose()
                .map_err(|e| {
                    LoadError::new(
                        ErrorCode::Busy,
                        format!("the service cannot keep a shared buffer's fd ({e}); retry later"),
                    )
                })?
                .ok_or_else(|| LoadError::new(ErrorCode::Internal, "a load returned no buffer"))?;
            Ok((result, charge, fd))
        });
        let (result, charge, fd) = match made {
            Ok(parts) => parts,
            Err(err) => {
                reuse.end_flight(&self.want.key, &flight, Outcome::Failed(err.clone()));
                return Err(err);
            }
        };
        let unchanged = self.want.unchanged();
        let entry = Entry {
            id: 0,
            key: self.want.key.clone(),
            indexed: unchanged,
            fd,
            charge,
            size: u64::try_from(result.sizeBytes).unwrap_or(0),
            backend: result.backend.clone(),
            is_dma_buf: result.isDmaBuf,
            name: result.name.clone(),
            digests: result
                .digests
                .as_ref()
                .map(|d| d.iter().flatten().map(StoredDigest::of).collect()),
            file_bytes: u64::try_from(result.stats.bytesDirect).unwrap_or(0)
                + u64::try_from(result.stats.bytesBuffered).unwrap_or(0),
            holders: 0,
            cached_since: None,
            created: Instant::now(),
            hits: 0,
        };
        if !unchanged {
            log::info!(
                "uid {}: a file of shared buffer '{}' changed during its load; it is not shared \
                 further",
                self.want.key.uid,
                Untrusted::str(&entry.name)
            );
        }
        reuse.publish(&self.want.key, &flight, entry);
        let mine = {
            let mut state = flight.lock();
            match &mut state.outcome {
                Some(Outcome::Done(shares)) => shares.remove(&self.participant.index),
                _ => None,
            }
        };
        match mine {
            Some(holder) if !self.participant.interest.gave_up() => Ok((result, holder)),
            _ => Err(cancelled()),
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            // The load's thread ended without an outcome (a panic): nobody may wait forever.
            let err = LoadError::new(
                ErrorCode::Internal,
                "the shared load ended without a result",
            );
            self.participant.reuse.end_flight(
                &self.want.key,
                &self.participant.flight,
                Outcome::Failed(err),
            );
        }
    }
}

/// The leader's progress, forwarded to its caller and left in the flight for the waiters.
struct Relay<'p> {
    flight: &'p Flight,
    inner: &'p dyn Progress,
}

impl Progress for Relay<'_> {
    fn progress(&self, bytes_done: u64, bytes_total: u64) {
        self.inner.progress(bytes_done, bytes_total);
        self.flight.lock().progress = (bytes_done, bytes_total);
        self.flight.changed.notify_all();
    }
}

fn vanished() -> LoadError {
    LoadError::new(
        ErrorCode::Internal,
        "a shared buffer vanished while it was held",
    )
}

fn no_fd(e: io::Error) -> LoadError {
    LoadError::new(
        ErrorCode::Busy,
        format!("the service has no fd to spare for a shared buffer ({e}); retry later"),
    )
}

fn cancelled() -> LoadError {
    LoadError::new(
        ErrorCode::Cancelled,
        "the load was cancelled (by the caller or its death)",
    )
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Reuse {
    /// `min_available` is the MemAvailable below which cached entries go; `max_waiting`
    /// bounds the requests waiting for loads in flight at once.
    pub fn new(config: ReuseConfig, min_available: u64, max_waiting: usize) -> Arc<Reuse> {
        Arc::new(Reuse {
            config,
            min_available,
            max_waiting,
            registry: Mutex::new(Registry::default()),
            keeper: Condvar::new(),
            meminfo: MemInfoFile::open(),
        })
    }

    /// MemAvailable now, in bytes.
    fn mem_available(&self) -> Option<u64> {
        MemInfoFile::read_kept(self.meminfo.as_ref()).map(|m| m.available)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &ReuseConfig {
        &self.config
    }

    /// Finds what answers `want`, or makes this request the leader of its load.
    pub fn begin(self: &Arc<Self>, want: Want, cancel: &CancelToken) -> Result<Begin, LoadError> {
        let mut dropped = Vec::new();
        let uid = want.key.uid;
        let mut registry = self.lock();
        // Another version of one of the request's files: its entries are stale.
        let stale: Vec<u64> = registry
            .entries
            .values()
            .filter(|e| e.key.uid == uid && e.indexed)
            .filter(|e| {
                e.key.files.iter().any(|old| {
                    want.key
                        .files
                        .iter()
                        .any(|new| new.same_file(old) && new != old)
                })
            })
            .map(|e| e.id)
            .collect();
        for id in stale {
            if registry
                .entries
                .get(&id)
                .is_some_and(|e| e.cached_since.is_some())
            {
                registry.evictions.changed += 1;
                dropped.extend(registry.remove(id));
            } else if let Some(e) = registry.entries.get_mut(&id) {
                e.indexed = false;
                let key = e.key.clone();
                if registry.index.get(&key) == Some(&id) {
                    registry.index.remove(&key);
                }
            }
        }
        let found = registry.index.get(&want.key).copied().filter(|id| {
            registry
                .entries
                .get(id)
                .is_some_and(|e| e.proves(&want.expected))
        });
        if let Some(id) = found {
            let claim = self.hold(&mut registry, id);
            drop(registry);
            drop(dropped);
            return claim.map(Begin::Hit);
        }
        let flight = registry
            .flights
            .get(&want.key)
            .filter(|f| !f.lock().abandoned)
            .cloned();
        if let Some(flight) = flight {
            if !want.expected.is_empty() {
                // Its load proves what its leader expects, not necessarily this request's.
                registry.tally(uid).misses += 1;
                return Ok(Begin::Alone);
            }
            if registry.waiting >= self.max_waiting {
                return Err(LoadError::new(
                    ErrorCode::Busy,
                    format!(
                        "{} requests already wait for identical loads in flight (service limit \
                         {}); retry when one finishes",
                        registry.waiting, self.max_waiting
                    ),
                ));
            }
            registry.waiting += 1;
            let participant = Participant::join(self, &flight, true);
            drop(registry);
            drop(dropped);
            return Ok(Begin::Join(participant.listen(cancel)));
        }
        registry.tally(uid).misses += 1;
        let own = |r: &Registry| {
            r.entries.values().filter(|e| e.key.uid == uid).count()
                + r.flights.keys().filter(|k| k.uid == uid).count()
        };
        if own(&registry) >= MAX_ENTRIES_PER_UID {
            if let Some(&oldest) = registry.cached_oldest_first(Some(uid), true).first() {
                registry.evictions.limit += 1;
                dropped.extend(registry.remove(oldest));
            }
        }
        if own(&registry) >= MAX_ENTRIES_PER_UID {
            return Ok(Begin::Alone);
        }
        let flight = Arc::new(Flight {
            cancel: CancelToken::new(),
            state: Mutex::new(FlightState::default()),
            changed: Condvar::new(),
        });
        registry
            .flights
            .insert(want.key.clone(), Arc::clone(&flight));
        let participant = Participant::join(self, &flight, false);
        drop(registry);
        drop(dropped);
        Ok(Begin::Lead(Leader {
            participant: participant.listen(cancel),
            want,
            finished: false,
        }))
    }

    /// A new share of entry `id`, with its own fd.
    fn hold(self: &Arc<Self>, registry: &mut Registry, id: u64) -> Result<Claim, LoadError> {
        let entry = registry.entries.get_mut(&id).ok_or_else(vanished)?;
        let fd = entry.fd.try_clone().map_err(no_fd)?;
        let reuse = if entry.cached_since.take().is_some() {
            ReuseKind::Cached
        } else {
            ReuseKind::Shared
        };
        entry.holders += 1;
        let holder = Holder {
            reuse: Arc::clone(self),
            entry: id,
            bytes: entry.charge.bytes(),
        };
        let claim = Claim::new(entry, holder, fd, reuse);
        registry.count_hit(id);
        Ok(claim)
    }

    /// A waiter's share, taken from the flight: its own fd and what its result says.
    fn claim(self: &Arc<Self>, holder: Holder, reuse: ReuseKind) -> Result<Claim, LoadError> {
        let mut registry = self.lock();
        let made = match registry.entries.get(&holder.entry) {
            None => Err(vanished()),
            Some(entry) => entry.fd.try_clone().map_err(no_fd).map(|fd| (entry, fd)),
        };
        match made {
            Ok((entry, fd)) => {
                let id = holder.entry;
                let claim = Claim::new(entry, holder, fd, reuse);
                registry.count_hit(id);
                Ok(claim)
            }
            Err(err) => {
                // The share ends outside the lock (its end takes it).
                drop(registry);
                drop(holder);
                Err(err)
            }
        }
    }

    /// Makes the entry of a finished flight and a share for every participant still
    /// interested; an entry nobody holds goes to the cache or is freed.
    fn publish(self: &Arc<Self>, key: &ContentKey, flight: &Arc<Flight>, mut entry: Entry) {
        let mut dropped = Vec::new();
        let mut registry = self.lock();
        registry.end_flight(key, flight);
        registry.next_entry += 1;
        let id = registry.next_entry;
        entry.id = id;
        entry.indexed &= !registry.stopped;
        if entry.indexed {
            // A newer entry of the key (an older one did not prove what this request expected).
            if let Some(old) = registry.index.insert(key.clone(), id) {
                if registry
                    .entries
                    .get(&old)
                    .is_some_and(|e| e.cached_since.is_some())
                {
                    dropped.extend(registry.remove(old));
                } else if let Some(e) = registry.entries.get_mut(&old) {
                    e.indexed = false;
                }
            }
        }
        let bytes = entry.charge.bytes();
        let mut shares = HashMap::new();
        {
            let mut state = flight.lock();
            for (&index, interest) in &state.participants {
                if !interest.gave_up() {
                    shares.insert(
                        index,
                        Holder {
                            reuse: Arc::clone(self),
                            entry: id,
                            bytes,
                        },
                    );
                }
            }
            entry.holders = shares.len();
            state.outcome = Some(Outcome::Done(shares));
        }
        let unheld = entry.holders == 0;
        registry.entries.insert(id, entry);
        if unheld {
            self.keep_or_free(&mut registry, id, &mut dropped);
        }
        drop(registry);
        flight.changed.notify_all();
        drop(dropped);
    }

    /// Ends a flight without an entry: every participant gets `outcome`.
    fn end_flight(&self, key: &ContentKey, flight: &Arc<Flight>, outcome: Outcome) {
        // The registry's lock is let go before the flight's is taken.
        self.lock().end_flight(key, flight);
        flight.lock().outcome = Some(outcome);
        flight.changed.notify_all();
    }

    /// A holder let go of entry `id`: the last one moves it to the cache or frees it.
    fn let_go(&self, id: u64) {
        let mut dropped = Vec::new();
        {
            let mut registry = self.lock();
            let Some(entry) = registry.entries.get_mut(&id) else {
                return;
            };
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                self.keep_or_free(&mut registry, id, &mut dropped);
            }
        }
        drop(dropped);
    }

    /// Caches entry `id` (nobody holds it) if the configuration and memory allow, making room
    /// in its uid's share of the cache; else takes it out into `dropped`.
    fn keep_or_free(&self, registry: &mut Registry, id: u64, dropped: &mut Vec<Entry>) {
        let Some(entry) = registry.entries.get(&id) else {
            return;
        };
        let (uid, size) = (entry.key.uid, entry.size);
        let limit = self.config.cache_bytes_per_caller;
        let keep = entry.indexed
            && !registry.stopped
            && limit > 0
            && size <= limit
            && !self.config.cache_max_age.is_zero()
            && self
                .mem_available()
                .map_or(true, |available| available >= self.min_available);
        if !keep {
            dropped.extend(registry.remove(id));
            return;
        }
        // Oldest first, until the new one fits the uid's share.
        let mut cached: u64 = registry
            .entries
            .values()
            .filter(|e| e.key.uid == uid && e.cached_since.is_some())
            .map(|e| e.size)
            .sum();
        for old in registry.cached_oldest_first(Some(uid), true) {
            if cached + size <= limit {
                break;
            }
            if let Some(e) = registry.remove(old) {
                cached -= e.size;
                registry.evictions.limit += 1;
                dropped.push(e);
            }
        }
        if let Some(entry) = registry.entries.get_mut(&id) {
            entry.cached_since = Some(Instant::now());
        }
        self.keeper.notify_all();
    }

    /// Frees up to `count` cached entries for a load of `uid` refused with `code`: its own
    /// first, then (unless it hit its own cap) other uids', oldest first. Returns how many.
    pub fn make_room(&self, uid: u32, code: ErrorCode, count: usize) -> usize {
        let own_only = code == ErrorCode::CallerCap;
        let dropped: Vec<Entry> = {
            let mut registry = self.lock();
            let ids = registry.cached_oldest_first(Some(uid), own_only);
            let taken: Vec<Entry> = ids
                .into_iter()
                .take(count)
                .filter_map(|id| registry.remove(id))
                .collect();
            registry.evictions.room += taken.len() as u64;
            taken
        };
        let n = dropped.len();
        if n > 0 {
            log::info!("freed {n} cached buffer(s) to make room for a load of uid {uid} ({code})");
        }
        n
    }

    /// Whether a refused load of `uid` with `code` could get room from the cache.
    pub fn could_make_room(&self, uid: u32, code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::CallerCap | ErrorCode::GlobalCap | ErrorCode::NoMemory
        ) && !self
            .lock()
            .cached_oldest_first(Some(uid), code == ErrorCode::CallerCap)
            .is_empty()
    }

    /// Whether anything is cached (a refused load may then be retried after freeing some).
    pub fn has_cached(&self) -> bool {
        self.lock().cached_count() > 0
    }

    /// `uid`'s counters and cache.
    pub fn of_uid(&self, uid: u32) -> UidReuse {
        let registry = self.lock();
        let cached: Vec<u64> = registry
            .entries
            .values()
            .filter(|e| e.key.uid == uid && e.cached_since.is_some())
            .map(|e| e.size)
            .collect();
        UidReuse {
            tally: registry.tallies.get(&uid).copied().unwrap_or_default(),
            cached_buffers: cached.len(),
            cached_bytes: cached.iter().sum(),
        }
    }

    /// The uids with entries (held or cached).
    pub fn uids(&self) -> Vec<u32> {
        let mut uids: Vec<u32> = self.lock().entries.values().map(|e| e.key.uid).collect();
        uids.sort_unstable();
        uids.dedup();
        uids
    }

    /// Cached entries and their bytes, every uid.
    pub fn cached(&self) -> (usize, u64) {
        let registry = self.lock();
        let sizes: Vec<u64> = registry
            .entries
            .values()
            .filter(|e| e.cached_since.is_some())
            .map(|e| e.size)
            .collect();
        (sizes.len(), sizes.iter().sum())
    }

    /// The dump's `cache` view: entries and flights, counters, evictions; only `uid`'s
    /// when given.
    pub fn describe(&self, uid: Option<u32>) -> String {
        let registry = self.lock();
        let mine = |caller: u32| uid.map_or(true, |u| u == caller);
        let mut out = format!(
            "cache_per_caller = {} cache_max_age = {}s cache_min_available = {}\n",
            self.config.cache_bytes_per_caller,
            self.config.cache_max_age.as_secs(),
            self.min_available
        );
        let mut entries: Vec<&Entry> = registry
            .entries
            .values()
            .filter(|e| mine(e.key.uid))
            .collect();
        entries.sort_by_key(|e| e.id);
        for e in &entries {
            let state = match e.cached_since {
                Some(since) => format!("cached {:.1}s", since.elapsed().as_secs_f64()),
                None => format!("held by {}", e.holders),
            };
            // The name last: whatever it holds, it cannot be taken for another field.
            out += &format!(
                "entry={} uid={} {state} size={} backend={} files={} segments={} hits={} \
                 shared={} age={:.1}s name={}\n",
                e.id,
                e.key.uid,
                e.size,
                e.backend,
                e.key.files.len(),
                e.key.segments.len(),
                e.hits,
                if e.indexed { "yes" } else { "no" },
                e.created.elapsed().as_secs_f64(),
                Untrusted::str(&e.name)
            );
        }
        let mut flights: Vec<(u32, usize)> = registry
            .flights
            .iter()
            .filter(|(k, _)| mine(k.uid))
            .map(|(k, f)| (k.uid, f.lock().interested))
            .collect();
        flights.sort_unstable();
        for (caller, interested) in flights {
            out += &format!("loading uid={caller} requests={interested}\n");
        }
        let mut uids: Vec<u32> = registry
            .tallies
            .keys()
            .copied()
            .filter(|&u| mine(u))
            .collect();
        uids.sort_unstable();
        for u in uids {
            let t = registry.tallies.get(&u).copied().unwrap_or_default();
            let (n, bytes) = registry
                .entries
                .values()
                .filter(|e| e.key.uid == u && e.cached_since.is_some())
                .fold((0, 0), |(n, b), e| (n + 1, b + e.size));
            out += &format!(
                "uid {u}: hits={} misses={} bytes_saved={} cached_buffers={n} cached_bytes={bytes}\n",
                t.hits, t.misses, t.bytes_saved
            );
        }
        if uid.is_none() {
            let ev = registry.evictions;
            out += &format!(
                "waiting = {}\nevicted: age={} memory={} room={} changed={} limit={}\n",
                registry.waiting, ev.age, ev.memory, ev.room, ev.changed, ev.limit
            );
        }
        out
    }

    /// Starts the keeper: it frees cached entries past their age, and while MemAvailable is
    /// below the threshold. It sleeps while nothing is cached. Dropping the handle stops it.
    pub fn spawn_keeper(self: &Arc<Self>) -> io::Result<Keeper> {
        let reuse = Arc::clone(self);
        std::thread::Builder::new()
            .name("dmaload-cache".into())
            .spawn(move || reuse.keep())?;
        Ok(Keeper {
            reuse: Arc::clone(self),
        })
    }

    fn keep(&self) {
        let mut registry = self.lock();
        loop {
            if registry.stopped {
                return;
            }
            let now = Instant::now();
            let max_age = self.config.cache_max_age;
            let expired: Vec<u64> = registry
                .entries
                .values()
                .filter(|e| {
                    e.cached_since
                        .is_some_and(|s| now.duration_since(s) >= max_age)
                })
                .map(|e| e.id)
                .collect();
            let dropped: Vec<Entry> = expired
                .into_iter()
                .filter_map(|id| registry.remove(id))
                .collect();
            registry.evictions.age += dropped.len() as u64;
            drop(registry);
            drop(dropped);
            // Under the threshold: the oldest go, one at a time (each frees its memory before
            // MemAvailable is read again), until memory is back or the cache is empty.
            while let Some(available) = self.mem_available().filter(|&a| a < self.min_available) {
                let oldest = {
                    let mut registry = self.lock();
                    let oldest = registry.cached_oldest_first(None, false).first().copied();
                    let entry = oldest.and_then(|id| registry.remove(id));
                    registry.evictions.memory += u64::from(entry.is_some());
                    entry
                };
                let Some(entry) = oldest else {
                    break;
                };
                log::info!(
                    "MemAvailable {available} is below {}: freed cached buffer {} of uid {} \
                     ({} bytes)",
                    self.min_available,
                    entry.id,
                    entry.key.uid,
                    entry.size
                );
                drop(entry);
            }
            registry = self.lock();
            let next_expiry = registry
                .entries
                .values()
                .filter_map(|e| e.cached_since)
                .min()
                .map(|oldest| (oldest + max_age).saturating_duration_since(Instant::now()));
            registry = match next_expiry {
                None => self
                    .keeper
                    .wait(registry)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(expiry) => {
                    self.keeper
                        .wait_timeout(registry, expiry.min(MEMORY_CHECK_INTERVAL))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Keeps the cache's keeper thread; dropping it stops the thread and frees the cache.
pub struct Keeper {
    reuse: Arc<Reuse>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let dropped: Vec<Entry> = {
            let mut registry = self.reuse.lock();
            registry.stopped = true;
            let cached = registry.cached_oldest_first(None, false);
            cached
                .into_iter()
                .filter_map(|id| registry.remove(id))
                .collect()
        };
        self.reuse.keeper.notify_all();
        drop(dropped);
    }
}

impl DmaLoaderService {
    /// Runs a shareable request: a hit, a wait for an identical load in flight, or a load of
    /// its own that identical requests may join (module comment).
    pub(crate) fn run_shareable(
        &self,
        caller: Caller,
        request: LoadRequest,
        want: Want,
        cancel: &CancelToken,
        progress: &dyn Progress,
        started: Instant,
    ) -> Result<idl::LoadResult::LoadResult, LoadError> {
        let name = request.name.clone();
        let outcome = match self.reuse().begin(want, cancel) {
            Err(err) => Err(err),
            Ok(Begin::Alone) => return self.run_own(caller, request, cancel, progress, started),
            Ok(Begin::Hit(claim)) => Ok(claim),
            Ok(Begin::Join(participant)) => {
                drop(request); // the caller's fds are not needed while it waits
                participant.wait(progress)
            }
            Ok(Begin::Lead(leader)) => {
                let loaded = self
                    .load_making_room(
                        caller.uid,
                        request,
                        leader.cancel(),
                        &leader.relay(progress),
                    )
                    .map(|loaded| {
                        self.counters().loaded(loaded.size, started.elapsed());
                        self.loaded_result(name.clone(), loaded)
                    });
                return match leader.finish(loaded) {
                    Ok((result, holder)) => {
                        let size = u64::try_from(result.sizeBytes).unwrap_or(0);
                        Ok(self.hand_out_shared(caller, result, size, holder))
                    }
                    Err(err) => Err(self.load_failed(caller, &name, err)),
                };
            }
        };
        match outcome {
            Ok(claim) => {
                let size = claim.size();
                let (result, holder) = claim.result(started.elapsed());
                Ok(self.hand_out_shared(caller, result, size, holder))
            }
            Err(err) => Err(self.load_failed(caller, &name, err)),
        }
    }

    /// Hands `caller` its own buffer id for a share of a shared buffer of `size` bytes.
    fn hand_out_shared(
        &self,
        caller: Caller,
        mut result: idl::LoadResult::LoadResult,
        size: u64,
        holder: Holder,
    ) -> idl::LoadResult::LoadResult {
        result.bufferId = self.buffers().insert(
            caller,
            result.name.clone(),
            size,
            result.backend.clone(),
            Hold::Shared(holder),
        );
        result
    }

    /// Loads `request` for `uid`; a load refused for room (caps, MemAvailable) is retried
    /// after freeing cached entries (1, 2, 4 … of them, the caller's own first).
    pub(crate) fn load_making_room(
        &self,
        uid: u32,
        mut request: LoadRequest,
        cancel: &CancelToken,
        progress: &dyn Progress,
    ) -> Result<LoadedBuffer, LoadError> {
        let mut batch = 1;
        loop {
            let spare = if self.reuse().has_cached() {
                request.try_clone().ok()
            } else {
                None
            };
            let caller = dmaload_engine::Caller::new(uid);
            match self.engine().load(caller, request, cancel, progress) {
                Err(err) if self.reuse().could_make_room(uid, err.code) => match spare {
                    Some(again) if self.reuse().make_room(uid, err.code, batch) > 0 => {
                        request = again;
                        batch *= 2;
                    }
                    _ => return Err(err),
                },
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: u32) -> ContentKey {
        ContentKey {
            uid,
            files: Vec::new(),
            segments: vec![(0, 0, 0, 0)],
            backend: BackendChoice::Memfd,
            digests: Vec::new(),
        }
    }

    #[test]
    fn an_entry_proves_only_the_digests_it_has() {
        let digest = |segment, algorithm, byte| StoredDigest {
            segment,
            algorithm,
            value: vec![byte; 32],
            from_kernel: false,
        };
        let engine = dmaload_engine::Engine::new(dmaload_engine::EngineConfig::from_system())
            .expect("engine");
        let dir = std::env::temp_dir().join(format!("dmaload-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let fd: OwnedFd = std::fs::File::open(&path).unwrap().into();
        let request = LoadRequest::whole_file(fd, "t").with_backend(BackendChoice::Memfd);
        let loaded = engine
            .load(
                dmaload_engine::Caller::new(1),
                request,
                &CancelToken::new(),
                &dmaload_engine::NoProgress,
            )
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let entry = Entry {
            id: 1,
            key: key(1),
            indexed: true,
            fd: loaded.fd,
            charge: loaded.charge,
            size: 4096,
            backend: "memfd".into(),
            is_dma_buf: false,
            name: "n".into(),
            digests: Some(vec![digest(0, 1, 0xaa)]),
            file_bytes: 4096,
            holders: 0,
            cached_since: None,
            created: Instant::now(),
            hits: 0,
        };
        assert!(entry.proves(&[]));
        assert!(entry.proves(&[digest(0, 1, 0xaa)]));
        assert!(!entry.proves(&[digest(0, 1, 0xbb)]), "another value");
        assert!(
            !entry.proves(&[digest(0, 2, 0xaa)]),
            "an algorithm it lacks"
        );
        assert!(!entry.proves(&[digest(1, 1, 0xaa)]), "another segment");
        assert_eq!(engine.usage(1).charged_bytes, 4096);
        drop(entry);
        assert_eq!(engine.usage(1).charged_bytes, 0);
    }

    #[test]
    fn a_flight_is_cancelled_only_when_every_participant_gave_up() {
        let reuse = Reuse::new(ReuseConfig::default(), 0, 8);
        let flight = Arc::new(Flight {
            cancel: CancelToken::new(),
            state: Mutex::new(FlightState::default()),
            changed: Condvar::new(),
        });
        let (a, b) = (CancelToken::new(), CancelToken::new());
        let first = Participant::join(&reuse, &flight, false).listen(&a);
        let second = Participant::join(&reuse, &flight, false).listen(&b);
        a.cancel();
        assert!(first.interest.gave_up());
        assert!(!flight.cancel.is_cancelled(), "the second still waits");
        assert!(!flight.lock().abandoned);
        drop(second); // gone without a cancel: its interest ends too
        assert!(flight.cancel.is_cancelled());
        assert!(flight.lock().abandoned);
        drop(first);
        assert_eq!(flight.lock().participants.len(), 0);
    }

    #[test]
    fn a_cancelled_waiter_wakes_at_once() {
        let reuse = Reuse::new(ReuseConfig::default(), 0, 8);
        let flight = Arc::new(Flight {
            cancel: CancelToken::new(),
            state: Mutex::new(FlightState::default()),
            changed: Condvar::new(),
        });
        let leader_token = CancelToken::new();
        let _leader = Participant::join(&reuse, &flight, false).listen(&leader_token);
        let token = CancelToken::new();
        let waiter = Participant::join(&reuse, &flight, false).listen(&token);
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                token.cancel();
            })
        };
        let started = Instant::now();
        let err = waiter.wait(&dmaload_engine::NoProgress).err().unwrap();
        assert_eq!(err.code, ErrorCode::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
        canceller.join().unwrap();
        assert!(!flight.cancel.is_cancelled(), "the leader still wants it");
    }
}
