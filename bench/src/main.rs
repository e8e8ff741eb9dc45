//! `dmaload-bench`: see `dmaload_bench` and docs/BENCHMARKS.md.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use clap::Parser;

fn main() {
    let args = dmaload_bench::Args::parse();
    if let Err(e) = dmaload_bench::run(&args) {
        eprintln!("dmaload-bench: {e:#}");
        std::process::exit(1);
    }
}
