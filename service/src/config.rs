//! Service configuration: a small `key = value` file plus command-line flags.
//!
//! Defaults (documented in `dmaloadd --help` too):
//! - caps: the engine's, derived from the device's memory (`EngineConfig::from_system`)
//! - `threads` = engine `max_concurrent_loads` + 2, so short calls (getUsage, dump,
//!   releaseBuffer) are served while every load slot is busy
//! - `allowed_backends` = every backend present; `allowed_uids` = everyone the transport lets in

use std::path::Path;

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
}

impl Config {
    /// Defaults for this device.
    pub fn from_system() -> Config {
        Config::with_engine(EngineConfig::from_system())
    }

    pub fn with_engine(engine: EngineConfig) -> Config {
        let threads = engine.max_concurrent_loads + 2;
        Config {
            engine,
            threads,
            allowed_uids: Vec::new(),
            socket_mode: 0o660,
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
            "caller_cap" => e.per_owner_cap_bytes = parse_size(value)?,
            "max_buffer" => e.max_buffer_bytes = parse_size(value)?,
            "max_loads" => e.max_concurrent_loads = parse_num(value)?,
            "max_loads_per_caller" => e.max_concurrent_loads_per_owner = parse_num(value)?,
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
             threads = {}\nsocket_mode = {:o}\n",
            e.global_cap_bytes,
            e.per_owner_cap_bytes,
            e.max_buffer_bytes,
            e.max_concurrent_loads,
            e.max_concurrent_loads_per_owner,
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
        assert_eq!(c.engine.per_owner_cap_bytes, 1 << 30);
        assert!(c.allows_uid(1000) && !c.allows_uid(5));
        assert!(c.set("nonsense", "1").is_err());
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
