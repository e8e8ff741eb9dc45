//! dmaload-client (skeleton; filled by its issue).
