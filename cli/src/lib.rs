//! dmaload-cli (skeleton; filled by its issue).
