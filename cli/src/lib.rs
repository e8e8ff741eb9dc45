//! The `dmaload` command: argument handling in [`args`], one function per subcommand here,
//! and the private-daemon start in [`daemon`].

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod args;
pub mod daemon;
pub mod failure;
mod load;
mod progress;

use anyhow::Context;
use dmaload::{Endpoint, Loader};

use crate::args::{Cli, Command};

/// Runs one command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let loader = connect(&cli)?;
    match &cli.command {
        Command::Load(args) => load::run(&loader, args),
        Command::Backends(out) => load::backends(&loader, out.json),
        Command::Stats(out) => load::stats(&loader, out.json),
        Command::Dump { args } => dump(&loader, args),
        Command::Bench(args) => load::bench(&loader, args),
    }
}

/// Connects as the library would, and on Linux starts a private `dmaloadd` on the default
/// socket when nobody answers there.
fn connect(cli: &Cli) -> anyhow::Result<Loader> {
    let explicit = match &cli.endpoint {
        Some(text) => Some(Endpoint::parse(text)?),
        None => None,
    };
    let endpoint = match explicit {
        Some(e) => e,
        None => Loader::default_endpoint()?,
    };
    match Loader::connect(Some(&endpoint)) {
        Ok(loader) => Ok(loader),
        Err(err) => {
            let Endpoint::Socket(socket) = &endpoint else {
                return Err(err).with_context(|| format!("connecting to {endpoint}"));
            };
            if cli.no_spawn || cfg!(target_os = "android") || !daemon::nobody_listens(&err) {
                return Err(err).with_context(|| format!("connecting to {endpoint}"));
            }
            let dmaloadd = match &cli.dmaloadd {
                Some(path) => path.clone(),
                None => daemon::find_dmaloadd().with_context(|| {
                    format!(
                        "no service answers on {endpoint} and no dmaloadd was found next to this \
                         binary or on $PATH (build it with `cargo build -p dmaload-service`, or \
                         pass --dmaloadd)"
                    )
                })?,
            };
            daemon::start_private_daemon(&dmaloadd, socket)
        }
    }
}

/// The service's dump (the views dumpsys shows; `dmaload dump --help` lists them). An
/// unknown view is the service's error, which names the views.
fn dump(loader: &Loader, args: &[String]) -> anyhow::Result<()> {
    print!("{}", loader.dump(args).context("dump")?);
    Ok(())
}
