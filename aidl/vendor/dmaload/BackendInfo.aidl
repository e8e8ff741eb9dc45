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

/** A buffer backend the device offers. */
@VintfStability
parcelable BackendInfo {
    /** "heap:<name>", "udmabuf" or "memfd"; pass it (or the bare heap name) as LoadRequest.backend. */
    @utf8InCpp String name;
    boolean isDmaBuf;
    /** False when the service configuration disables it. */
    boolean allowed;
    /** Largest buffer this backend can hold now (kernel and service limits). */
    long maxBufferBytes;
    /** Human-readable details (e.g. the udmabuf size limit, huge-page support). */
    @utf8InCpp String detail;
}
