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

import vendor.dmaload.DigestAlgorithm;

/** Version 2: the digest of one segment's bytes (expected in a request, computed in a result). */
@VintfStability
parcelable Digest {
    /** The segment it covers: an index into LoadRequest.segments. */
    int segment;
    DigestAlgorithm algorithm = DigestAlgorithm.SHA256;
    /** The digest: 32 bytes for SHA256 and FSVERITY_SHA256. */
    byte[] value;
    /**
     * In a result: true when the value is the kernel's fs-verity measurement of the file
     * (FS_IOC_MEASURE_VERITY; the kernel verified every page it read), false when the service
     * computed it from the bytes it loaded. Ignored in a request.
     */
    boolean fromKernel;
}
