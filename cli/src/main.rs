//! `dmaload`: command-line client of the dmaload service.

use clap::Parser;

fn main() {
    let cli = dmaload_cli::args::Cli::parse();
    if let Err(err) = dmaload_cli::run(cli) {
        eprintln!("dmaload: {err:#}");
        std::process::exit(1);
    }
}
