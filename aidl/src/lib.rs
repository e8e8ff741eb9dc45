//! dmaload-aidl (skeleton; filled by its issue).
