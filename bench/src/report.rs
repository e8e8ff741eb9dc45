//! Rows, tables, ratios and JSON.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use dmaload_engine::LoadStats;
use serde_json::{json, Value};

use crate::schemes::Scheme;

/// One measured scheme at one size (the JSON schema of `--json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub scheme: String,
    pub backend: String,
    pub io_mode: String,
    pub size_bytes: u64,
    pub runs: usize,
    pub median_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub page_cache_growth_bytes: u64,
    pub peak_rss_bytes: u64,
    /// The digest computed while loading: `none`, `sha256` or `fsverity`.
    pub digest: String,
}

fn median(sorted: &[u64]) -> u64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

impl Row {
    pub(crate) fn new(
        scheme: &Scheme,
        size: u64,
        samples: &[Duration],
        growth: u64,
        peak: u64,
    ) -> Row {
        let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        ns.sort_unstable();
        Row {
            scheme: scheme.name().to_string(),
            backend: scheme.backend(),
            io_mode: scheme.io_mode().to_string(),
            size_bytes: size,
            runs: ns.len(),
            median_ns: median(&ns),
            min_ns: ns[0],
            max_ns: ns[ns.len() - 1],
            page_cache_growth_bytes: growth,
            peak_rss_bytes: peak,
            digest: scheme.digest().to_string(),
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
            digest: "sha256".to_string(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:<16} {:<12} {:<8} {:>10} median {:>10} (min {:>10}, max {:>10})  cache +{:>6.1} MiB  peak RSS {:>7.1} MiB",
            self.scheme,
            self.backend,
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
            "peak_rss_bytes": self.peak_rss_bytes, "digest": self.digest,
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
            digest: v["digest"].as_str().unwrap_or("none").to_string(),
        })
    }

    pub fn label(&self) -> String {
        if self.scheme == "dmaload" || self.scheme == "alloc_floor" || self.scheme == "normal" {
            format!("{} {}", self.scheme, self.backend)
        } else {
            self.scheme.clone()
        }
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

pub(crate) fn describe_stats(backend: Option<&str>, s: &LoadStats) -> String {
    let mut text = format!(
        "{}{}: alloc {}, first gather {}, io {}, copy {}, digest {}; direct {} MiB, buffered {} MiB, bounced {} MiB",
        backend.unwrap_or("?"),
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

/// The physical limit for a size: the larger of the fastest allocation floor and the raw
/// direct read floor.
pub fn physical_limit(rows: &[Row], size: u64) -> Option<u64> {
    let fastest = |scheme: &str| {
        rows.iter()
            .filter(|r| r.size_bytes == size && r.scheme == scheme)
            .map(|r| r.median_ns)
            .min()
    };
    let alloc = fastest("alloc_floor")?;
    let direct = fastest("direct_floor")?;
    Some(alloc.max(direct))
}

pub fn print_tables(out: &mut dyn Write, rows: &[Row]) -> Result<()> {
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut labels: Vec<String> = Vec::new();
    for r in rows {
        let l = format!("{} | {} | {}", r.scheme, r.backend, r.io_mode);
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
            let cell = rows
                .iter()
                .find(|r| {
                    r.size_bytes == *s
                        && format!("{} | {} | {}", r.scheme, r.backend, r.io_mode) == *l
                })
                .map(|r| ms(r.median_ns))
                .unwrap_or_else(|| "—".to_string());
            write!(out, " {cell} |")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "\nRatios (physical limit = max(fastest alloc_floor, direct_floor); higher is better):\n"
    )?;
    writeln!(out, "| size | physical limit | dmaload backend | dmaload | limit ÷ dmaload | normal ÷ dmaload | page cache growth | peak RSS |")?;
    writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|")?;
    for s in &sizes {
        let limit = physical_limit(rows, *s);
        let normal = rows
            .iter()
            .find(|r| r.size_bytes == *s && r.scheme == "normal")
            .map(|r| r.median_ns);
        for r in rows
            .iter()
            .filter(|r| r.size_bytes == *s && r.scheme == "dmaload")
        {
            let ratio = |x: Option<u64>| {
                x.map(|x| format!("{:.2}", x as f64 / r.median_ns as f64))
                    .unwrap_or_else(|| "—".into())
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} MiB ({:.2} %) | {:.1} MiB |",
                size_label(*s),
                limit.map(ms).unwrap_or_else(|| "—".into()),
                r.backend,
                ms(r.median_ns),
                ratio(limit),
                ratio(normal),
                r.page_cache_growth_bytes as f64 / (1u64 << 20) as f64,
                r.page_cache_growth_bytes as f64 * 100.0 / *s as f64,
                r.peak_rss_bytes as f64 / (1u64 << 20) as f64,
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
