//! Service configuration: a small `key = value` file plus command-line flags.
//!
//! Defaults (documented in `dmaloadd --help` too):
//! - caps: the engine's, derived from the device's memory (`EngineConfig::from_system`)
//! - `threads` = 2 × engine `max_concurrent_loads` + 2: every load slot busy and as many
//!   requests waiting for identical loads in flight (warm reuse) still leave threads for short
//!   calls (getUsage, dump, releaseBuffer)
//! - `allowed_backends` = every backend present; `allowed_uids` = everyone the transport lets in
//! - warm reuse's cache off (`cache_per_caller = 0`): see [`ReuseConfig`]

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
// Sizes (`64K`, `8M`, `2GiB`, `0x1000`) follow the one grammar of dmaload_abi::size.
use dmaload_abi::parse_size;
use dmaload_engine::{EngineConfig, IoEngine};

/// What dmaloadd runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub engine: EngineConfig,
    /// Binder threads serving calls.
    pub threads: u32,
    /// Uids allowed to call; empty = anyone the transport (socket permissions, SELinux) admits.
    pub allowed_uids: Vec<u32>,
    /// RPC socket file mode (Linux): who may connect.
    pub socket_mode: u32,
    /// Shareable requests and the cache of released shareable buffers.
    pub reuse: ReuseConfig,
}

/// Warm reuse (service/src/reuse.rs): what the service keeps of released shareable buffers.
///
/// Off by default (`cache_bytes_per_caller = 0`): dma-buf memory is in no process's RSS, so
/// the low-memory killer neither sees nor frees what the service keeps, and a cached buffer
/// is memory no app holds. A device maker who knows its models and its memory opts in
/// (`dmaloadd.rc` or the config file). Sharing live buffers and coalescing identical loads
/// cost no memory and need no setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReuseConfig {
    /// Bytes of released shareable buffers kept per uid (0: none are kept).
    pub cache_bytes_per_caller: u64,
    /// How long a released buffer is kept.
    pub cache_max_age: Duration,
    /// Cached buffers are freed, oldest first, while MemAvailable is below this; `None`:
    /// twice the engine's `min_available_after_bytes`, so the cache goes well before loads
    /// are refused for memory.
    pub cache_min_available_bytes: Option<u64>,
}

impl Default for ReuseConfig {
    fn default() -> ReuseConfig {
        ReuseConfig {
            cache_bytes_per_caller: 0,
            cache_max_age: Duration::from_secs(60),
            cache_min_available_bytes: None,
        }
    }
}
impl Config {
    /// Defaults for this device.
    pub fn from_system() -> Config {
        Config::with_engine(EngineConfig::from_system())
    }

    pub fn with_engine(engine: EngineConfig) -> Config {
        let threads = 2 * engine.max_concurrent_loads + 2;
        Config {
            engine,
            threads,
            allowed_uids: Vec::new(),
            socket_mode: 0o660,
            reuse: ReuseConfig::default(),
        }
    }

    /// Applies a config file: one `key = value` per line, `#` comments.
    pub fn apply_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!(
                    "{}:{}: expected `key = value`, got {line:?}",
                    path.display(),
                    n + 1
                );
            };
            self.set(key.trim(), value.trim())
                .with_context(|| format!("{}:{}", path.display(), n + 1))?;
        }
        Ok(())
    }

    /// Sets one key (config file key or flag name without `--`, `-` and `_` alike).
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let e = &mut self.engine;
        match key.replace('-', "_").as_str() {
            "global_cap" => e.global_cap_bytes = parse_size(value)?,
            "caller_cap" => e.per_caller_cap_bytes = parse_size(value)?,
            "max_buffer" => e.max_buffer_bytes = parse_size(value)?,
            "max_loads" => e.max_concurrent_loads = parse_num(value)?,
            "max_loads_per_caller" => e.max_concurrent_loads_per_caller = parse_num(value)?,
            "max_segments" => e.max_segments = parse_num(value)?,
            "max_files" => e.max_files = parse_num(value)?,
            "min_available_after" => e.min_available_after_bytes = parse_size(value)?,
            "gather_size" => e.default_tunables.gather_size = parse_size(value)?,
            "chunk_size" => e.default_tunables.chunk_size = parse_size(value)?,
            "reader_threads" => e.default_tunables.reader_threads = parse_num(value)?,
            "worker_threads" => e.worker_threads = parse_num(value)?,
            "allowed_backends" => e.allowed_backends = list(value).map(String::from).collect(),
            "io_engine" => {
                e.io_engine = IoEngine::parse(value).with_context(|| {
                    format!("io_engine {value:?}: expected `pread` or `io_uring`")
                })?
            }
            "hugetlb" => {
                e.hugetlb = match value {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => bail!("hugetlb {value:?}: expected `true` or `false`"),
                }
            }
            "threads" => self.threads = parse_num(value)?,
            "cache_per_caller" => self.reuse.cache_bytes_per_caller = parse_size(value)?,
            "cache_max_age" => {
                let seconds: u64 = parse_num(value.trim_end_matches('s'))
                    .with_context(|| format!("cache_max_age {value:?}: expected seconds"))?;
                self.reuse.cache_max_age = Duration::from_secs(seconds);
            }
            "cache_min_available" => {
                self.reuse.cache_min_available_bytes = Some(parse_size(value)?)
            }
            "allowed_uids" => {
                self.allowed_uids = list(value).map(parse_num).collect::<anyhow::Result<_>>()?
            }
            "socket_mode" => {
                self.socket_mode = u32::from_str_radix(value.trim_start_matches("0o"), 8)
                    .with_context(|| format!("socket_mode {value:?} is not an octal mode"))?
            }
            other => bail!("unknown setting {other:?} (see dmaloadd --help)"),
        }
        Ok(())
    }

    /// Cached buffers are freed while MemAvailable is below this.
    pub fn cache_min_available_bytes(&self) -> u64 {
        self.reuse
            .cache_min_available_bytes
            .unwrap_or(self.engine.min_available_after_bytes.saturating_mul(2))
    }

    /// Whether `uid` may call.
    pub fn allows_uid(&self, uid: u32) -> bool {
        self.allowed_uids.is_empty() || self.allowed_uids.contains(&uid)
    }

    /// The settings as `key = value` lines (dump, `--print-config`).
    pub fn describe(&self) -> String {
        let e = &self.engine;
        let t = &e.default_tunables;
        let backends = if e.allowed_backends.is_empty() {
            "(all present)".into()
        } else {
            e.allowed_backends.join(",")
        };
        let uids = if self.allowed_uids.is_empty() {
            "(anyone the transport admits)".to_string()
        } else {
            self.allowed_uids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "global_cap = {}\ncaller_cap = {}\nmax_buffer = {}\nmax_loads = {}\n\
             max_loads_per_caller = {}\nmax_segments = {}\nmax_files = {}\nmin_available_after = {}\n\
             gather_size = {}\nchunk_size = {}\n\
             reader_threads = {}\nworker_threads = {}\nio_engine = {}\nhugetlb = {}\n\
             allowed_backends = {backends}\n\
             allowed_uids = {uids}\n\
             threads = {}\nsocket_mode = {:o}\n\
             cache_per_caller = {}\ncache_max_age = {}\ncache_min_available = {}\n",
            e.global_cap_bytes,
            e.per_caller_cap_bytes,
            e.max_buffer_bytes,
            e.max_concurrent_loads,
            e.max_concurrent_loads_per_caller,
            e.max_segments,
            e.max_files,
            e.min_available_after_bytes,
            t.gather_size,
            t.chunk_size,
            t.reader_threads,
            e.worker_threads,
            e.io_engine.name(),
            e.hugetlb,
            self.threads,
            self.socket_mode,
            self.reuse.cache_bytes_per_caller,
            self.reuse.cache_max_age.as_secs(),
            self.cache_min_available_bytes(),
        )
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_num<T: std::str::FromStr>(value: &str) -> anyhow::Result<T> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{value:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_keys() {
        let mut c = Config::from_system();
        c.set("caller-cap", "1G").unwrap();
        c.set("allowed_uids", "0, 1000").unwrap();
        assert_eq!(c.engine.per_caller_cap_bytes, 1 << 30);
        assert!(c.allows_uid(1000) && !c.allows_uid(5));
        assert!(c.set("nonsense", "1").is_err());
    }

    #[test]
    fn the_cache_is_off_by_default_and_set_by_keys() {
        let mut c = Config::from_system();
        assert_eq!(c.reuse.cache_bytes_per_caller, 0);
        assert_eq!(
            c.cache_min_available_bytes(),
            2 * c.engine.min_available_after_bytes
        );
        c.set("cache-per-caller", "2G").unwrap();
        c.set("cache_max_age", "30s").unwrap();
        c.set("cache_min_available", "512M").unwrap();
        assert_eq!(c.reuse.cache_bytes_per_caller, 2 << 30);
        assert_eq!(c.reuse.cache_max_age, Duration::from_secs(30));
        assert_eq!(c.cache_min_available_bytes(), 512 << 20);
        assert!(c.set("cache_max_age", "soon").is_err());
        let text = c.describe();
        assert!(text.contains("cache_per_caller = 2147483648\n"), "{text}");
        assert!(text.contains("cache_max_age = 30\n"), "{text}");
    }

    #[test]
    fn file_with_comments() {
        let dir = std::env::temp_dir().join(format!("dmaload-config-{}", std::process::id()));
        std::fs::write(&dir, "# caps\nglobal_cap = 2G # all\nthreads=7\n").unwrap();
        let mut c = Config::from_system();
        c.apply_file(&dir).unwrap();
        std::fs::write(&dir, "threads 7\n").unwrap();
        let err = c.apply_file(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!((c.engine.global_cap_bytes, c.threads), (2 << 30, 7));
        assert!(format!("{err:#}").contains(":1: expected"), "{err:#}");
    }
}
