//! The read-only views behind `dumpsys`, `debugDump` and (where the stack delivers it) `cmd`.

use crate::service::DmaLoaderService;

const HELP: &str = "\
dmaloadd views (dumpsys vendor.dmaload.IDmaLoader/default [view...]):
  (none)     every view below
  config     settings in force (caps, threads, allowed backends/uids)
  backends   heaps and other backends with their limits
  buffers    live buffers: id, owner uid/pid, name, size, backend, age
  usage      per-uid usage (buffers charged, working memory of loads running) and the total
  stats      counters: loads, bytes, failures by code, latency percentiles
  state      open fds, outstanding buffer bytes, working memory, kept bounce blocks,
             worker threads, watched processes
  --help     this list
";

/// Renders the views named in `args`.
pub fn render(service: &DmaLoaderService, args: &[String]) -> String {
    let views: Vec<&str> = if args.is_empty() {
        vec!["config", "backends", "buffers", "usage", "stats", "state"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut out = String::new();
    for view in views {
        match view {
            "-h" | "--help" | "help" => out += HELP,
            "config" => out += &section("config", &service.config().describe()),
            "backends" => out += &section("backends", &backends(service)),
            "buffers" => out += &section("buffers", &buffers(service)),
            "usage" => out += &section("usage", &usage(service)),
            "stats" => out += &section("stats", &service.counters().describe()),
            "state" => out += &section("state", &state(service)),
            other => out += &format!("unknown view {other:?}\n{HELP}"),
        }
    }
    out
}

fn section(title: &str, body: &str) -> String {
    format!("== {title}\n{body}")
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

fn buffers(service: &DmaLoaderService) -> String {
    let views = service.buffers().views();
    if views.is_empty() {
        return "(none)\n".into();
    }
    views
        .iter()
        .map(|b| {
            format!(
                "id={} uid={} pid={} size={} backend={} age={:.1}s name={}\n",
                b.id,
                b.owner.uid,
                b.owner.pid,
                b.size,
                b.backend,
                b.age.as_secs_f64(),
                b.name
            )
        })
        .collect()
}

fn usage(service: &DmaLoaderService) -> String {
    let mut uids: Vec<u32> = service
        .buffers()
        .views()
        .iter()
        .map(|b| b.owner.uid)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    let mut out = String::new();
    for uid in uids {
        let u = service.engine().usage(uid);
        out += &format!(
            "uid {uid}: charged={} charges={} loads_in_flight={} working={}\n",
            u.charged_bytes, u.charges, u.loads_in_flight, u.working_bytes
        );
    }
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
    format!(
        "open_fds = {}\nlive_buffers = {buffers}\noutstanding_buffer_bytes = {bytes}\n\
         working_bytes = {}\npooled_block_bytes = {pooled} (at most {max_pooled})\n\
         worker_threads = {workers} (at most {max_workers})\n\
         watched_processes = {watched}\nreaped_processes = {reaped}\n\
         reaper_wakeups = {}\n",
        crate::service::open_fd_count(),
        engine.total_usage().working_bytes,
        service.buffers().reaper_wakeups(),
    )
}
