//! dmaload-bench (skeleton; filled by its issue).
