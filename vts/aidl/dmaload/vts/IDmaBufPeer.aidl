// Test-only interface of the virtual device's smoke test (vts/tests/guest_smoke.rs): a
// second process that receives dma-buf fds over kernel binder.
package dmaload.vts;

interface IDmaBufPeer {
    /** The peer's process id (proves the call crossed a process boundary). */
    int pid();

    /** The exporter named in /proc/self/fdinfo of the received fd ("system" for a
        dma-heap buffer, "udmabuf" for udmabuf), read in the peer. */
    @utf8InCpp String exporterOf(in ParcelFileDescriptor buffer);

    /** Maps `size` bytes of the received dma-buf, returns the FNV-1a hash of what it
        holds, then fills it with `fill` (so the caller can see the write through its own
        mapping of the same buffer). */
    long hashThenFill(in ParcelFileDescriptor buffer, long size, byte fill);
}
