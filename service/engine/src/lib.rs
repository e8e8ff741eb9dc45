//! dmaload-engine (skeleton; filled by its issue).
