//! The `dmaload` command (in progress: argument syntax first).

pub mod args;
