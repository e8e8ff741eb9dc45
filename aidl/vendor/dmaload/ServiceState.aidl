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

/** The service process's resources at this moment (for leak checks). */
@VintfStability
parcelable ServiceState {
    /** File descriptors open in the service process. */
    int openFds;
    /**
     * Bytes of handed-out buffers still charged (not released, owner alive); a buffer shared
     * by several holders counts once.
     */
    long outstandingBufferBytes;
    /** Handed-out buffers still charged. */
    int liveBuffers;
    /** Loads running now, all callers. */
    int loadsInFlight;
    /** Version 2: working memory (bounce blocks, read buffers) of the loads running now. */
    long workingBytes;
    /** Version 2: buffers kept warm after their release (warm reuse), all uids, and bytes. */
    int cachedBuffers;
    long cachedBytes;
}
