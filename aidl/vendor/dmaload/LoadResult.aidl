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

import vendor.dmaload.Digest;
import vendor.dmaload.LoadStats;
import vendor.dmaload.Reuse;

/** A completely loaded buffer. The caller owns |buffer|. */
@VintfStability
parcelable LoadResult {
    /** The buffer: a dma-buf unless |isDmaBuf| is false (memfd backend). */
    @nullable ParcelFileDescriptor buffer;
    /** Buffer size in bytes (page-rounded). */
    long sizeBytes;
    /** Identifies the buffer to releaseBuffer(). */
    long bufferId;
    /** Backend actually used: "heap:<name>", "udmabuf" or "memfd". */
    @utf8InCpp String backend;
    boolean isDmaBuf;
    /** The name the buffer carries (dma-buf name / memfd name). */
    @utf8InCpp String name;
    LoadStats stats;
    /**
     * Version 2: the digests of the segments, as LoadRequest.digests and expectedDigests asked
     * (Digest.fromKernel tells a kernel fs-verity measurement from a computed one).
     */
    @nullable Digest[] digests;
    /** Version 2: whether the buffer was loaded for this request or reused. */
    Reuse reuse = Reuse.NONE;
}
