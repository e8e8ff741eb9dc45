//! dmaload-vts (skeleton; filled by its issue).
