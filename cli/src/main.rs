//! `dmaload`: command-line client of the dmaload service.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use clap::Parser;
use dmaload_cli::args::Cli;
use dmaload_cli::failure;

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            // A command line that asked for JSON gets its failure as JSON too.
            let asked_json = argv.iter().any(|a| a == "--json");
            if asked_json && err.use_stderr() {
                let message = err.render().to_string();
                let report = failure::usage_json(message.trim_end());
                println!("{report}");
            }
            err.exit();
        }
    };
    let json = cli.json();
    if let Err(err) = dmaload_cli::run(cli) {
        eprintln!("dmaload: {err:#}");
        if json {
            println!("{}", failure::to_json(&err));
        }
        std::process::exit(1);
    }
}
