//! `dmaload`: command-line client of the dmaload service.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use clap::Parser;

fn main() {
    let cli = dmaload_cli::args::Cli::parse();
    if let Err(err) = dmaload_cli::run(cli) {
        eprintln!("dmaload: {err:#}");
        std::process::exit(1);
    }
}
