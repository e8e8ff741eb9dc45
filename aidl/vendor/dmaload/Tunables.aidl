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

/** Optional knobs; 0 in a field means "the service's default". */
@VintfStability
parcelable Tunables {
    /** Bytes allocated before readers are let in (default 128 MiB). */
    long gatherSize;
    /** Bytes per read request (default 8 MiB). */
    long chunkSize;
    /** Reads in flight. */
    int readerThreads;
    /** Threads populating memfd memory (udmabuf and memfd backends). */
    int populateThreads;
    /** Bounce buffers in the dma-heap ring. */
    int bounceBuffers;
}
