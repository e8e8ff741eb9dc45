//! Command-line syntax of `dmaload`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dmaload_abi::digest::{parse_tagged, DigestAlgorithm, DIGEST_BYTES};
// Sizes and offsets (`4096`, `0x1000`, `64K`, `128M`, `2GiB`) follow dmaload_abi::size.
use dmaload_abi::parse_size;

#[derive(Debug, Parser)]
#[command(
    name = "dmaload",
    version,
    about = "Load files into dma-bufs through the dmaload service",
    after_help = "Endpoint: --endpoint, else $DMALOAD_ENDPOINT, $DMALOAD_SOCKET, kernel binder where \
                  registered, else the RPC socket /tmp/dmaload.sock. On Linux, when nothing \
                  answers on an RPC socket, a private dmaloadd is started there (its log and \
                  pid beside the socket: <socket>.log, <socket>.pid)."
)]
pub struct Cli {
    /// Service endpoint: "binder", "binder:<instance>", "unix:<socket>" or a socket path.
    #[arg(long, global = true, value_name = "ENDPOINT")]
    pub endpoint: Option<String>,
    /// Never start a private dmaloadd; fail when no service answers.
    #[arg(long, global = true)]
    pub no_spawn: bool,
    /// The dmaloadd binary to start when none answers (default: next to this binary, then $PATH).
    #[arg(long, global = true, value_name = "PATH")]
    pub dmaloadd: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command prints JSON: then its failure is one JSON object on stdout too.
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Load(args) => args.json,
            Command::Backends(out) | Command::Stats(out) => out.json,
            Command::Bench(args) => args.json,
            Command::Dump { .. } => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load files (or FILE:OFFSET:LEN segments, placed one after another) into one buffer.
    Load(LoadArgs),
    /// List the buffer backends (dma-heaps, udmabuf, memfd) the service offers.
    #[command(alias = "heaps")]
    Backends(OutputArgs),
    /// Show the service's accounting for this caller and overall.
    Stats(OutputArgs),
    /// Print the service's dump (what dumpsys shows; `dmaload dump --help` lists its views).
    #[command(disable_help_flag = true)]
    Dump {
        /// Arguments passed to the dump (the service's "--help" lists its views).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark loads through the service against a plain read() baseline, side by side.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// FILE or FILE:OFFSET:LEN (LEN 0 = to the end of the file; sizes accept K, M, G suffixes).
    #[arg(required = true, value_name = "FILE[:OFFSET:LEN]")]
    pub segments: Vec<String>,
    /// Buffer backend: auto, heap:NAME (or a dma-heap's NAME), udmabuf or memfd (see
    /// `dmaload backends`); default: the service chooses.
    #[arg(long, alias = "heap", value_name = "BACKEND")]
    pub backend: Option<String>,
    /// I/O mode: auto, direct or buffered.
    #[arg(long, default_value = "auto", value_parser = ["auto", "direct", "buffered"])]
    pub mode: String,
    /// Gather size: bytes of buffer filled per batch (e.g. 128M); default: the service's.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub gather: Option<u64>,
    /// Buffer name (at most 200 bytes; the service prefixes it with your uid).
    #[arg(long, default_value = "dmaload-cli")]
    pub name: String,
    /// Compute the SHA-256 of the loaded bytes by reading the returned buffer.
    #[arg(long)]
    pub checksum: bool,
    /// Accept a buffer shared with this uid's other shareable loads of the same content
    /// (already loaded, in flight, or kept warm by the service); the output says which.
    #[arg(long)]
    pub share: bool,
    /// Have the service digest every segment while it loads it: sha256 (what sha256sum
    /// prints) or fsverity (what `fsverity digest` prints). Repeatable.
    #[arg(long = "digest", value_name = "ALGORITHM", value_parser = parse_algorithm)]
    pub digests: Vec<DigestAlgorithm>,
    /// Refuse the buffer unless a segment has this digest (DIGEST_MISMATCH): sha256:HEX or
    /// fsverity:HEX for the only segment, N=sha256:HEX for segment N (from 0, in the order
    /// given). Repeatable.
    #[arg(long = "expect", value_name = "[N=]ALGORITHM:HEX", value_parser = ExpectArg::parse)]
    pub expect: Vec<ExpectArg>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// File to load in the benchmark (on the file system to measure).
    pub file: PathBuf,
    /// Repetitions per scheme.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_algorithm(text: &str) -> Result<DigestAlgorithm, String> {
    DigestAlgorithm::parse(text).ok_or_else(|| format!("{text:?}: use sha256 or fsverity"))
}

/// An `--expect [N=]ALGORITHM:HEX` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectArg {
    /// The segment; `None`: the only one.
    pub segment: Option<usize>,
    pub algorithm: DigestAlgorithm,
    pub value: [u8; DIGEST_BYTES],
}

impl ExpectArg {
    pub fn parse(text: &str) -> Result<ExpectArg, String> {
        let (segment, digest) = match text.split_once('=') {
            Some((n, digest)) => {
                let n = n
                    .parse()
                    .map_err(|_| format!("{n:?} is not a segment number (0, 1, ...)"))?;
                (Some(n), digest)
            }
            None => (None, text),
        };
        let (algorithm, value) = parse_tagged(digest)?;
        Ok(ExpectArg {
            segment,
            algorithm,
            value,
        })
    }
}

/// A `FILE[:OFFSET:LEN]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentArg {
    pub path: PathBuf,
    pub offset: u64,
    /// 0 = to the end of the file.
    pub length: u64,
}

impl SegmentArg {
    /// Parses from the right, so paths containing ':' still work when no range is given.
    pub fn parse(text: &str) -> Result<SegmentArg, String> {
        let mut parts = text.rsplitn(3, ':');
        let last = parts.next().unwrap_or_default();
        let middle = parts.next();
        let first = parts.next();
        if let (Some(path), Some(offset), length) = (first, middle, last) {
            if let (Ok(offset), Ok(length)) = (parse_size(offset), parse_size(length)) {
                if path.is_empty() {
                    return Err(format!("{text:?}: missing file name before :OFFSET:LEN"));
                }
                return Ok(SegmentArg {
                    path: PathBuf::from(path),
                    offset,
                    length,
                });
            }
        }
        if text.is_empty() {
            return Err("empty file name".to_string());
        }
        Ok(SegmentArg {
            path: PathBuf::from(text),
            offset: 0,
            length: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_from_the_right() {
        assert_eq!(
            SegmentArg::parse("/m/w.bin:4096:1M").unwrap(),
            SegmentArg {
                path: "/m/w.bin".into(),
                offset: 4096,
                length: 1 << 20
            }
        );
        assert_eq!(
            SegmentArg::parse("/m/w.bin").unwrap(),
            SegmentArg {
                path: "/m/w.bin".into(),
                offset: 0,
                length: 0
            }
        );
        // A path with colons but no numeric range is a path.
        assert_eq!(
            SegmentArg::parse("a:b:c").unwrap().path,
            PathBuf::from("a:b:c")
        );
        assert!(SegmentArg::parse(":0:0").is_err());
        assert!(SegmentArg::parse("").is_err());
    }

    #[test]
    fn the_readme_command_line_parses() {
        let cli = Cli::try_parse_from([
            "dmaload",
            "load",
            "/tmp/w.bin",
            "/tmp/x.bin:0:4K",
            "--backend",
            "heap:system",
            "--mode",
            "direct",
            "--gather",
            "64M",
            "--checksum",
            "--json",
            "--share",
        ])
        .expect("parse");
        let Command::Load(load) = cli.command else {
            panic!("not load")
        };
        assert_eq!(load.segments.len(), 2);
        assert_eq!(load.backend.as_deref(), Some("heap:system"));
        assert_eq!(load.gather, Some(64 << 20));
        // The version 1 spellings stay: --heap for --backend, `heaps` for `backends`.
        let cli = Cli::try_parse_from(["dmaload", "load", "f", "--heap", "system"]).expect("parse");
        let Command::Load(alias) = cli.command else {
            panic!("not load")
        };
        assert_eq!(alias.backend.as_deref(), Some("system"));
        for name in ["backends", "heaps"] {
            let cli = Cli::try_parse_from(["dmaload", name]).expect("parse");
            assert!(matches!(cli.command, Command::Backends(_)), "{name}");
        }
        assert!(load.checksum && load.json && load.share);
        assert!(Cli::try_parse_from(["dmaload", "stats", "--json"])
            .expect("parse")
            .json());
        assert!(!Cli::try_parse_from(["dmaload", "dump", "--json"])
            .expect("parse")
            .json());
        assert!(Cli::try_parse_from(["dmaload", "load", "f", "--mode", "fast"]).is_err());
        let hex = "ab".repeat(32);
        let cli = Cli::try_parse_from([
            "dmaload",
            "load",
            "f",
            "--digest",
            "sha256",
            "--digest",
            "fsverity",
            "--expect",
            &format!("sha256:{hex}"),
            "--expect",
            &format!("2=fsverity:{hex}"),
        ])
        .expect("parse");
        let Command::Load(load) = cli.command else {
            panic!("not load")
        };
        assert_eq!(
            load.digests,
            [DigestAlgorithm::Sha256, DigestAlgorithm::FsVerity]
        );
        assert_eq!(load.expect[0].segment, None);
        assert_eq!(load.expect[1].segment, Some(2));
        assert_eq!(load.expect[1].algorithm, DigestAlgorithm::FsVerity);
        assert_eq!(load.expect[1].value, [0xab; 32]);
        for bad in [
            vec!["--digest", "md5"],
            vec!["--expect", "sha256:abc"],
            vec!["--expect", "x=sha256:00"],
        ] {
            let mut line = vec!["dmaload", "load", "f"];
            line.extend(bad.iter().copied());
            assert!(Cli::try_parse_from(&line).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["dmaload", "load"]).is_err());
    }
}
