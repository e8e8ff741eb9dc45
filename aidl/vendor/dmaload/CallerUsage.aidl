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

/** What the calling uid holds and may still take. */
@VintfStability
parcelable CallerUsage {
    int uid;
    /**
     * Bytes charged: loads in flight plus buffers handed out and not released; in version 2
     * also the buffers kept warm for this uid (cachedBytes). A buffer shared by several
     * holders (LoadRequest.shareable) is charged once.
     */
    long chargedBytes;
    long capBytes;
    int buffers;
    int loadsInFlight;
    /** Bytes the service as a whole may still hand out. */
    long globalAvailableBytes;
    /** Version 2: working memory (bounce blocks, read buffers) of this uid's loads in flight. */
    long workingBytes;
    /** Version 2: shareable requests answered with a buffer already loaded or in flight. */
    long reuseHits;
    /** Version 2: shareable requests that had to be loaded. */
    long reuseMisses;
    /** Version 2: file bytes not read thanks to reuse. */
    long reuseBytesSaved;
    /** Version 2: released shareable buffers kept warm for this uid, and their bytes. */
    int cachedBuffers;
    long cachedBytes;
}
