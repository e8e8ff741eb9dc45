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
    /** A debug name; the service prefixes it with the caller's uid in the dma-buf name. */
    @utf8InCpp String name;
    Tunables tunables;
}
