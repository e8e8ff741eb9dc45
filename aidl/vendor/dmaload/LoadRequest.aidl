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
import vendor.dmaload.DigestAlgorithm;
import vendor.dmaload.FileSegment;
import vendor.dmaload.IoMode;
import vendor.dmaload.Tunables;

/** What to load and into what. */
@VintfStability
parcelable LoadRequest {
    /** At least one segment. The buffer size is the end of the last segment, page-rounded. */
    FileSegment[] segments;
    /**
     * Backend: "auto", "udmabuf", "memfd", or a dma-heap name ("system", "system-uncached",
     * "cma", ...). See IDmaLoader.getBackends().
     */
    @utf8InCpp String backend = "auto";
    IoMode ioMode = IoMode.AUTO;
    /**
     * A debug name of at most IDmaLoader.MAX_NAME_BYTES bytes; the service prefixes it with the
     * caller's uid in the dma-buf name.
     */
    @utf8InCpp String name;
    Tunables tunables;
    /**
     * Version 2: the request's distinct files, each sent once (at most IDmaLoader.MAX_FILES),
     * regular files open for reading. Segments name theirs by FileSegment.fileIndex. Empty:
     * every segment carries its own fd (the version 1 layout); the two layouts do not mix.
     * Null and empty mean the same.
     */
    @nullable ParcelFileDescriptor[] files;
    /**
     * Version 2: digests to compute while loading, for every segment (LoadResult.digests). The
     * bytes are hashed as they arrive, never in a second pass over the buffer.
     */
    DigestAlgorithm[] digests = {};
    /**
     * Version 2: digests the segments must have. The service computes each (or reads the
     * kernel's fs-verity measurement) and fails the load with DIGEST_MISMATCH if one differs;
     * nothing is handed out then. Null and empty mean the same.
     */
    @nullable Digest[] expectedDigests;
    /**
     * Version 2: the caller accepts a buffer shared with other shareable requests of its own
     * uid for the same content (same file identity, ranges, backend and digests): a live
     * buffer, a load of it in flight, or one kept warm after its release. LoadResult.reuse
     * says which. The buffer is then the same memory for every holder: do not write to it.
     * Each holder has its own bufferId to release; the memory is charged to the uid once,
     * until the last holder released it or died and the service no longer keeps it warm.
     * Never shared across uids; a request without this flag always gets its own buffer.
     */
    boolean shareable;
}
