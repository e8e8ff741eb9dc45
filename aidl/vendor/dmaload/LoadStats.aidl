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

/** Where a load's time went, in nanoseconds and bytes. */
@VintfStability
parcelable LoadStats {
    long allocNs;
    /** From the start to the first gather completely filled. */
    long firstGatherNs;
    long ioNs;
    long copyNs;
    long totalNs;
    long bytesDirect;
    long bytesBuffered;
    /** Bytes that went through bounce buffers (dma-heap ring, unaligned heads/tails). */
    long bytesBounced;
    /** Every fallback taken, as "kind: reason". */
    @utf8InCpp String[] fallbacks;
    /** Version 2: time spent computing digests, summed over threads (overlaps the reads). */
    long digestNs;
    /**
     * Version 2: memory the service used for the load beside the buffer (bounce blocks, read
     * buffers), charged to the caller while the load ran.
     */
    long workingBytes;
}
