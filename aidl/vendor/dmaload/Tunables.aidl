/*
 * Copyright (C) 2026 The dmaload Authors
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

package vendor.dmaload;

/**
 * Optional knobs; 0 in a field means "the service's default".
 *
 * Version 2: the memory a load works with beside its buffer (bounce blocks) is charged to the
 * caller while the load runs (LoadStats.workingBytes). What the knobs ask for is bounded (at
 * most 1 GiB per load) and, where it does not fit the caller's cap, the global cap or free
 * memory, shrunk to fewer readers and blocks (a "WorkingMemory" entry in LoadStats.fallbacks);
 * when not even one reader's fits, the load is refused (CALLER_CAP, GLOBAL_CAP or NO_MEMORY)
 * before anything is allocated.
 */
@VintfStability
parcelable Tunables {
    /** Bytes allocated before readers are let in (default 128 MiB; 1 MiB to 64 GiB). */
    long gatherSize;
    /** Bytes per read request (default 8 MiB; 64 KiB to 256 MiB). */
    long chunkSize;
    /**
     * Reads in flight (default 2 × CPUs, 2 to 8). Version 2: at most the service's worker
     * threads; more reads as that many.
     */
    int readerThreads;
    /** Threads populating memfd memory (udmabuf and memfd backends) or copying (dma-heap). */
    int populateThreads;
    /**
     * Bounce blocks of a chunk each in the dma-heap ring (default 4; at most 256, and
     * bounceBuffers × chunkSize at most 1 GiB). Version 2: the ring holds
     * max(bounceBuffers, readerThreads + 1) blocks, no more than the load has chunks, within
     * the 1 GiB.
     */
    int bounceBuffers;
}
