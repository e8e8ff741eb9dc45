//! `dmaload-bench`: see `dmaload_bench` and docs/BENCHMARKS.md.

use clap::Parser;

fn main() {
    let args = dmaload_bench::Args::parse();
    if let Err(e) = dmaload_bench::run(&args) {
        eprintln!("dmaload-bench: {e:#}");
        std::process::exit(1);
    }
}
