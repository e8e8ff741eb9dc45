//! The progress display of long loads: an indicatif bar with the `progress-bar` feature (cargo
//! default), a plain percentage line on stderr without it (the Android build, where indicatif
//! is not among the platform's crates).

use dmaload::LoadEvents;

#[cfg(feature = "progress-bar")]
pub struct ProgressDisplay(indicatif::ProgressBar);

#[cfg(feature = "progress-bar")]
impl ProgressDisplay {
    pub fn new(total: u64) -> ProgressDisplay {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        ProgressDisplay(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(feature = "progress-bar")]
impl LoadEvents for ProgressDisplay {
    fn progress(&self, loaded: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_position(loaded);
    }
}

#[cfg(not(feature = "progress-bar"))]
pub struct ProgressDisplay {
    /// The last whole percent printed, so the line is rewritten at most 100 times.
    last_percent: std::sync::atomic::AtomicU64,
}

#[cfg(not(feature = "progress-bar"))]
impl ProgressDisplay {
    pub fn new(_total: u64) -> ProgressDisplay {
        ProgressDisplay {
            last_percent: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    pub fn finish(&self) {
        eprint!("\r\x1b[K");
    }
}

#[cfg(not(feature = "progress-bar"))]
impl LoadEvents for ProgressDisplay {
    fn progress(&self, loaded: u64, total: u64) {
        use std::sync::atomic::Ordering;
        let percent = loaded.saturating_mul(100).checked_div(total).unwrap_or(100);
        if self.last_percent.swap(percent, Ordering::Relaxed) != percent {
            eprint!(
                "\rloading: {percent:3}% ({} of {} MiB)",
                loaded >> 20,
                total >> 20
            );
        }
    }
}
