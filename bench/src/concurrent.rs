//! Several clients loading at once, each its own file, through dmaloadd; beside them the raw
//! direct read of the same files at once (one group of reader threads per file), so the
//! aggregate throughput is compared with the device's bandwidth in the same run.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmaload::Loader;
use dmaload_engine::BackendChoice;

use crate::report::Round;
use crate::schemes::{open_direct, read_direct};
use crate::service;

/// The two schemes of a concurrent round.
#[derive(Clone, Debug)]
pub enum Concurrent {
    /// Every file read raw with O_DIRECT at once, `threads` readers per file.
    DirectFloor { threads: usize },
    /// Every client's `Loader::load` of its file at once.
    Service { kind: BackendChoice },
}

/// Runs `f(i)` on one thread per client, all released together; returns each client's time
/// and the round's (first start to last end).
fn together<T: Send>(
    clients: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<(Round, Vec<T>)> {
    let barrier = Barrier::new(clients);
    let results: Vec<Result<(Instant, Instant, T)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let out = f(i)?;
                    Ok((start, Instant::now(), out))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
            })
            .collect()
    });
    let mut spans = Vec::with_capacity(clients);
    let mut outs = Vec::with_capacity(clients);
    for r in results {
        let (start, end, out) = r?;
        spans.push((start, end));
        outs.push(out);
    }
    let first = spans.iter().map(|s| s.0).min().context("no clients")?;
    let last = spans.iter().map(|s| s.1).max().context("no clients")?;
    Ok((
        Round {
            wall: last.duration_since(first),
            clients: spans.iter().map(|(a, b)| b.duration_since(*a)).collect(),
        },
        outs,
    ))
}

/// One round of `scheme` over `files` (one per client; `loaders` one per client). Returns
/// the round and the buffers (for checking), which the caller drops.
pub fn run(
    scheme: &Concurrent,
    files: &[PathBuf],
    size: u64,
    loaders: &[Loader],
) -> Result<(Round, Vec<Option<OwnedFd>>)> {
    match scheme {
        Concurrent::DirectFloor { threads } => {
            let fds = files
                .iter()
                .map(|p| open_direct(p))
                .collect::<Result<Vec<_>>>()?;
            let (round, _) = together(files.len(), |i| {
                read_direct(&fds[i], size, *threads).map(|_| None::<OwnedFd>)
            })?;
            Ok((round, (0..files.len()).map(|_| None).collect()))
        }
        Concurrent::Service { kind } => {
            let fds = files
                .iter()
                .map(|p| open_direct(p))
                .collect::<Result<Vec<_>>>()?;
            let (mut round, loads) = together(files.len(), |i| {
                service::load_timed(&loaders[i], &fds[i], kind)
            })?;
            // The client's own clock (its call to the reply) rather than the thread's, which
            // also counts building the request.
            for (t, load) in round.clients.iter_mut().zip(&loads) {
                *t = load.elapsed.min(*t).max(Duration::from_nanos(1));
            }
            Ok((round, loads.into_iter().map(|l| Some(l.fd)).collect()))
        }
    }
}
