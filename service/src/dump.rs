//! The read-only views behind `dumpsys`, `debugDump` and (where the stack delivers it) `cmd`.
//!
//! Who sees what: root, system and shell (the uids `dumpsys` and `cmd` run as) see every
//! caller; any other caller sees only its own buffers and usage, and the views that describe
//! every caller (`config`, `stats`, `state`) are refused to it. Caller text (buffer names, the
//! arguments) is shown escaped and bounded (`dmaload_abi::text`).

use dmaload_abi::Untrusted;
use dmaload_engine::{ErrorCode, LoadError};

use crate::service::DmaLoaderService;

/// Uids that see every caller in a dump (AOSP's AID_ROOT, AID_SYSTEM, AID_SHELL).
const FULL_VIEW_UIDS: [u32; 3] = [0, 1000, 2000];

const HELP: &str = "\
dmaloadd views (dumpsys vendor.dmaload.IDmaLoader/default [view...]):
  (none)     every view below (other callers than root, system and shell: backends,
             and their own buffers and usage)
  config     settings in force (caps, threads, allowed backends/uids)
  backends   heaps and other backends with their limits
  buffers    live buffers: id, holder uid/pid, size, backend, age, the shared entry it
             holds (warm reuse), name
  cache      warm reuse: shared and cached entries (holders, age, hits), loads in flight
             others wait for, per-uid hits, misses, bytes saved, cached buffers and bytes;
             evictions by cause
  usage      per-uid usage (buffers charged, working memory of loads running) and the total
  stats      counters: loads, bytes, failures by code, latency percentiles
  state      open fds, outstanding buffer bytes, working memory, kept bounce blocks,
             worker threads, watched processes
  --help     this list
";

/// The views, in the order a dump without arguments shows them.
const VIEWS: [&str; 7] = [
    "config", "backends", "buffers", "cache", "usage", "stats", "state",
];
/// The views a caller without the full view may ask for.
const OWN_VIEWS: [&str; 4] = ["backends", "buffers", "cache", "usage"];
/// Most views one dump shows: each is a few KiB, and the reply must fit one transaction.
const MAX_VIEWS: usize = 16;

/// Who asks for a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub uid: u32,
}

impl Viewer {
    /// Root, system and shell see every caller's buffers and the service-wide views.
    pub fn sees_everyone(self) -> bool {
        FULL_VIEW_UIDS.contains(&self.uid)
    }
}

/// Renders the views named in `args` for `viewer`: `INVALID_ARGUMENT` for a view that does
/// not exist, `PERMISSION_DENIED` for a service-wide view asked by another caller than root,
/// system or shell; both say which views there are.
pub fn render(
    service: &DmaLoaderService,
    viewer: Viewer,
    args: &[String],
) -> Result<String, LoadError> {
    let defaults: &[&str] = if viewer.sees_everyone() {
        &VIEWS
    } else {
        &OWN_VIEWS
    };
    if args.len() > MAX_VIEWS {
        return Err(LoadError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} views asked; at most {MAX_VIEWS} in one dump",
                args.len()
            ),
        ));
    }
    let views: Vec<&str> = if args.is_empty() {
        defaults.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut out = String::new();
    for view in views {
        if matches!(view, "-h" | "--help" | "help") {
            out += HELP;
            continue;
        }
        if !VIEWS.contains(&view) {
            return Err(LoadError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "unknown view '{}'; the views are {} and --help",
                    Untrusted::str(view).limit(64),
                    VIEWS.join(", ")
                ),
            ));
        }
        if !defaults.contains(&view) {
            return Err(LoadError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "view '{view}' shows every caller: it is for root, system and shell; uid {} \
                     may see {}",
                    viewer.uid,
                    OWN_VIEWS.join(", ")
                ),
            ));
        }
        let body = match view {
            "config" => service.config().describe(),
            "backends" => backends(service),
            "buffers" => buffers(service, viewer),
            "cache" => service
                .reuse()
                .describe((!viewer.sees_everyone()).then_some(viewer.uid)),
            "usage" => usage(service, viewer),
            "stats" => service.counters().describe(),
            _ => state(service),
        };
        out += &format!("== {view}\n{body}");
    }
    Ok(out)
}

/// The text `dumpsys` shows: the views, or why there are none.
pub fn render_text(service: &DmaLoaderService, viewer: Viewer, args: &[String]) -> String {
    render(service, viewer, args).unwrap_or_else(|err| format!("error: {err}\n{HELP}"))
}

fn backends(service: &DmaLoaderService) -> String {
    service
        .engine()
        .backends()
        .iter()
        .map(|b| {
            format!(
                "{:<22} {:<8} dma_buf={:<5} max_buffer={} {}\n",
                b.backend.name(),
                if b.allowed { "allowed" } else { "disabled" },
                b.dma_buf,
                b.max_buffer_bytes,
                b.detail
            )
        })
        .collect()
}

fn buffers(service: &DmaLoaderService, viewer: Viewer) -> String {
    let views: Vec<_> = service
        .buffers()
        .views()
        .into_iter()
        .filter(|b| viewer.sees_everyone() || b.holder.uid == viewer.uid)
        .collect();
    if views.is_empty() {
        return "(none)\n".into();
    }
    // The name last: whatever it holds, it cannot be taken for another field.
    views
        .iter()
        .map(|b| {
            let shared = b.shared.map_or("-".to_string(), |e| format!("entry{e}"));
            format!(
                "id={} uid={} pid={} size={} backend={} age={:.1}s shared={shared} name={}\n",
                b.id,
                b.holder.uid,
                b.holder.pid,
                b.size,
                b.backend,
                b.age.as_secs_f64(),
                Untrusted::str(&b.name)
            )
        })
        .collect()
}

fn usage(service: &DmaLoaderService, viewer: Viewer) -> String {
    let line = |uid: u32| {
        let u = service.engine().usage(uid);
        format!(
            "uid {uid}: charged={} charges={} loads_in_flight={} working={}\n",
            u.charged_bytes, u.charges, u.loads_in_flight, u.working_bytes
        )
    };
    if !viewer.sees_everyone() {
        return line(viewer.uid);
    }
    // Every uid the engine charges (buffers, loads in flight and their working memory: a uid
    // whose first load is still running shows here), holders of live buffers, and uids
    // whose only buffers are cached.
    let mut uids: Vec<u32> = service.engine().active_uids();
    uids.extend(service.buffers().views().iter().map(|b| b.holder.uid));
    uids.extend(service.reuse().uids());
    uids.sort_unstable();
    uids.dedup();
    let mut out: String = uids.into_iter().map(line).collect();
    let t = service.engine().total_usage();
    let (pooled, _) = service.engine().pooled_bytes();
    out += &format!(
        "total: charged={} charges={} loads_in_flight={} working={} pooled={} global_cap={}\n",
        t.charged_bytes,
        t.charges,
        t.loads_in_flight,
        t.working_bytes,
        pooled,
        service.config().engine.global_cap_bytes
    );
    out
}

fn state(service: &DmaLoaderService) -> String {
    let (buffers, bytes) = service.buffers().outstanding();
    let (watched, reaped) = service.buffers().watch_counts();
    let engine = service.engine();
    let (pooled, max_pooled) = engine.pooled_bytes();
    let (workers, max_workers) = engine.worker_threads();
    let (cached, cached_bytes) = service.reuse().cached();
    format!(
        "open_fds = {}\nlive_buffers = {buffers}\noutstanding_buffer_bytes = {bytes}\n\
         cached_buffers = {cached}\ncached_bytes = {cached_bytes}\n\
         working_bytes = {}\npooled_block_bytes = {pooled} (at most {max_pooled})\n\
         worker_threads = {workers} (at most {max_workers})\n\
         watched_processes = {watched}\nreaped_processes = {reaped}\n\
         reaper_wakeups = {}\n",
        crate::service::open_fd_count(),
        engine.total_usage().working_bytes,
        service.buffers().reaper_wakeups(),
    )
}
