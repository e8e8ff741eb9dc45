//! Rows, tables, ratios and JSON.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use dmaload_engine::LoadStats;
use serde_json::{json, Value};

use crate::schemes::Scheme;

/// One measured scheme at one size (the JSON schema of `--json`). New fields go at the end of
/// the struct, into [`Row::to_json`] and (with a default for older files) [`Row::from_json`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub scheme: String,
    pub backend: String,
    pub io_mode: String,
    pub size_bytes: u64,
    pub runs: usize,
    /// For concurrent rows, the time until the last client had its buffer.
    pub median_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub page_cache_growth_bytes: u64,
    /// The bench's peak RSS, or dmaloadd's for rows through the service.
    pub peak_rss_bytes: u64,
    /// Threads the scheme works with where the bench fixes them (floors: populating,
    /// copying or reading threads; serial baselines: 1); 0 where dmaload decides.
    pub threads: usize,
    /// Loads at once, each of its own file of `size_bytes` (1 except concurrent rows).
    pub clients: usize,
    /// The memory behind dmaload's buffer as the engine reported it (`hugetlb`,
    /// `hugetlb-surplus`, `shmem-thp`, `shmem`), "" for heaps and where unknown.
    pub memory: String,
    /// Concurrent rows: the median over runs of the fastest and of the slowest client's
    /// time; `None` for single loads.
    pub client_fastest_ns: Option<u64>,
    pub client_slowest_ns: Option<u64>,
    /// The digest computed while loading: `none`, `sha256` or `fsverity`.
    pub digest: String,
}

fn median(sorted: &[u64]) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn sorted_ns(samples: &[Duration]) -> Vec<u64> {
    let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
    ns.sort_unstable();
    ns
}

impl Row {
    pub(crate) fn new(
        scheme: &Scheme,
        size: u64,
        samples: &[Duration],
        growth: u64,
        peak: u64,
        memory: &str,
    ) -> Row {
        let ns = sorted_ns(samples);
        Row {
            scheme: scheme.name().to_string(),
            backend: scheme.backend(),
            io_mode: scheme.io_mode().to_string(),
            size_bytes: size,
            runs: ns.len(),
            median_ns: median(&ns),
            min_ns: ns.first().copied().unwrap_or(0),
            max_ns: ns.last().copied().unwrap_or(0),
            page_cache_growth_bytes: growth,
            peak_rss_bytes: peak,
            threads: scheme.threads(),
            clients: 1,
            memory: memory.to_string(),
            client_fastest_ns: None,
            client_slowest_ns: None,
            digest: scheme.digest().to_string(),
        }
    }

    /// A row of `clients` loads at once: `rounds` holds, per run, every client's time; the
    /// row's times are those of the whole round (until the last client finished).
    pub(crate) fn concurrent(
        scheme: &str,
        backend: String,
        threads: usize,
        size: u64,
        rounds: &[Round],
        peak: u64,
    ) -> Row {
        let walls: Vec<Duration> = rounds.iter().map(|r| r.wall).collect();
        let ns = sorted_ns(&walls);
        let per_client = |pick: fn(&Round) -> Duration| {
            let picked: Vec<Duration> = rounds.iter().map(pick).collect();
            median(&sorted_ns(&picked))
        };
        Row {
            scheme: scheme.to_string(),
            backend,
            io_mode: "direct".to_string(),
            size_bytes: size,
            runs: ns.len(),
            median_ns: median(&ns),
            min_ns: ns.first().copied().unwrap_or(0),
            max_ns: ns.last().copied().unwrap_or(0),
            page_cache_growth_bytes: 0,
            peak_rss_bytes: peak,
            threads,
            clients: rounds.first().map(|r| r.clients.len()).unwrap_or(0),
            memory: String::new(),
            client_fastest_ns: Some(per_client(Round::fastest)),
            client_slowest_ns: Some(per_client(Round::slowest)),
            digest: "none".to_string(),
        }
    }

    /// The `sha256_floor` row: one core hashing `size` bytes in memory
    /// ([`crate::schemes::sha256_one_core`]), the bound a load computing SHA-256 is held to.
    pub(crate) fn sha256_floor(size: u64, samples: &[Duration]) -> Row {
        let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        ns.sort_unstable();
        Row {
            scheme: "sha256_floor".to_string(),
            backend: "1 thread".to_string(),
            io_mode: "none".to_string(),
            size_bytes: size,
            runs: ns.len(),
            median_ns: median(&ns),
            min_ns: ns[0],
            max_ns: ns[ns.len() - 1],
            page_cache_growth_bytes: 0,
            peak_rss_bytes: 0,
            threads: 1,
            clients: 1,
            memory: String::new(),
            client_fastest_ns: None,
            client_slowest_ns: None,
            digest: "sha256".to_string(),
        }
    }

    pub fn line(&self) -> String {
        let clients = if self.clients > 1 {
            format!(
                " ×{} (clients {}–{})",
                self.clients,
                ms(self.client_fastest_ns.unwrap_or(0)),
                ms(self.client_slowest_ns.unwrap_or(0))
            )
        } else {
            String::new()
        };
        let threads = if self.threads > 0 {
            format!(" {}t", self.threads)
        } else {
            String::new()
        };
        format!(
            "{:<16} {:<22} {:<8} {:>10}{clients} median {:>10} (min {:>10}, max {:>10})  cache +{:>6.1} MiB  peak RSS {:>7.1} MiB",
            self.scheme,
            format!("{}{threads}", self.backend),
            self.io_mode,
            size_label(self.size_bytes),
            ms(self.median_ns),
            ms(self.min_ns),
            ms(self.max_ns),
            self.page_cache_growth_bytes as f64 / (1u64 << 20) as f64,
            self.peak_rss_bytes as f64 / (1u64 << 20) as f64,
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "scheme": self.scheme, "backend": self.backend, "io_mode": self.io_mode,
            "size_bytes": self.size_bytes, "runs": self.runs, "median_ns": self.median_ns,
            "min_ns": self.min_ns, "max_ns": self.max_ns,
            "page_cache_growth_bytes": self.page_cache_growth_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "threads": self.threads, "clients": self.clients, "memory": self.memory,
            "client_fastest_ns": self.client_fastest_ns,
            "client_slowest_ns": self.client_slowest_ns,
            "digest": self.digest,
        })
    }

    fn from_json(v: &Value) -> Option<Row> {
        Some(Row {
            scheme: v["scheme"].as_str()?.to_string(),
            backend: v["backend"].as_str()?.to_string(),
            io_mode: v["io_mode"].as_str()?.to_string(),
            size_bytes: v["size_bytes"].as_u64()?,
            runs: v["runs"].as_u64()? as usize,
            median_ns: v["median_ns"].as_u64()?,
            min_ns: v["min_ns"].as_u64()?,
            max_ns: v["max_ns"].as_u64()?,
            page_cache_growth_bytes: v["page_cache_growth_bytes"].as_u64()?,
            peak_rss_bytes: v["peak_rss_bytes"].as_u64()?,
            // Files written before these fields existed: one client, threads unknown.
            threads: v["threads"].as_u64().unwrap_or(0) as usize,
            clients: v["clients"].as_u64().unwrap_or(1) as usize,
            memory: v["memory"].as_str().unwrap_or_default().to_string(),
            client_fastest_ns: v["client_fastest_ns"].as_u64(),
            client_slowest_ns: v["client_slowest_ns"].as_u64(),
            digest: v["digest"].as_str().unwrap_or("none").to_string(),
        })
    }

    pub fn label(&self) -> String {
        match self.scheme.as_str() {
            "dmaload" | "dmaload_service" | "alloc_floor" | "heap_floor" | "normal" => {
                format!("{} {}", self.scheme, self.backend)
            }
            _ => self.scheme.clone(),
        }
    }
}

/// One run of concurrent loads: each client's time, and the round's.
#[derive(Clone, Debug)]
pub struct Round {
    pub wall: Duration,
    pub clients: Vec<Duration>,
}

impl Round {
    fn fastest(&self) -> Duration {
        self.clients.iter().copied().min().unwrap_or_default()
    }

    fn slowest(&self) -> Duration {
        self.clients.iter().copied().max().unwrap_or_default()
    }
}

pub fn to_json(rows: &[Row]) -> String {
    Value::Array(rows.iter().map(Row::to_json).collect()).to_string()
}

pub fn read_json(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    // The JSON array is the last line that parses (logs may precede it).
    let value: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON array in the input")?;
    Ok(value
        .as_array()
        .map(|a| a.iter().filter_map(Row::from_json).collect())
        .unwrap_or_default())
}

pub fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.3} s", ms / 1000.0)
    }
}

pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

pub(crate) fn describe_stats(backend: &str, s: &LoadStats) -> String {
    let mut text = format!(
        "{}{}: alloc {}, first gather {}, io {}, copy {}, digest {}; direct {} MiB, buffered {} MiB, bounced {} MiB",
        backend,
        if s.memory.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.memory)
        },
        ms(s.alloc.as_nanos() as u64),
        ms(s.first_gather.as_nanos() as u64),
        ms(s.io.as_nanos() as u64),
        ms(s.copy.as_nanos() as u64),
        ms(s.digest.as_nanos() as u64),
        s.bytes_direct >> 20,
        s.bytes_buffered >> 20,
        s.bytes_bounced >> 20
    );
    for f in &s.fallbacks {
        text.push_str(&format!("; fallback {:?}: {}", f.kind, f.reason));
    }
    text
}

fn fastest(rows: &[Row], size: u64, pick: impl Fn(&Row) -> bool) -> Option<u64> {
    rows.iter()
        .filter(|r| r.size_bytes == size && r.clients == 1 && pick(r))
        .map(|r| r.median_ns)
        .min()
}

/// The physical limit for a size: the larger of the fastest allocation floor and the raw
/// direct read floor. The allocation floors use as many threads as dmaload does, so no
/// dmaload row can beat the limit by using more threads than the floor.
pub fn physical_limit(rows: &[Row], size: u64) -> Option<u64> {
    let alloc = fastest(rows, size, |r| r.scheme == "alloc_floor")?;
    let direct = fastest(rows, size, |r| r.scheme == "direct_floor")?;
    Some(alloc.max(direct))
}

/// The floor of the memory a dmaload row used: a heap's `heap_floor` (allocation and the
/// copy out of the bounce ring), else the allocation floor of the memory the engine took;
/// with the direct read floor, whichever is larger.
pub fn own_floor(rows: &[Row], r: &Row) -> Option<u64> {
    let size = r.size_bytes;
    let floor = if r.backend.starts_with("heap:") {
        let heap = r.backend.split('+').next().unwrap_or_default();
        fastest(rows, size, |f| {
            f.scheme == "heap_floor" && f.backend == heap
        })?
    } else {
        // Rows through the service do not report their memory: the same backend's
        // in-process row does.
        let memory = if r.memory.is_empty() {
            rows.iter()
                .find(|d| d.scheme == "dmaload" && d.size_bytes == size && d.backend == r.backend)
                .map(|d| d.memory.as_str())
                .unwrap_or_default()
        } else {
            r.memory.as_str()
        };
        let floor = match memory {
            "hugetlb" => "memfd-hugetlb",
            "hugetlb-surplus" => "memfd-hugetlb-surplus",
            "shmem-thp" | "shmem" => "memfd",
            _ => return None,
        };
        fastest(rows, size, |f| {
            f.scheme == "alloc_floor" && f.backend == floor
        })?
    };
    let direct = fastest(rows, size, |f| f.scheme == "direct_floor")?;
    Some(floor.max(direct))
}

fn ratio(x: Option<u64>, t: u64) -> String {
    x.map(|x| format!("{:.2}", x as f64 / t.max(1) as f64))
        .unwrap_or_else(|| "—".into())
}

fn sizes_of<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<u64> {
    let mut sizes: Vec<u64> = rows.map(|r| r.size_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn row_key(r: &Row) -> String {
    let threads = match r.threads {
        _ if r.backend.contains("thread") => String::new(),
        0 | 1 => String::new(),
        n => format!(" ({n} threads)"),
    };
    format!("{} | {}{threads} | {}", r.scheme, r.backend, r.io_mode)
}

pub fn print_tables(out: &mut dyn Write, rows: &[Row]) -> Result<()> {
    let single: Vec<&Row> = rows.iter().filter(|r| r.clients == 1).collect();
    let sizes = sizes_of(single.iter().copied());
    let mut labels: Vec<String> = Vec::new();
    for r in &single {
        let l = row_key(r);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    writeln!(out, "\nMedian time to a filled buffer (cold cache):\n")?;
    write!(out, "| scheme | backend | I/O |")?;
    for s in &sizes {
        write!(out, " {} |", size_label(*s))?;
    }
    writeln!(out)?;
    writeln!(out, "|---|---|---|{}", "---:|".repeat(sizes.len()))?;
    for l in &labels {
        write!(out, "| {l} |")?;
        for s in &sizes {
            let cell = single
                .iter()
                .find(|r| r.size_bytes == *s && row_key(r) == *l)
                .map(|r| ms(r.median_ns))
                .unwrap_or_else(|| "—".to_string());
            write!(out, " {cell} |")?;
        }
        writeln!(out)?;
    }
    // The warm reload (backend auto) against the cold auto load through the service.
    let through = |s: u64, scheme: &str| {
        rows.iter()
            .find(|r| {
                r.size_bytes == s && r.scheme == scheme && r.backend == "auto" && r.clients == 1
            })
            .map(|r| r.median_ns)
    };
    if sizes.iter().any(|&s| through(s, "dmaload_warm").is_some()) {
        writeln!(
            out,
            "\nWarm reuse through dmaloadd (median client time, backend auto; cold = \
             dmaload_service, a load the service had not seen):\n"
        )?;
        writeln!(
            out,
            "| size | cold (dmaload_service) | warm (dmaload_warm) | cold ÷ warm |"
        )?;
        writeln!(out, "|---|---:|---:|---:|")?;
        for &s in &sizes {
            if let (Some(cold), Some(warm)) =
                (through(s, "dmaload_service"), through(s, "dmaload_warm"))
            {
                writeln!(
                    out,
                    "| {} | {} | {} | {:.0} |",
                    size_label(s),
                    ms(cold),
                    ms(warm),
                    cold as f64 / warm.max(1) as f64
                )?;
            }
        }
    }
    writeln!(
        out,
        "\nRatios (limit = max(fastest alloc_floor, direct_floor); own floor = the floor of the \
         memory the row used, or heap_floor for a heap; higher is better):\n"
    )?;
    writeln!(out, "| size | limit | scheme | backend | time | limit ÷ time | own floor | own floor ÷ time | normal ÷ time | page cache growth | peak RSS |")?;
    writeln!(out, "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for s in &sizes {
        let limit = physical_limit(rows, *s);
        let normal = fastest(rows, *s, |r| r.scheme == "normal");
        // A warm reload does no I/O and allocates nothing: it has its own table above.
        for r in single.iter().filter(|r| {
            r.size_bytes == *s && r.scheme.starts_with("dmaload") && r.scheme != "dmaload_warm"
        }) {
            let own = own_floor(rows, r);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MiB ({:.2} %) | {:.1} MiB |",
                size_label(*s),
                limit.map(ms).unwrap_or_else(|| "—".into()),
                r.scheme,
                r.backend,
                ms(r.median_ns),
                ratio(limit, r.median_ns),
                own.map(ms).unwrap_or_else(|| "—".into()),
                ratio(own, r.median_ns),
                ratio(normal, r.median_ns),
                r.page_cache_growth_bytes as f64 / (1u64 << 20) as f64,
                r.page_cache_growth_bytes as f64 * 100.0 / *s as f64,
                r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
            )?;
        }
    }
    let service: Vec<&Row> = single
        .iter()
        .copied()
        .filter(|r| r.scheme == "dmaload_service")
        .collect();
    if !service.is_empty() {
        writeln!(
            out,
            "\nThrough dmaloadd (binder, client's time) beside the engine in this process:\n"
        )?;
        writeln!(out, "| size | backend | in-process | through dmaloadd | dmaloadd ÷ in-process | normal | normal ÷ dmaloadd |")?;
        writeln!(out, "|---|---|---:|---:|---:|---:|---:|")?;
        for r in &service {
            let inproc = fastest(rows, r.size_bytes, |d| {
                d.scheme == "dmaload" && d.backend == r.backend
            });
            let normal = fastest(rows, r.size_bytes, |d| d.scheme == "normal");
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                size_label(r.size_bytes),
                r.backend,
                inproc.map(ms).unwrap_or_else(|| "—".into()),
                ms(r.median_ns),
                inproc
                    .map(|i| format!("{:.2}", r.median_ns as f64 / i.max(1) as f64))
                    .unwrap_or_else(|| "—".into()),
                normal.map(ms).unwrap_or_else(|| "—".into()),
                ratio(normal, r.median_ns),
            )?;
        }
    }
    let concurrent: Vec<&Row> = rows
        .iter()
        .filter(|r| r.scheme == "dmaload_concurrent")
        .collect();
    if !concurrent.is_empty() {
        writeln!(
            out,
            "\nConcurrent clients, each loading its own file (aggregate = all bytes ÷ time until \
             the last buffer; raw = the same files read at once with O_DIRECT):\n"
        )?;
        writeln!(out, "| size per client | clients | backend | all loaded | aggregate | raw direct read | aggregate ÷ raw | fastest client | slowest client | slowest ÷ fastest |")?;
        writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in concurrent {
            let raw = rows
                .iter()
                .find(|d| {
                    d.scheme == "direct_floor"
                        && d.clients == r.clients
                        && d.size_bytes == r.size_bytes
                })
                .map(|d| d.median_ns);
            let total = r.size_bytes * r.clients as u64;
            let rate = |ns: u64| format!("{:.2} GB/s", total as f64 / ns.max(1) as f64);
            let (fast, slow) = (
                r.client_fastest_ns.unwrap_or(0),
                r.client_slowest_ns.unwrap_or(0),
            );
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                size_label(r.size_bytes),
                r.clients,
                r.backend,
                ms(r.median_ns),
                rate(r.median_ns),
                raw.map(rate).unwrap_or_else(|| "—".into()),
                ratio(raw, r.median_ns),
                ms(fast),
                ms(slow),
                slow as f64 / fast.max(1) as f64,
            )?;
        }
    }
    Ok(())
}

/// What computing a digest while loading costs, per size and dmaload backend: each digest
/// row against the same backend without one (`none`) and, for SHA-256, against
/// max(none, `sha256_floor`): one core cannot hash faster, and the hash is sequential.
pub fn print_digest_costs(out: &mut dyn Write, rows: &[Row]) -> Result<()> {
    let digest_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.scheme == "dmaload" && r.digest != "none")
        .collect();
    if digest_rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nDigests during the load (bound: none for fsverity, max(none, sha256_floor) for sha256; cost = digest ÷ bound):\n"
    )?;
    writeln!(
        out,
        "| size | backend | digest | none | sha256_floor | with digest | ÷ none | ÷ bound |"
    )?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|")?;
    for r in digest_rows {
        let base = r
            .backend
            .strip_suffix(&format!("+{}", r.digest))
            .unwrap_or(&r.backend);
        let find = |scheme: &str, backend: &str| {
            rows.iter()
                .find(|x| {
                    x.size_bytes == r.size_bytes
                        && x.scheme == scheme
                        && x.backend == backend
                        && (x.digest == "none" || scheme == "sha256_floor")
                })
                .map(|x| x.median_ns)
        };
        let none = find("dmaload", base);
        let floor = find("sha256_floor", "1 thread");
        let bound = match r.digest.as_str() {
            "sha256" => none.zip(floor).map(|(n, f)| n.max(f)),
            _ => none,
        };
        let ratio = |x: Option<u64>| {
            x.map(|x| format!("{:.3}", r.median_ns as f64 / x as f64))
                .unwrap_or_else(|| "—".into())
        };
        let time = |x: Option<u64>| x.map(ms).unwrap_or_else(|| "—".into());
        writeln!(
            out,
            "| {} | {base} | {} | {} | {} | {} | {} | {} |",
            size_label(r.size_bytes),
            r.digest,
            time(none),
            time(floor),
            ms(r.median_ns),
            ratio(none),
            ratio(bound),
        )?;
    }
    let largest = rows
        .iter()
        .filter(|r| r.scheme == "sha256_floor")
        .max_by_key(|r| r.size_bytes);
    if let Some(floor) = largest {
        writeln!(
            out,
            "\none core's SHA-256: {:.0} MiB/s (sha256_floor, {})",
            floor.size_bytes as f64 / (1u64 << 20) as f64 / (floor.median_ns as f64 / 1e9),
            size_label(floor.size_bytes)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scheme: &str, backend: &str, size: u64, ms: u64, memory: &str) -> Row {
        Row {
            scheme: scheme.into(),
            backend: backend.into(),
            io_mode: "direct".into(),
            size_bytes: size,
            runs: 1,
            median_ns: ms * 1_000_000,
            min_ns: ms * 1_000_000,
            max_ns: ms * 1_000_000,
            page_cache_growth_bytes: 0,
            peak_rss_bytes: 0,
            threads: 2,
            clients: 1,
            memory: memory.into(),
            client_fastest_ns: None,
            client_slowest_ns: None,
            digest: "none".into(),
        }
    }

    #[test]
    fn limits_take_the_fastest_floor_and_rows_their_own_memory_floor() {
        let g = 1 << 30;
        let rows = vec![
            row("alloc_floor", "memfd", g, 3000, ""),
            row("alloc_floor", "memfd-hugetlb-surplus", g, 3200, ""),
            row("alloc_floor", "heap:system", g, 2900, ""),
            row("heap_floor", "heap:system", g, 3300, ""),
            row("direct_floor", "4 threads", g, 700, ""),
            row("dmaload", "udmabuf", g, 3500, "hugetlb-surplus"),
            row("dmaload", "heap:system", g, 3400, ""),
            row("dmaload_service", "udmabuf", g, 3600, ""),
            row("dmaload", "memfd", g, 3100, "shmem-thp"),
            // Another size and a concurrent row never mix in.
            row("alloc_floor", "memfd", 8 << 20, 10, ""),
            Row {
                clients: 4,
                ..row("direct_floor", "4 threads per file", g, 100, "")
            },
        ];
        assert_eq!(physical_limit(&rows, g), Some(2_900_000_000));
        let own = |i: usize| own_floor(&rows, &rows[i]).map(|ns| ns / 1_000_000);
        assert_eq!(
            own(5),
            Some(3200),
            "surplus hugetlb row: its memory's floor"
        );
        assert_eq!(own(6), Some(3300), "heap row: allocation and copy");
        assert_eq!(
            own(7),
            Some(3200),
            "service row: the in-process row's memory"
        );
        assert_eq!(own(8), Some(3000));
        // With a slow disk the read is the floor.
        let mut slow = rows.clone();
        slow[4].median_ns = 5_000_000_000;
        assert_eq!(physical_limit(&slow, g), Some(5_000_000_000));
        assert_eq!(own_floor(&slow, &slow[5]), Some(5_000_000_000));
    }

    #[test]
    fn concurrent_rows_keep_the_round_and_each_clients_times() {
        let ms = Duration::from_millis;
        let rounds = vec![
            Round {
                wall: ms(100),
                clients: vec![ms(60), ms(90), ms(80), ms(95)],
            },
            Round {
                wall: ms(120),
                clients: vec![ms(70), ms(110), ms(100), ms(115)],
            },
            Round {
                wall: ms(90),
                clients: vec![ms(50), ms(85), ms(70), ms(88)],
            },
        ];
        let r = Row::concurrent(
            "dmaload_concurrent",
            "auto".into(),
            0,
            256 << 20,
            &rounds,
            7,
        );
        assert_eq!((r.clients, r.runs), (4, 3));
        assert_eq!(
            (r.min_ns, r.median_ns, r.max_ns),
            (90_000_000, 100_000_000, 120_000_000)
        );
        assert_eq!(r.client_fastest_ns, Some(60_000_000));
        assert_eq!(r.client_slowest_ns, Some(95_000_000));
        // JSON keeps every field; files from before the new fields still read.
        let back = Row::from_json(&r.to_json()).expect("row");
        assert_eq!(back, r);
        let mut old = row("dmaload", "auto", 4096, 1, "").to_json();
        for key in [
            "threads",
            "clients",
            "memory",
            "client_fastest_ns",
            "client_slowest_ns",
        ] {
            old.as_object_mut().expect("object").remove(key);
        }
        let old = Row::from_json(&old).expect("old row");
        assert_eq!(
            (old.clients, old.threads, old.client_fastest_ns),
            (1, 0, None)
        );
    }
}
